"""Annotation projects: create, find, read, change settings and members; the project document.

Who may do what is :mod:`hub.services.access` ("Annotation projects"). A project's settings
follow the rules of the things they name: its name is a package name's last part
(:data:`cvflow.names.NAME_RE`), its classes a dataset's (1 to 10,000, unique ignoring case,
no HTML or path characters), its suggestion model a package, a version range and a solver, and
its dataset package a ``namespace/name``. Breaking any is ``invalid_project``, listing every
problem in ``details.problems``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from cvflow.errors import InvalidNameError, InvalidRangeError, InvalidVersionError
from cvflow.manifest.dataset import DATASET_TASKS, MAX_CLASSES, class_name_problem
from cvflow.names import NAME_RE, PackageName
from cvflow.versions import Version, VersionRange
from hub.errors import HubError
from hub.models import (
    AnnotationItem,
    AnnotationProject,
    AnnotationSnapshot,
    Namespace,
    ProjectMember,
    ProjectRole,
    User,
    row_id,
    utcnow,
)
from hub.services.access import (
    can_read_project,
    may_create_in,
    project_role,
    require_project_role,
    visible_projects_filter,
)
from hub.services.accounts import Principal, get_user

QUEUE_ORDERS = ("sequential", "uncertainty")
ROLES = ("owner", "annotator", "reviewer")
STATUSES = ("todo", "done", "approved")
MAX_DESCRIPTION = 512
MAX_PER_PAGE = 100


def find_project(session: Session, namespace: str, name: str) -> AnnotationProject | None:
    """The project named ``namespace/name`` (case-insensitive), whoever may see it."""
    full = f"{namespace}/{name}".lower()
    return session.exec(select(AnnotationProject).where(AnnotationProject.full_name == full)).first()


def get_project(session: Session, who: Principal, namespace: str, name: str) -> AnnotationProject:
    """The project, if the caller may see it; a private one is "not found" to others."""
    project = find_project(session, namespace, name)
    if project is None or not can_read_project(session, who, project):
        raise HubError("project_not_found", f"no project {namespace}/{name}")
    return project


def get_item(session: Session, project: AnnotationProject, item_id: int) -> AnnotationItem:
    """An item of the project (the caller's access to the project was checked already)."""
    item = session.get(AnnotationItem, item_id)
    if item is None or item.project_id != project.id:
        raise HubError("item_not_found", f"{project.full_name} has no item {item_id}")
    return item


# --- rules ----------------------------------------------------------------------------------


def _problem(problems: list[dict[str, str]], where: str, message: str) -> None:
    if len(problems) < 50:
        problems.append({"field": where, "message": message})


def _check_classes(raw: object, problems: list[dict[str, str]]) -> list[str]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_CLASSES:
        _problem(problems, "classes", f"classes must be a list of 1 to {MAX_CLASSES} names")
        return []
    seen: set[str] = set()
    for i, name in enumerate(raw):
        why = class_name_problem(name)
        if why is not None:
            _problem(problems, f"classes[{i}]", why)
        elif name.casefold() in seen:
            _problem(problems, f"classes[{i}]", f"class {name!r} is listed twice (case is ignored)")
        else:
            seen.add(name.casefold())
    return [str(c) for c in raw]


def _check_suggest(raw: object, problems: list[dict[str, str]]) -> tuple[str, str, str] | None:
    """``(package, range, solver)`` from ``{"package", "range", "solver"}``; None clears the model."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        _problem(problems, "suggest", "must be an object {package, range, solver} or null")
        return None
    package, version_range, solver = raw.get("package"), raw.get("range", "*"), raw.get("solver")
    try:
        package = str(PackageName.parse(package))  # type: ignore[arg-type]  # checked by parse
    except InvalidNameError as exc:
        _problem(problems, "suggest.package", exc.message)
    try:
        VersionRange.parse(version_range)
        if len(version_range) > 128:
            raise InvalidRangeError("a version range may be at most 128 characters")
    except InvalidRangeError as exc:
        _problem(problems, "suggest.range", exc.message)
    if not isinstance(solver, str) or not NAME_RE.match(solver):
        _problem(problems, "suggest.solver", "a solver's name: 1 to 64 lowercase letters, digits and - _ .")
    if problems:
        return None
    return str(package), str(version_range).strip(), str(solver)


def _check_dataset_package(raw: object, problems: list[dict[str, str]]) -> str:
    try:
        return str(PackageName.parse(raw))  # type: ignore[arg-type]  # checked by parse
    except InvalidNameError as exc:
        _problem(problems, "dataset_package", exc.message)
        return ""


def _check_settings(changes: dict[str, Any], problems: list[dict[str, str]]) -> None:
    if "description" in changes:
        text = changes["description"]
        if not isinstance(text, str) or len(text) > MAX_DESCRIPTION:
            _problem(problems, "description", f"a description is text of at most {MAX_DESCRIPTION} characters")
    if "private" in changes and not isinstance(changes["private"], bool):
        _problem(problems, "private", "must be true or false")
    if "queue_order" in changes and changes["queue_order"] not in QUEUE_ORDERS:
        _problem(problems, "queue_order", "must be one of " + ", ".join(QUEUE_ORDERS))


def _invalid(problems: list[dict[str, str]]) -> HubError:
    first = problems[0]
    return HubError("invalid_project", f"'{first['field']}': {first['message']}", details={"problems": problems})


# --- create, list, change -------------------------------------------------------------------


def create_project(session: Session, who: Principal, *, namespace: str, name: str, task: str,
                   classes: Sequence[str], description: str = "", private: bool = True,
                   queue_order: str = "sequential", suggest: dict[str, Any] | None = None,
                   dataset_package: str | None = None) -> AnnotationProject:
    """A new project in ``namespace``, which the caller may create in (or is an admin of the hub).

    Raises ``unauthenticated``, ``insufficient_scope``, ``namespace_not_found``, ``forbidden``,
    ``invalid_project`` and ``project_exists``.
    """
    user = who.require_user()
    assert who.scopes is not None
    if not who.scopes.can_annotate:
        raise HubError("insufficient_scope", "this needs a token with the annotate scope (or publish)")
    ns = session.exec(select(Namespace).where(Namespace.name == namespace)).first()
    if ns is None:
        raise HubError("namespace_not_found", f"no user or organisation is named {namespace!r}")
    if ns.kind == "mirror" or not (who.is_admin or may_create_in(session, user, ns)):
        raise HubError("forbidden", f"you may not create projects in {namespace!r}")
    problems: list[dict[str, str]] = []
    if not isinstance(name, str) or not NAME_RE.match(name):
        _problem(problems, "name", "1 to 64 lowercase letters and digits, single - _ . between them")
    if task not in DATASET_TASKS:
        _problem(problems, "task", "must be one of " + ", ".join(DATASET_TASKS))
    names = _check_classes(list(classes) if isinstance(classes, (list, tuple)) else classes, problems)
    _check_settings({"description": description, "private": private, "queue_order": queue_order}, problems)
    model = _check_suggest(suggest, problems)
    dataset = _check_dataset_package(f"{namespace}/{name}-data" if dataset_package is None else dataset_package,
                                     problems)
    if problems:
        raise _invalid(problems)
    if find_project(session, namespace, name) is not None:
        raise HubError("project_exists", f"{namespace} already has a project {name!r}")
    project = AnnotationProject(
        namespace_id=row_id(ns), name=name, full_name=f"{namespace}/{name}".lower(), description=description,
        task=task, classes=names, private=private, queue_order=queue_order, dataset_package=dataset,  # type: ignore[arg-type]  # checked above
        created_by=user.id)
    if model is not None:
        project.suggest_package, project.suggest_range, project.suggest_solver = model
    session.add(project)
    session.flush()
    return project


def list_projects(session: Session, who: Principal, namespace: str | None = None, *, page: int = 1,
                  per_page: int = 20) -> tuple[int, list[AnnotationProject]]:
    """``(total, projects on this page)`` of the projects the caller may see, by name."""
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise HubError("invalid_field", f"page starts at 1 and per_page is 1 to {MAX_PER_PAGE}")
    where = visible_projects_filter(who)
    if namespace:
        where = sa.and_(where, col(AnnotationProject.full_name).startswith(namespace.lower() + "/", autoescape=True))
    total = session.exec(select(func.count()).select_from(AnnotationProject).where(where)).one()
    rows = session.exec(select(AnnotationProject).where(where).order_by(col(AnnotationProject.full_name))
                        .offset((page - 1) * per_page).limit(per_page)).all()
    return int(total), list(rows)


def update_project(session: Session, who: Principal, project: AnnotationProject, changes: dict[str, Any]) -> None:
    """Change the settings named in ``changes`` (owners): ``description``, ``private``,
    ``queue_order``, ``suggest`` (an object, or None for no model), ``dataset_package`` and
    ``classes``, which may only grow: the old classes first, in their order, then new ones.

    Raises as :func:`hub.services.access.require_project_role`, and ``invalid_project``.
    """
    require_project_role(session, who, project, "manage")
    problems: list[dict[str, str]] = []
    _check_settings(changes, problems)
    model = _check_suggest(changes["suggest"], problems) if "suggest" in changes else None
    dataset = _check_dataset_package(changes["dataset_package"], problems) if "dataset_package" in changes else ""
    classes: list[str] = []
    if "classes" in changes:
        classes = _check_classes(changes["classes"], problems)
        if classes and classes[:len(project.classes)] != project.classes:
            _problem(problems, "classes", "classes may only be added after the existing ones, never renamed, "
                                          "reordered or removed (labels name them)")
    if problems:
        raise _invalid(problems)
    if "description" in changes:
        project.description = changes["description"]
    if "private" in changes:
        project.private = changes["private"]
    if "queue_order" in changes:
        project.queue_order = changes["queue_order"]
    if "dataset_package" in changes:
        project.dataset_package = dataset
    if "classes" in changes:
        project.classes = classes
    if "suggest" in changes:
        before = (project.suggest_package, project.suggest_range, project.suggest_solver)
        project.suggest_package, project.suggest_range, project.suggest_solver = model or (None, "*", None)
        if (project.suggest_package, project.suggest_range, project.suggest_solver) != before:
            project.model_version = None  # the next claim resolves the new model
    project.updated_at = utcnow()
    session.add(project)
    session.flush()


def set_member(session: Session, who: Principal, project: AnnotationProject, user_name: str,
               role: ProjectRole | None) -> None:
    """Give ``user_name`` a role in the project, or take it away (None). Owners only.

    Removing a role nobody holds does nothing. The namespace's user and its organisation's
    owners stay owners whatever is named here. Raises as :func:`require_project_role`,
    ``user_not_found`` and ``invalid_project`` for an unknown role.
    """
    require_project_role(session, who, project, "manage")
    user = get_user(session, user_name)
    if role is not None and role not in ROLES:
        raise HubError("invalid_project", f"a role is one of {', '.join(ROLES)}")
    assert project.id is not None and user.id is not None
    row = session.get(ProjectMember, (project.id, user.id))
    if role is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(ProjectMember(project_id=project.id, user_id=user.id, role=role))
    else:
        row.role = role
        session.add(row)
    project.updated_at = utcnow()
    session.add(project)
    session.flush()


# --- documents ------------------------------------------------------------------------------


def settings_document(project: AnnotationProject) -> dict[str, Any]:
    """What a project is: its name and settings."""
    namespace, name = project.full_name.split("/", 1)
    suggest = None
    if project.suggest_package:
        suggest = {"package": project.suggest_package, "range": project.suggest_range,
                   "solver": project.suggest_solver}
    return {"namespace": namespace, "name": name, "full_name": project.full_name,
            "description": project.description, "task": project.task, "classes": list(project.classes),
            "private": project.private, "queue_order": project.queue_order, "suggest": suggest,
            "model_version": project.model_version, "dataset_package": project.dataset_package,
            "created_at": project.created_at.isoformat(), "updated_at": project.updated_at.isoformat()}


def status_counts(session: Session, project_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """``{project_id: {"todo": n, "done": n, "approved": n, "total": n}}`` in one query."""
    out = {pid: dict.fromkeys((*STATUSES, "total"), 0) for pid in project_ids}
    if not out:
        return out
    rows = session.exec(select(AnnotationItem.project_id, AnnotationItem.status, func.count())
                        .where(col(AnnotationItem.project_id).in_(list(out)))
                        .group_by(col(AnnotationItem.project_id), col(AnnotationItem.status))).all()
    for pid, status, n in rows:
        out[pid][status] = int(n)
        out[pid]["total"] += int(n)
    return out


# Per model version of each item's latest save: how its suggestions were used (summed), and the
# time spent on the item (every save's duration) as a histogram of 100 ms buckets, from which the
# mean is exact and the median is within a bucket. One query, and a short answer: the versions
# times the buckets in use, not one row per item (window functions over every item cost more).
_BUCKET_MS = 100
_STATS = sa.text(f"""
WITH latest AS (
    SELECT item_id, MAX(id) AS id, CAST(SUM(duration_ms) AS BIGINT) AS t FROM annotation_events
    WHERE project_id = :project AND action = 'save' GROUP BY item_id
)
SELECT e.model_version, latest.t / {_BUCKET_MS}, COUNT(*), SUM(e.accepted), SUM(e.edited), SUM(e.rejected),
       SUM(e.added), SUM(latest.t)
FROM latest JOIN annotation_events e ON e.id = latest.id
GROUP BY e.model_version, latest.t / {_BUCKET_MS}
""")


@dataclass
class _Tally:
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    added: int = 0
    #: (bucket, items, total ms) per time bucket
    buckets: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, row: Sequence[Any]) -> None:
        self.accepted += int(row[3] or 0)
        self.edited += int(row[4] or 0)
        self.rejected += int(row[5] or 0)
        self.added += int(row[6] or 0)
        self.buckets.append((int(row[1] or 0), int(row[2]), int(row[7] or 0)))

    def document(self) -> dict[str, Any]:
        buckets = sorted(self.buckets)
        items = sum(b[1] for b in buckets)
        total = sum(b[2] for b in buckets)

        def at(position: int) -> float:  # the mean time of the bucket holding the item at this rank
            seen = 0
            for _, count, ms in buckets:
                seen += count
                if position < seen:
                    return ms / count
            return 0.0

        median = (at((items - 1) // 2) + at(items // 2)) / 2 if items else 0.0
        return {"items": items, "accepted": self.accepted, "edited": self.edited, "rejected": self.rejected,
                "added": self.added, "mean_ms": round(total / items) if items else 0, "median_ms": round(median)}


def statistics_document(session: Session, project: AnnotationProject) -> dict[str, Any]:
    """How the suggestions were used and the time per item, per model version and in total.

    Each saved item counts once, under the model version of its latest save.
    """
    per_version: dict[str | None, _Tally] = {}
    total = _Tally()
    for row in session.execute(_STATS, {"project": project.id}).all():
        per_version.setdefault(row[0], _Tally()).add(row)
        total.add(row)
    ordered = sorted(per_version.items(), key=lambda kv: (kv[0] is None, _version_key(kv[0])))
    return {"per_model_version": [{"model_version": v, **t.document()} for v, t in ordered],
            "total": total.document()}


def _version_key(text: str | None) -> tuple[Any, ...]:
    try:
        return (0, Version.parse(text or ""))
    except InvalidVersionError:
        return (1, text or "")


def project_document(session: Session, who: Principal, project: AnnotationProject) -> dict[str, Any]:
    """Settings, the caller's role, progress, snapshots and statistics; members for owners."""
    assert project.id is not None
    role: str | None = project_role(session, project, who.user)
    doc = settings_document(project)
    doc["role"] = role
    doc["counts"] = status_counts(session, [project.id])[project.id]
    if role == "owner" or who.is_admin:
        members = session.exec(select(ProjectMember, User.name).join(User, col(User.id) == ProjectMember.user_id)
                               .where(ProjectMember.project_id == project.id).order_by(col(User.name))).all()
        doc["members"] = [{"user": name, "role": m.role, "added_at": m.added_at.isoformat()} for m, name in members]
    snapshots = session.exec(select(AnnotationSnapshot).where(AnnotationSnapshot.project_id == project.id)
                             .order_by(col(AnnotationSnapshot.id))).all()
    doc["snapshots"] = [{"package": s.package, "version": s.version, "items": s.items, "labels": s.labels,
                         "created_at": s.created_at.isoformat()} for s in snapshots]
    doc["stats"] = statistics_document(session, project)
    return doc


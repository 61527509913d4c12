"""The side of a project that suggestion workers call: claim items, post what the model suggests.

The hub never runs the model. A worker (``cvflow annotate suggest``) asks for the project's
model (:func:`resolve_model`: the newest version of the suggestion package in the project's
range that the worker's user may read, yanked ones left out), claims a batch of items with a
lease, runs the model on its own machine, and posts the suggestions with the model version
that made them. Claims take row locks (``FOR UPDATE SKIP LOCKED``) on PostgreSQL and the write
lock on SQLite, so two workers never hold the same item while a lease lasts.

When a newer version enters the range, the next claim moves the project to it
(``model_version``), and every item not yet saved is offered again. An item an annotator has
saved (or holds a lease on) is never offered and never changed by a worker; suggestions made
by another model version than the project's are skipped, so a late worker with an old model
never overwrites newer suggestions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from cvflow.errors import CVFlowError
from cvflow.versions import Version as SemVer
from cvflow.versions import VersionRange
from hub.errors import HubError
from hub.models import AnnotationEvent, AnnotationItem, AnnotationProject, Version, row_id, utcnow
from hub.services.access import can_read, require_project_role
from hub.services.accounts import Principal
from hub.services.annotation import labels
from hub.services.packages import find_package

#: Most items one claim takes, and most results one post carries.
MAX_BATCH = 256


@dataclass(frozen=True)
class Model:
    package: str
    version: str
    solver: str | None

    def document(self) -> dict[str, Any]:
        return {"package": self.package, "version": self.version, "solver": self.solver}


@dataclass(frozen=True)
class Result:
    item: int
    suggestions: list[Any]


def resolve_model(session: Session, who: Principal, project: AnnotationProject) -> Model:
    """The model a worker should run now; raises ``no_suggestion_model`` when there is none
    (no package named, none the caller may read, or no version in the range)."""
    name = project.suggest_package
    if not name or name.count("/") != 1:
        raise HubError("no_suggestion_model", f"{project.full_name} names no suggestion model")
    package = find_package(session, *name.split("/", 1))
    if package is None or not can_read(session, who, package):
        raise HubError("no_suggestion_model", f"no package {name} that you may read")
    try:
        wanted = VersionRange.parse(project.suggest_range or "*")
    except CVFlowError as exc:
        raise HubError("no_suggestion_model", f"the project's range {project.suggest_range!r} is not valid") from exc
    rows = session.exec(select(Version.version, Version.manifest).where(
        Version.package_id == package.id, col(Version.yanked).is_(False))).all()
    manifests = {SemVer.parse(v): m for v, m in rows}
    best = wanted.best_match(manifests)
    if best is None:
        raise HubError("no_suggestion_model", f"no version of {package.full_name} in {project.suggest_range}")
    return Model(package.full_name, str(best), project.suggest_solver or _default_solver(manifests[best]))


def _default_solver(manifest_json: str) -> str | None:
    """The first solver that declares suggestion output, else the first solver."""
    solvers = [s for s in json.loads(manifest_json).get("solvers") or [] if isinstance(s, dict)]
    ready = [s for s in solvers if s.get("suggest")]
    chosen = (ready or solvers or [{}])[0].get("name")
    return chosen if isinstance(chosen, str) else None


def _saved() -> sa.ColumnElement[bool]:
    """The item has been saved by an annotator at least once (its labels are someone's work)."""
    return sa.exists().where(col(AnnotationEvent.item_id) == AnnotationItem.id, col(AnnotationEvent.action) == "save")


def _free(until: Any, now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(col(until).is_(None), col(until) < now)


def claim(session: Session, who: Principal, project: AnnotationProject, *, worker: str, limit: int,
          lease_seconds: int) -> tuple[Model, datetime, list[AnnotationItem]]:
    """Lease up to ``limit`` unsaved ``todo`` items without suggestions from the current model.

    Raises what :func:`hub.services.access.require_project_role` raises and
    ``no_suggestion_model``. Moves the project to the newest model version in its range.
    """
    require_project_role(session, who, project, "suggest")
    model = resolve_model(session, who, project)
    now = utcnow()
    if project.model_version != model.version:
        project.model_version, project.updated_at = model.version, now
        session.add(project)
    until = now + timedelta(seconds=lease_seconds)
    items = session.exec(
        select(AnnotationItem).where(
            AnnotationItem.project_id == project.id,
            AnnotationItem.status == "todo",
            sa.or_(col(AnnotationItem.suggestion_version).is_(None), col(AnnotationItem.suggestion_version) != model.version),
            _free(AnnotationItem.suggest_lease_until, now),
            _free(AnnotationItem.lease_until, now),
            ~_saved(),
        ).order_by(col(AnnotationItem.id)).limit(min(limit, MAX_BATCH))
        .with_for_update(skip_locked=True, of=AnnotationItem)
    ).all()
    for item in items:
        item.suggest_lease_until, item.suggest_worker = until, worker
        session.add(item)
    session.flush()
    return model, until, list(items)


def post(session: Session, who: Principal, project: AnnotationProject, *, worker: str, model_version: str,
         results: Sequence[Result]) -> tuple[int, int]:
    """Store each result's suggestions; ``(stored, skipped)``.

    Every result is checked first (:func:`hub.services.annotation.labels.check`): one bad
    result is ``invalid_labels`` naming its item, and nothing of the call is stored. A result
    is stored only for an item of the project that is still ``todo``, was never saved, is not
    leased to an annotator, whose suggestion lease is this worker's (or free), and only when
    ``model_version`` is the project's model; the others are skipped.
    """
    user = require_project_role(session, who, project, "suggest")
    ids = [r.item for r in results]
    if len(set(ids)) != len(ids):
        raise HubError("invalid_field", "an item is named twice in the results")
    items: dict[int, AnnotationItem] = {}
    for part in range(0, len(ids), 500):
        rows = session.exec(select(AnnotationItem).where(
            AnnotationItem.project_id == project.id, col(AnnotationItem.id).in_(ids[part : part + 500]))
            .with_for_update(of=AnnotationItem)).all()
        items.update((row_id(r), r) for r in rows)
    checked: dict[int, list[dict[str, Any]]] = {}
    for result in results:
        item = items.get(result.item)
        if item is None:
            continue
        try:
            checked[result.item] = labels.check(result.suggestions, task=project.task, classes=project.classes,
                                                width=item.width, height=item.height, suggestions=True)
        except HubError as exc:
            raise HubError("invalid_labels", f"item {result.item}: {exc.message}",
                           details={"item": result.item, **(exc.details or {})}) from exc
    if model_version != project.model_version:
        return 0, len(results)
    saved = set(session.exec(select(AnnotationEvent.item_id).where(
        col(AnnotationEvent.item_id).in_(list(checked)), AnnotationEvent.action == "save")).all()) if checked else set()
    now = utcnow()
    stored = 0
    for item_id, suggestions in checked.items():
        item = items[item_id]
        mine = item.suggest_worker == worker or item.suggest_lease_until is None or item.suggest_lease_until < now
        annotating = item.lease_until is not None and item.lease_until >= now
        if item.status != "todo" or item_id in saved or annotating or not mine:
            continue
        item.suggestions, item.suggestion_version = suggestions, model_version
        item.confidence = labels.confidence(suggestions, project.task)
        item.suggest_lease_until = item.suggest_worker = None
        item.revision += 1
        item.updated_at = now
        session.add(item)
        session.add(AnnotationEvent(project_id=row_id(project), item_id=item_id, user_id=user.id, action="suggest",
                                    revision=item.revision, model_version=model_version))
        stored += 1
    return stored, len(results) - stored

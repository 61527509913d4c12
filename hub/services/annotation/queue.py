"""The annotators' side of a project: the queue with leases, saves, review and history.

An annotator takes the next ``todo`` item with :func:`next_item`, which leases it to them for
ten minutes (an item they already hold comes first). Two callers never get the same item: on
PostgreSQL the item is picked with ``SELECT ... FOR UPDATE SKIP LOCKED``, on SQLite the unit of
work holds the write lock (``in_session(write=True)``). A save (:func:`save_labels`) names the
revision it started from; a stale one is refused with the current item, and nothing is saved.
Every change is an :class:`hub.models.AnnotationEvent`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from hub.errors import HubError
from hub.models import AnnotationEvent, AnnotationItem, AnnotationProject, ItemStatus, User, row_id, utcnow
from hub.services import training
from hub.services.access import project_role, require_project_role
from hub.services.accounts import Principal
from hub.services.annotation import labels as rules
from hub.services.annotation.projects import MAX_PER_PAGE

#: How long a queue lease lasts.
LEASE_SECONDS = 600
#: The longest time one save may add to an item (a day): a client's clock is not trusted further.
MAX_DURATION_MS = 86_400_000

Verdict = Literal["approve", "reject"]


def _live(until: datetime | None, now: datetime) -> bool:
    if until is None:
        return False
    if until.tzinfo is None:  # SQLite hands back naive datetimes (stored as UTC)
        until = until.replace(tzinfo=now.tzinfo)
    return until > now


def _require(session: Session, who: Principal, project: AnnotationProject, action: str) -> User:
    """:func:`require_project_role`, except that a member removed while they work is told
    ``forbidden`` (they knew the project), not ``project_not_found``."""
    try:
        return require_project_role(session, who, project, action)
    except HubError as exc:
        user = who.user
        if exc.code != "project_not_found" or user is None:
            raise
        worked = session.exec(select(AnnotationEvent.id).where(
            AnnotationEvent.project_id == project.id, AnnotationEvent.user_id == user.id).limit(1)).first()
        held = session.exec(select(AnnotationItem.id).where(
            AnnotationItem.project_id == project.id, AnnotationItem.leased_by == user.id).limit(1)).first()
        if worked is None and held is None:
            raise
        raise HubError("forbidden", f"you no longer hold a role in {project.full_name}") from None


def _locked_item(session: Session, project: AnnotationProject, item_id: int) -> AnnotationItem:
    """The item, its row locked until the unit of work ends (PostgreSQL; SQLite holds the write lock)."""
    item = session.get(AnnotationItem, item_id, with_for_update=True, populate_existing=True)
    if item is None or item.project_id != project.id:
        raise HubError("item_not_found", f"{project.full_name} has no item {item_id}")
    return item


def _user_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {uid: name for uid, name in session.exec(select(User.id, User.name).where(col(User.id).in_(ids))).all()
            if uid is not None}


def item_document(item: AnnotationItem, project: AnnotationProject, *, holder: str | None = None,
                  now: datetime | None = None) -> dict[str, Any]:
    """An item as the API shows it. ``holder``: the name of the user whose lease is live, if any
    (looked up in the item's own session when not given)."""
    lease = None
    if item.leased_by is not None and _live(item.lease_until, now or utcnow()):
        if holder is None:
            session = Session.object_session(item)
            user = session.get(User, item.leased_by) if session is not None else None
            holder = user.name if user is not None else None
        assert item.lease_until is not None
        lease = {"user": holder, "until": item.lease_until.isoformat()}
    return {"id": item.id, "file_name": item.file_name, "width": item.width, "height": item.height,
            "split": item.split, "status": item.status, "revision": item.revision, "labels": item.labels,
            "suggestions": item.suggestions, "suggestion_version": item.suggestion_version,
            "confidence": item.confidence, "lease": lease, "sha256": item.sha256,
            "image": f"/api/v1/projects/{project.full_name}/items/{item.id}/image",
            "updated_at": item.updated_at.isoformat()}


def list_items(session: Session, project: AnnotationProject, status: ItemStatus | None = None, *,
               page: int = 1, per_page: int = 50) -> tuple[int, list[dict[str, Any]]]:
    """``(total, item documents on this page)``, by id."""
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise HubError("invalid_field", f"page starts at 1 and per_page is 1 to {MAX_PER_PAGE}")
    where = [AnnotationItem.project_id == project.id]
    if status is not None:
        where.append(AnnotationItem.status == status)
    total = session.exec(select(func.count()).select_from(AnnotationItem).where(*where)).one()
    items = session.exec(select(AnnotationItem).where(*where).order_by(col(AnnotationItem.id))
                         .offset((page - 1) * per_page).limit(per_page)).all()
    now = utcnow()
    names = _user_names(session, {i.leased_by for i in items if i.leased_by is not None and _live(i.lease_until, now)})
    return int(total), [item_document(i, project, holder=names.get(i.leased_by or 0), now=now) for i in items]


def next_item(session: Session, who: Principal, project: AnnotationProject,
              lease_seconds: int = LEASE_SECONDS) -> AnnotationItem | None:
    """Lease the caller the next ``todo`` item (one they hold already first); None when none is left.

    Raises as :func:`hub.services.access.require_project_role` (action ``label``).
    """
    user = _require(session, who, project, "label")
    now = utcnow()
    todo = [AnnotationItem.project_id == project.id, AnnotationItem.status == "todo"]
    item = session.exec(select(AnnotationItem).where(
        *todo, AnnotationItem.leased_by == user.id, col(AnnotationItem.lease_until) > now)
        .order_by(col(AnnotationItem.id)).limit(1).with_for_update(skip_locked=True)).first()
    if item is None:
        free = sa.or_(col(AnnotationItem.lease_until).is_(None), col(AnnotationItem.lease_until) <= now)
        # Uncertainty: least confident first, items without suggestions last. Two queries that
        # ix_annotation_items_queue answers in order, not one ORDER BY (confidence IS NULL, ...)
        # that sorts every todo item (7 ms on SQLite for 8,000 items).
        steps: list[tuple[list[Any], list[Any]]] = [([], [col(AnnotationItem.id)])]
        if project.queue_order == "uncertainty":
            confidence = col(AnnotationItem.confidence)
            steps = [([confidence.is_not(None)], [confidence, col(AnnotationItem.id)]),
                     ([confidence.is_(None)], [col(AnnotationItem.id)])]
        for where, order in steps:
            item = session.exec(select(AnnotationItem).where(*todo, free, *where).order_by(*order).limit(1)
                                .with_for_update(skip_locked=True)).first()
            if item is not None:
                break
    if item is None:
        return None
    item.leased_by, item.lease_until = user.id, now + timedelta(seconds=lease_seconds)
    session.add(item)
    session.flush()
    return item


def save_labels(session: Session, who: Principal, project: AnnotationProject, item_id: int, revision: int,
                labels: object, duration_ms: int = 0) -> AnnotationItem:
    """Save an annotator's labels on the item, if it is still at ``revision``; the item is then ``done``.

    Raises as :func:`require_project_role` (action ``label``), ``item_not_found``,
    ``stale_revision`` (with the current item in ``details.item``), ``item_leased`` (another
    annotator's lease is live) and ``invalid_labels``. On any error nothing is saved.
    """
    user = _require(session, who, project, "label")
    item = _locked_item(session, project, item_id)
    now = utcnow()
    if item.revision != revision:
        raise HubError("stale_revision", f"item {item_id} is at revision {item.revision}, not {revision}: "
                                         "it was saved since", details={"item": item_document(item, project, now=now)})
    if item.leased_by not in (None, user.id) and _live(item.lease_until, now):
        raise HubError("item_leased", f"another annotator holds item {item_id} until {item.lease_until}")
    checked = rules.check(labels, task=project.task, classes=project.classes, width=item.width,
                          height=item.height, known=len(item.suggestions or []))
    duration = min(max(int(duration_ms), 0), MAX_DURATION_MS)
    counts = rules.compare(checked, item.suggestions)
    item.labels, item.revision, item.status = checked, item.revision + 1, "done"
    item.leased_by = item.lease_until = None
    item.updated_by, item.updated_at = user.id, now
    item.time_ms += duration
    session.add(item)
    session.add(AnnotationEvent(
        project_id=row_id(project), item_id=row_id(item), user_id=user.id, at=now, action="save", revision=item.revision,
        model_version=item.suggestion_version, labels=checked, accepted=counts.accepted, edited=counts.edited,
        rejected=counts.rejected, added=counts.added, duration_ms=duration))
    session.flush()
    training.after_accept(session, project)  # a fine-tune may be due once this commits (docs/training.md)
    return item


def release(session: Session, who: Principal, project: AnnotationProject, item_id: int) -> None:
    """Give a leased item back to the queue: its holder, or an owner. Nothing to give back is fine.

    Raises as :func:`require_project_role` (action ``label``), ``item_not_found``, and
    ``forbidden`` for someone else's lease.
    """
    user = _require(session, who, project, "label")
    item = _locked_item(session, project, item_id)
    if item.leased_by is None:
        return
    if item.leased_by != user.id and not who.is_admin and project_role(session, project, user) != "owner":
        if _live(item.lease_until, utcnow()):
            raise HubError("forbidden", "only the lease's holder or a project owner may give it back")
        return  # an expired lease is nobody's: nothing to give back
    item.leased_by = item.lease_until = None
    session.add(item)
    session.flush()


def review(session: Session, who: Principal, project: AnnotationProject, item_id: int, revision: int,
           verdict: Verdict) -> AnnotationItem:
    """Approve a ``done`` item, or send a ``done`` or ``approved`` one back to the queue (``todo``).

    Raises as :func:`require_project_role` (action ``review``), ``item_not_found``,
    ``stale_revision`` and ``invalid_field`` (approving an item nobody saved, sending back one
    in the queue).
    """
    user = _require(session, who, project, "review")
    item = _locked_item(session, project, item_id)
    now = utcnow()
    if item.revision != revision:
        raise HubError("stale_revision", f"item {item_id} is at revision {item.revision}, not {revision}: "
                                         "it changed since", details={"item": item_document(item, project, now=now)})
    if verdict == "approve" and item.status != "done":
        raise HubError("invalid_field", f"only a saved item can be approved; item {item_id} is {item.status}")
    if verdict == "reject" and item.status == "todo":
        raise HubError("invalid_field", f"item {item_id} is in the queue already")
    status: ItemStatus = "approved" if verdict == "approve" else "todo"
    item.status, item.revision = status, item.revision + 1
    item.updated_by, item.updated_at = user.id, now
    session.add(item)
    session.add(AnnotationEvent(project_id=row_id(project), item_id=row_id(item), user_id=user.id, at=now, action=verdict,
                                revision=item.revision, model_version=item.suggestion_version, labels=item.labels))
    session.flush()
    training.after_accept(session, project)  # an approval may make a fine-tune due (docs/training.md)
    return item


def history(session: Session, project: AnnotationProject, item: AnnotationItem) -> list[dict[str, Any]]:
    """Every event of the item, oldest first: who, when, what, and how it used the suggestions."""
    rows = session.exec(select(AnnotationEvent, User.name).join(User, col(User.id) == AnnotationEvent.user_id,
                                                                isouter=True)
                        .where(AnnotationEvent.item_id == item.id).order_by(col(AnnotationEvent.id))).all()
    return [{"id": e.id, "action": e.action, "user": name, "at": e.at.isoformat(), "revision": e.revision,
             "model_version": e.model_version, "labels": e.labels, "accepted": e.accepted, "edited": e.edited,
             "rejected": e.rejected, "added": e.added, "duration_ms": e.duration_ms} for e, name in rows]

"""The annotation page and the JSON it talks to (``/projects/NS/NAME/-/...``).

The website cannot send API tokens, so the page's script calls these routes with the session
cookie and the CSRF token in the ``X-CSRF-Token`` header (checked by
:class:`web.security.CsrfMiddleware` before a view runs). Each route calls the same service
function as its API twin (:mod:`hub.services.annotation.queue`); errors are the API's JSON
``{"error": {"code", "message", "details"}}`` with the same codes and statuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from hub.api._http import json_response, read_json
from hub.context import ctx, in_session, run_sync
from hub.errors import HubError
from hub.models import AnnotationItem, AnnotationProject
from hub.services.access import require_project_role
from hub.services.accounts import Principal
from hub.services.annotation import projects, queue
from hub.storage import BlobNotFound, StorageError
from web.session import web_principal
from web.templating import render
from web.views.projects import SIGNED_OUT, find, not_found, refuse_on_mirror

_MEDIA = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}


async def annotate_page(request: Request) -> Response:
    who = await web_principal(request)
    if who.user is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    def work(session: Session) -> dict[str, Any]:
        project = find(session, who, request)
        require_project_role(session, who, project, "label")
        return {"project": projects.settings_document(project), "progress": _progress(session, project)}

    try:
        context = await in_session(request, work)
    except HubError as exc:
        if exc.status in (403, 404):
            return not_found(request, exc)
        raise
    return render(request, "annotate.html", **context)


def _progress(session: Session, project: AnnotationProject) -> dict[str, int]:
    assert project.id is not None
    counts = projects.status_counts(session, [project.id])[project.id]
    return {"done": counts["done"] + counts["approved"], "total": counts["total"]}


def _item(session: Session, project: AnnotationProject, item: AnnotationItem) -> dict[str, Any]:
    return {"item": queue.item_document(item, project), "progress": _progress(session, project)}


async def _answer(request: Request, fn: Any, *, write: bool) -> Response:
    """``fn(session, who, project)`` in one unit of work, as JSON; a hub error as the API's JSON."""
    who = await web_principal(request)

    def work(session: Session) -> Any:
        if write:
            refuse_on_mirror(request)
        return fn(session, who, find(session, who, request))

    try:
        result = await in_session(request, work, write=write)
    except HubError as exc:
        error = SIGNED_OUT if exc.code == "unauthenticated" else exc
        return json_response(error.body(), status=error.status)
    if result is None:
        return Response(status_code=204)
    return json_response(result)


async def next_item(request: Request) -> Response:
    """Lease the next item to the visitor: ``{"item": ... | null, "progress": {"done", "total"}}``."""

    def work(session: Session, who: Principal, project: AnnotationProject) -> dict[str, Any]:
        item = queue.next_item(session, who, project)
        if item is None:
            return {"item": None, "progress": _progress(session, project)}
        return _item(session, project, item)

    return await _answer(request, work, write=True)


async def get_item(request: Request) -> Response:
    item_id = request.path_params["item_id"]

    def work(session: Session, who: Principal, project: AnnotationProject) -> dict[str, Any]:
        return _item(session, project, projects.get_item(session, project, item_id))

    return await _answer(request, work, write=False)


async def save_labels(request: Request) -> Response:
    """``{"revision", "labels", "duration_ms"}``: the API's save, answered with the saved item."""
    item_id = request.path_params["item_id"]
    try:
        body = await read_json(request, 4 << 20)
        for key in ("revision", "duration_ms"):
            value = body.get(key, 0 if key == "duration_ms" else None)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise HubError("invalid_field", f"'{key}' must be a non-negative integer")
    except HubError as exc:
        return json_response(exc.body(), status=exc.status)
    revision, duration = int(body["revision"]), int(body.get("duration_ms", 0))

    def work(session: Session, who: Principal, project: AnnotationProject) -> dict[str, Any]:
        item = queue.save_labels(session, who, project, item_id, revision, body.get("labels"), duration)
        return _item(session, project, item)

    return await _answer(request, work, write=True)


async def release(request: Request) -> Response:
    item_id = request.path_params["item_id"]

    def work(session: Session, who: Principal, project: AnnotationProject) -> None:
        queue.release(session, who, project, item_id)

    return await _answer(request, work, write=True)


async def image(request: Request) -> Response:
    """The item's image from the store, with its own media type: same-origin bytes (no redirect
    to a presigned URL, which the page's Content-Security-Policy would block)."""
    who = await web_principal(request)
    item_id = request.path_params["item_id"]

    def work(session: Session) -> tuple[str, str]:
        project = find(session, who, request)
        item = projects.get_item(session, project, item_id)
        return item.sha256, item.file_name

    try:
        digest, file_name = await in_session(request, work)
        chunks = await run_sync(_open, ctx(request), digest)
    except HubError as exc:
        return json_response(exc.body(), status=exc.status)
    media = _MEDIA.get(file_name.rsplit(".", 1)[-1].lower(), "application/octet-stream")
    return StreamingResponse(chunks, media_type=media, headers={
        "etag": f'"{digest}"', "cache-control": "private, max-age=86400"})  # a project may turn private


def _open(hub: Any, digest: str) -> Iterator[bytes]:
    try:
        it = iter(hub.store.open_range(digest))
        first = next(it, b"")
    except BlobNotFound as exc:
        raise HubError("blob_not_found", "the image is recorded but missing from storage") from exc
    except StorageError as exc:
        raise HubError("storage_unavailable", str(exc)) from exc

    def rest() -> Iterator[bytes]:
        yield first
        yield from it

    return rest()

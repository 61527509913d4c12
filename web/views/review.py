"""The reviewer's page: a project's saved items with their labels drawn over them, each approved
or sent back to the queue (``/projects/NS/NAME/review``, reviewers and owners).

The items are the ``done`` ones, :data:`PER_PAGE` a page, oldest first; each is a thumbnail (the
image from the annotation page's route) with its boxes in an SVG laid over it, drawn on the
server as the dataset pages draw theirs (no script). Approve and Send back are plain forms with
the CSRF token and the revision the reviewer saw; they call
:func:`hub.services.annotation.queue.review`, as ``POST .../items/{id}/review`` does, so a
review of an item that changed since the page was loaded is refused (``stale_revision``) and the
page says what happened, showing the item as it is now.
"""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cvflow.manifest.dataset import IMAGE_NAME_RE
from hub.context import in_session
from hub.errors import HubError
from hub.services.access import require_project_role
from hub.services.accounts import Principal
from hub.services.annotation import projects, queue
from web.session import web_principal
from web.templating import render
from web.views.projects import find, not_found, refuse_on_mirror, sign_in_first

#: Items a page shows.
PER_PAGE = 50
#: How many colours the stylesheet has for boxes (``.c0`` ...), as on the dataset pages.
COLOURS = 8
#: The notices a redirect back may ask for: (query key, text with the item's name).
_NOTICES = {"approved": "{} approved.", "sent_back": "{} sent back to the queue."}


def _page(raw: object) -> int:
    try:
        return min(10_000, max(1, int(str(raw))))
    except ValueError:
        return 1


def _path(request: Request) -> str:
    return f"/projects/{request.path_params['namespace']}/{request.path_params['name']}/review"


async def review_page(request: Request) -> Response:
    who = await web_principal(request)
    if who.user is None:
        return RedirectResponse(f"/login?next={_path(request)}", status_code=303)
    notices = []
    for key, message in _NOTICES.items():
        value = request.query_params.get(key)
        if value is not None and IMAGE_NAME_RE.match(value):
            notices.append(message.format(value))
    return await _render(request, who, page=_page(request.query_params.get("page", "1")), notices=notices)


async def _render(request: Request, who: Principal, *, page: int, notices: list[str],
                  error: HubError | None = None, status: int = 200) -> Response:
    def work(session: Session) -> dict[str, Any]:
        project = find(session, who, request)
        require_project_role(session, who, project, "review")
        total, docs = queue.list_items(session, project, "done", page=page, per_page=PER_PAGE)
        assert project.id is not None
        return {"project": projects.settings_document(project),
                "counts": projects.status_counts(session, [project.id])[project.id],
                "total": total, "items": [_thumb(project.classes, d) for d in docs]}

    try:
        context = await in_session(request, work)
    except HubError as exc:
        if exc.status in (403, 404):
            return not_found(request, exc)
        raise
    pages = max(1, -(-context["total"] // PER_PAGE))
    stale = _thumb(context["project"]["classes"], error.details["item"]) if error and "item" in error.details else None
    return render(request, "review.html", status=status, **context, page=page, pages=pages, notices=notices,
                  error=error, stale=stale, colours=COLOURS)


def _thumb(classes: list[str], item: dict[str, Any]) -> dict[str, Any]:
    """An item as the page draws it: its boxes with their class's colour, or its class."""
    index = {c: i for i, c in enumerate(classes)}
    boxes, label = [], None
    for lab in item.get("labels") or []:
        c = index.get(str(lab.get("class")), 0)
        if "bbox" in lab:
            x, y, w, h = lab["bbox"]
            boxes.append({"x": x, "y": y, "w": w, "h": h, "name": lab.get("class"), "c": c % COLOURS})
        else:
            label = {"name": lab.get("class"), "c": c % COLOURS}
    return {"id": item["id"], "file_name": item["file_name"], "width": item["width"], "height": item["height"],
            "revision": item["revision"], "status": item["status"], "boxes": boxes, "label": label}


async def review_item(request: Request) -> Response:
    """Approve an item or send it back (the form's ``verdict``), naming the revision reviewed."""
    who = await web_principal(request)
    if who.user is None:
        return sign_in_first(request)
    item_id = request.path_params["item_id"]
    form = await request.form()
    verdict, revision, page = str(form.get("verdict") or ""), str(form.get("revision") or ""), _page(form.get("page"))

    def work(session: Session) -> str:
        refuse_on_mirror(request)
        project = find(session, who, request)
        require_project_role(session, who, project, "review")  # before the form: a stranger learns nothing
        if verdict not in ("approve", "reject"):
            raise HubError("invalid_field", "the verdict is approve or reject")
        if not re.fullmatch(r"[0-9]{1,9}", revision):
            raise HubError("invalid_field", "the form names no revision: load the page again")
        chosen: queue.Verdict = "approve" if verdict == "approve" else "reject"
        item = queue.review(session, who, project, item_id, int(revision), chosen)
        return item.file_name

    try:
        file_name = await in_session(request, work, write=True)
    except HubError as exc:
        if exc.status in (403, 404):
            return not_found(request, exc)
        return await _render(request, who, page=page, notices=[], error=_explained(exc), status=exc.status)
    key = "approved" if verdict == "approve" else "sent_back"
    return RedirectResponse(f"{_path(request)}?page={page}&{key}={file_name}#review-h", status_code=303)


def _explained(exc: HubError) -> HubError:
    """A stale review said in the reviewer's words; the item as it is now stays in the details."""
    item = exc.details.get("item")
    if exc.code != "stale_revision" or not isinstance(item, dict):
        return exc
    now = {"todo": "back in the queue", "done": "saved again", "approved": "approved"}.get(str(item.get("status")),
                                                                                          str(item.get("status")))
    return HubError("stale_revision", f"{item.get('file_name')} changed since this page was loaded: it is {now} "
                                      f"(revision {item.get('revision')}), so your review was not recorded. "
                                      "It is shown below as it is now; review it again if it still needs you.",
                    details=exc.details)

"""Annotation projects on the website: the list (with a form to create one), a project's page
(progress, how the suggestions were used per model version, members, snapshots, adding images).

The rules are the hub's, in :mod:`hub.services.annotation`; this module turns forms into their
arguments and their errors into the page, as the API does with JSON. The annotation page and
its JSON routes are :mod:`web.views.annotate`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cvflow.datasets.images import MAX_IMAGE_BYTES, ImageProblem, read_header_from
from cvflow.manifest.dataset import DATASET_TASKS
from hub.api._http import json_response
from hub.context import ctx, in_session, run_sync
from hub.errors import HubError
from hub.models import AnnotationProject
from hub.services.access import require_project_role
from hub.services.accounts import Principal
from hub.services.annotation import images, projects, snapshots
from hub.services.blobs import user_holder
from web.charts import usage_svg
from web.session import web_principal
from web.templating import render

PER_PAGE = 50
FIELDS = ("namespace", "name", "task", "classes", "description", "suggest_package", "suggest_range",
          "suggest_solver", "queue_order")
_FIELD_LIMIT = 2000
#: Most images one upload adds, and most bytes one upload request may carry.
MAX_UPLOAD_FILES = 200
MAX_UPLOAD_BYTES = 512 << 20
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


# --- shared with web.views.annotate ---------------------------------------------------------


def find(session: Session, who: Principal, request: Request) -> AnnotationProject:
    """The project the path names, if the visitor may see it (``project_not_found`` otherwise)."""
    p = request.path_params
    return projects.get_project(session, who, p["namespace"], p["name"])


def refuse_on_mirror(request: Request) -> None:
    if ctx(request).settings.read_only:
        raise HubError("read_only", "this hub is read-only (a mirror): annotate on its upstream")


def not_found(request: Request, exc: HubError) -> Response:
    return render(request, "error.html", status=exc.status, title="Not found" if exc.status == 404 else "Cannot do that",
                  message=exc.message)


def sign_in_first(request: Request) -> Response:
    """Where a visitor who is not signed in goes: the sign-in page, back to the project after."""
    p = request.path_params
    return RedirectResponse(f"/login?next=/projects/{p['namespace']}/{p['name']}", status_code=303)


#: What the website says instead of the API's "needs an API token".
SIGNED_OUT = HubError("unauthenticated", "sign in to do this")


# --- the list -------------------------------------------------------------------------------


async def projects_page(request: Request) -> Response:
    who = await web_principal(request)
    return await _list(request, who, values={"namespace": who.user.name if who.user else "", "task": "detection",
                                             "suggest_range": "*", "private": True})


async def _list(request: Request, who: Principal, *, values: dict[str, Any], error: HubError | None = None,
                status: int = 200) -> Response:
    page = _page_number(request)

    def work(session: Session) -> dict[str, Any]:
        total, rows = projects.list_projects(session, who, page=page, per_page=PER_PAGE)
        counts = projects.status_counts(session, [p.id for p in rows if p.id is not None])
        return {"total": total, "projects": [{**projects.settings_document(p), "counts": counts[p.id]}
                                              for p in rows if p.id is not None]}

    found = await in_session(request, work)
    return render(request, "projects.html", status=status, **found, page=page,
                  pages=max(1, -(-found["total"] // PER_PAGE)), values=values, error=error, tasks=DATASET_TASKS,
                  queue_orders=projects.QUEUE_ORDERS)


def _page_number(request: Request) -> int:
    try:
        return min(10_000, max(1, int(request.query_params.get("page", "1"))))
    except ValueError:
        return 1


async def create(request: Request) -> Response:
    # The CSRF token was checked before this view runs (web.security.CsrfMiddleware).
    who = await web_principal(request)
    if who.user is None:
        return RedirectResponse("/login?next=/projects", status_code=303)
    form = await request.form()
    values: dict[str, Any] = {k: str(form.get(k) or "").strip()[:_FIELD_LIMIT] for k in FIELDS}
    values["private"] = form.get("private") == "on"
    classes = [c.strip() for c in re.split(r"[,\n]", values["classes"]) if c.strip()]
    suggest = None
    if values["suggest_package"]:
        suggest = {"package": values["suggest_package"], "range": values["suggest_range"] or "*",
                   "solver": values["suggest_solver"]}

    def work(session: Session) -> str:
        refuse_on_mirror(request)
        project = projects.create_project(
            session, who, namespace=values["namespace"], name=values["name"], task=values["task"], classes=classes,
            description=values["description"], private=values["private"],
            queue_order=values["queue_order"] or "sequential", suggest=suggest)
        return project.full_name

    try:
        full_name = await in_session(request, work, write=True)
    except HubError as exc:
        return await _list(request, who, values=values, error=exc, status=_form_status(exc))
    return RedirectResponse(f"/projects/{full_name}", status_code=303)


def _form_status(error: HubError) -> int:
    # A form shown again with its error keeps the hub's status for it (422 invalid_project, 409
    # project_exists, ...), as the API would answer; a page is never a 404 for a form's content.
    return 400 if error.status == 404 else error.status


# --- a project's page -----------------------------------------------------------------------

#: The notices a redirect back to the project page may ask for: (query key, text with {n}).
_NOTICES = {"added": "{n} image(s) added.", "existing": "{n} image(s) were in the project already.",
            "member": "Members updated.", "snapshot": "Snapshot {v} published."}


async def project_page(request: Request) -> Response:
    who = await web_principal(request)
    try:
        context = await in_session(request, _project_context, who, request)
    except HubError as exc:
        if exc.status == 404:
            return not_found(request, exc)
        raise
    if context["project"]["full_name"] != f"{request.path_params['namespace']}/{request.path_params['name']}":
        return RedirectResponse(f"/projects/{context['project']['full_name']}", status_code=301)
    return render(request, "project.html", **context, notices=_notices(request), error=None)


def _project_context(session: Session, who: Principal, request: Request) -> dict[str, Any]:
    from web.views.training import panel  # the fine-tuning panel's module imports this one

    project = find(session, who, request)
    doc = projects.project_document(session, who, project)
    role = doc.get("role")
    counts = doc["counts"]
    total = counts["total"] or 1
    return {
        "project": doc,
        "chart": usage_svg(doc["stats"]["per_model_version"]),
        "bar": {k: 100.0 * counts[k] / total for k in ("approved", "done", "todo")},
        "can_manage": role == "owner" or who.is_admin,
        "can_label": role in ("owner", "annotator") or who.is_admin,
        "can_review": role in ("owner", "reviewer") or who.is_admin,
        "max_image_mib": MAX_IMAGE_BYTES >> 20, "max_files": MAX_UPLOAD_FILES,
        "training": panel(session, who, project),
    }


def _notices(request: Request) -> list[str]:
    out = []
    for key, message in _NOTICES.items():
        value = request.query_params.get(key)
        if value is None:
            continue
        if "{n}" in message and value.isascii() and value.isdigit() and int(value) > 0:
            out.append(message.format(n=int(value)))
        elif "{v}" in message and re.fullmatch(r"[0-9A-Za-z.+-]{1,64}", value):
            out.append(message.format(v=value))
        elif "{" not in message:
            out.append(message)
    return out


async def _page_with_error(request: Request, who: Principal, error: HubError) -> Response:
    try:
        context = await in_session(request, _project_context, who, request)
    except HubError as exc:
        return not_found(request, exc)
    return render(request, "project.html", status=_form_status(error), **context, notices=[], error=error)


async def members(request: Request) -> Response:
    who = await web_principal(request)
    if who.user is None:
        return sign_in_first(request)
    form = await request.form()
    user = str(form.get("user") or "").strip().lower()[:100]
    role = str(form.get("role") or "")

    def work(session: Session) -> str:
        refuse_on_mirror(request)
        project = find(session, who, request)
        projects.set_member(session, who, project, user, None if role == "remove" else role)  # type: ignore[arg-type]  # checked by set_member
        return project.full_name

    try:
        full_name = await in_session(request, work, write=True)
    except HubError as exc:
        if exc.status == 404 and exc.code == "project_not_found":
            return not_found(request, exc)
        return await _page_with_error(request, who, exc)
    return RedirectResponse(f"/projects/{full_name}?member=1#members-h", status_code=303)


async def snapshot(request: Request) -> Response:
    """Publish the accepted labels as the next version of the project's dataset package, in the
    same three steps as ``POST .../snapshots``: plan, store the new files, publish."""
    who = await web_principal(request)
    if who.user is None:
        return sign_in_first(request)
    hub = ctx(request)

    def prepare(session: Session) -> snapshots.Plan:
        refuse_on_mirror(request)
        return snapshots.plan(session, who, find(session, who, request), version=None, package=None)

    def publish(session: Session, plan: snapshots.Plan) -> tuple[str, str]:
        project = find(session, who, request)
        row = snapshots.publish(session, hub.settings, who, project, plan)
        return project.full_name, row.version

    try:
        plan = await in_session(request, prepare)
        await run_sync(snapshots.store, hub.uploads, who, plan)
        full_name, version = await in_session(request, publish, plan, write=True)
    except HubError as exc:
        if exc.code == "project_not_found":
            return not_found(request, exc)
        return await _page_with_error(request, who, exc)
    return RedirectResponse(f"/projects/{full_name}?snapshot={version}#snapshots-h", status_code=303)


# --- adding images --------------------------------------------------------------------------


async def upload(request: Request) -> Response:
    """Images from a form (or the page's drag and drop): each file is stored as a blob granted
    to the visitor, then added with the same service calls as ``POST .../items``."""
    who = await web_principal(request)
    wants_json = "application/json" in request.headers.get("accept", "")
    if who.user is None:
        return json_response(SIGNED_OUT.body(), status=401) if wants_json else sign_in_first(request)
    try:
        full_name, added = await _upload(request, who)
    except HubError as exc:
        if wants_json:
            return json_response(exc.body(), status=exc.status)
        if exc.code == "project_not_found":
            return not_found(request, exc)
        return await _page_with_error(request, who, exc)
    if wants_json:
        return json_response({"added": added.added, "existing": added.existing,
                              "items": [{"id": i, "file_name": n} for i, n in added.items]})
    return RedirectResponse(f"/projects/{full_name}?added={added.added}&existing={added.existing}", status_code=303)


async def _upload(request: Request, who: Principal) -> tuple[str, images.Added]:
    hub = ctx(request)

    def allowed(session: Session) -> str:
        # Before any byte is read: only those who may add images make the hub spool files.
        refuse_on_mirror(request)
        project = find(session, who, request)
        require_project_role(session, who, project, "manage")
        return project.full_name

    full_name = await in_session(request, allowed)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES:
        raise HubError("body_too_large", f"one upload may carry at most {MAX_UPLOAD_BYTES >> 20} MiB; "
                                         "send the images in several", details={"limit": MAX_UPLOAD_BYTES})
    form = await _limited(request).form(max_files=MAX_UPLOAD_FILES + 1, max_fields=50)
    try:
        files = [f for f in form.getlist("images") if isinstance(f, UploadFile) and f.filename]
        if not files:
            raise HubError("bad_request", "choose one or more PNG or JPEG images to add")
        if len(files) > MAX_UPLOAD_FILES:
            raise HubError("body_too_large", f"at most {MAX_UPLOAD_FILES} images per upload")
        split = str(form.get("split") or "train").strip() or "train"
        wanted = [images.NewItem(sha256="", file_name=_file_name(f.filename or ""), split=split) for f in files]
        images.check_names(wanted)  # names first: a bad name costs no storage
        stored = [await run_sync(_store, hub, f, user_holder(who.require_user().id)) for f in files]
    finally:
        await form.close()
    items = [images.NewItem(sha256=digest, file_name=w.file_name, split=w.split)
             for digest, w in zip(stored, wanted, strict=True)]

    def check(session: Session) -> dict[str, int]:
        project = find(session, who, request)
        return images.check_blobs(session, who, project, items)

    sizes = await in_session(request, check, write=True)
    headers = await run_sync(images.read_headers, hub.store, items, sizes)

    def add(session: Session) -> images.Added:
        return images.add_items(session, who, find(session, who, request), items, headers)

    return full_name, await in_session(request, add, write=True)


def _file_name(raw: str) -> str:
    """A browser's file name as a project's item name: its last part, with anything outside
    letters, digits, '.', '_' and '-' made '_' (the service checks the rest)."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    return _NAME_CHARS.sub("_", base).lstrip("._")[:128]


def _store(hub: Any, file: UploadFile, holder: str) -> str:
    """Check the file's image header (the rule the hub applies to every item), then store it as
    a blob granted to ``holder``. Raises ``invalid_image`` for anything else."""
    name = file.filename or "image"
    f = file.file
    size = f.seek(0, 2)
    f.seek(0)
    try:
        read_header_from(f, size, where=name)
    except ImageProblem as exc:
        raise HubError("invalid_image", f"Not an image the hub accepts: {exc.problem.message}",
                       details={"problems": [{"item": name, "problem": exc.problem.code,
                                              "message": exc.problem.message}]}) from exc
    f.seek(0)

    def pieces() -> Iterator[bytes]:
        while block := f.read(1 << 20):
            yield block

    digest, _ = hub.uploads.put_stream(pieces(), size, grant_to=holder, max_size=MAX_IMAGE_BYTES)
    return str(digest)


def _limited(request: Request) -> Request:
    """The request, its body cut off with ``body_too_large`` past :data:`MAX_UPLOAD_BYTES`
    (a body without a Content-Length is counted as it arrives)."""
    received = 0
    receive = request.receive

    async def counted() -> Any:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > MAX_UPLOAD_BYTES:
            raise HubError("body_too_large", f"one upload may carry at most {MAX_UPLOAD_BYTES >> 20} MiB",
                           details={"limit": MAX_UPLOAD_BYTES})
        return message

    return Request(request.scope, counted)

"""Annotation projects (docs/annotation.md): projects, members, items, the queue, saves, review.

Reads are open to whoever may see the project (a private one is ``project_not_found`` to
everyone else); writes need the ``annotate`` scope and a role in the project, checked by
:mod:`hub.services.annotation` once the project is loaded.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, WithJsonSchema
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from cvflow.errors import InvalidNameError
from cvflow.manifest.dataset import MAX_CLASS_NAME, MAX_CLASSES
from cvflow.names import RESERVED_NAMESPACES, PackageName
from hub.api import bodies
from hub.api._http import Registry, json_response, principal, read_body, read_query
from hub.api.access import OPTIONAL, Access
from hub.api.downloads import blob_response
from hub.context import ctx, in_session
from hub.errors import ErrorCode, HubError
from hub.models import AnnotationProject, AnnotationTask, Blob, ItemStatus, ProjectRole, QueueOrder
from hub.services.accounts import Principal
from hub.services.annotation import projects, queue
from hub.services.annotation.labels import MAX_LABELS

endpoint = Registry()

_PROJECT = (("namespace", "path", "namespace (user or organisation)"), ("name", "path", "project name"))
_ITEM = (*_PROJECT, ("item_id", "path", "the item's id"))
_PROJECT_ERRORS: tuple[ErrorCode, ...] = ("project_not_found",)
_ITEM_ERRORS: tuple[ErrorCode, ...] = ("project_not_found", "item_not_found")

# --- bodies and queries -----------------------------------------------------------------------

_FORBIDDEN = r'<>&"`/\\\x00-\x1f\x7f-\x9f'
ClassName = Annotated[str, Field(
    min_length=1, max_length=MAX_CLASS_NAME, pattern=rf"^[^\s{_FORBIDDEN}](?:[^{_FORBIDDEN}]*[^\s{_FORBIDDEN}])?$",
    json_schema_extra={"not": {"enum": [".", ".."]}},
    description="a class: no HTML, path or control characters, no space at either end")]
ProjectName = Annotated[str, Field(pattern=bodies.NAME_PATTERN, min_length=bodies.NAME_LENGTH[0],
                                   max_length=bodies.NAME_LENGTH[1], description="the project's name")]
def _package_ref(value: str) -> str:
    try:
        return str(PackageName.parse(value))
    except InvalidNameError as exc:
        raise ValueError(exc.message) from None


# As cvflow.names reads it; the document states the lengths with look-aheads (as bodies.SCOPE_PATTERN).
_PACKAGE_PATTERN = (r"^(?=[^/]{2,39}/)[a-z0-9]+(?:-[a-z0-9]+)*/(?=[^/]{1,64}$)[a-z0-9]+(?:[-_.][a-z0-9]+)*$")
PackageRef = Annotated[str, AfterValidator(_package_ref), WithJsonSchema({
    "type": "string", "pattern": _PACKAGE_PATTERN, "description": "a package, namespace/name",
    "not": {"pattern": "^(?:" + "|".join(sorted(RESERVED_NAMESPACES)) + ")/"}})]
Description = Annotated[str, Field(max_length=projects.MAX_DESCRIPTION)]


class SuggestionModel(bodies.Body):
    """The model whose suggestions annotators see: a package, a version range and one of its solvers."""

    package: PackageRef
    range: Annotated[str, Field(min_length=1, max_length=128, description="a version range, e.g. ^1.2 or *")] = "*"
    solver: ProjectName = Field(description="the solver's name in the package's manifest")


_PROJECT_CODES: dict[str, ErrorCode] = {
    key: "invalid_project" for key in ("name", "task", "classes", "classes.*", "description", "private",
                                       "queue_order", "suggest", "suggest.*", "dataset_package")}


class NewProject(bodies.Body):
    codes: ClassVar[dict[str, ErrorCode]] = _PROJECT_CODES
    namespace: bodies.Namespace = Field(description="where the project lives: your user or an organisation")
    name: ProjectName
    task: AnnotationTask
    classes: Annotated[list[ClassName], Field(min_length=1, max_length=MAX_CLASSES,
                                              description="the label set, unique ignoring case")]
    description: Description = ""
    private: bool = Field(default=True, description="only its role holders see it")
    queue_order: QueueOrder = Field(default="sequential", description="sequential, or least confident first")
    suggest: SuggestionModel | None = None
    dataset_package: PackageRef | None = Field(default=None, description="where snapshots are published "
                                                                         "[default: NAMESPACE/NAME-data]")


def _not_null(schema: dict[str, Any]) -> None:
    for key, prop in schema.get("properties", {}).items():
        if key != "suggest" and "anyOf" in prop:
            prop.update(next(b for b in prop.pop("anyOf") if b.get("type") != "null"))
            prop.pop("default", None)


class ProjectSettings(bodies.Body):
    """The settings to change; those left out stay."""

    # Left out, a setting stays. Only ``suggest`` may be null (no suggestion model): the document
    # says so, and :func:`patch_project` refuses a null for the others.
    model_config = ConfigDict(**bodies.Body.model_config, json_schema_extra=_not_null)
    codes: ClassVar[dict[str, ErrorCode]] = _PROJECT_CODES
    description: Description | None = None
    private: bool | None = None
    queue_order: QueueOrder | None = None
    suggest: SuggestionModel | None = Field(default=None, description="the suggestion model; null removes it")
    dataset_package: PackageRef | None = None
    classes: Annotated[list[ClassName], Field(min_length=1, max_length=MAX_CLASSES, description=(
        "the label set: the current classes, in order, then any new ones"))] | None = None


class Member(bodies.Body):
    role: ProjectRole


class Labels(bodies.Body):
    codes: ClassVar[dict[str, ErrorCode]] = {"labels": "invalid_labels", "labels.*": "invalid_labels"}
    revision: Annotated[int, Field(ge=0, le=bodies.MAX_ID, description="the revision the labels started from"),
                        BeforeValidator(bodies.integral)]
    labels: Annotated[list[Any], Field(max_length=MAX_LABELS, description=(
        'detection: {"class", "bbox": [x, y, w, h], "from"}; classification: at most one {"class", "from"}'))]
    duration_ms: Annotated[int, Field(ge=0, le=bodies.MAX_ID, description="time spent on this item"),
                           BeforeValidator(bodies.integral)] = 0


class Review(bodies.Body):
    revision: Annotated[int, Field(ge=0, le=bodies.MAX_ID, description="the revision reviewed"),
                        BeforeValidator(bodies.integral)]
    verdict: Literal["approve", "reject"]


class ProjectList(bodies.Query):
    namespace: bodies.Namespace | None = Field(default=None, description="only this namespace")
    page: bodies.QueryInt = Field(default=1, ge=1, le=1_000_000, description="page number, from 1")
    per_page: bodies.QueryInt = Field(default=20, ge=1, le=projects.MAX_PER_PAGE, description="results per page")


class ItemList(bodies.Query):
    status: ItemStatus | None = Field(default=None, description="only items in this state")
    page: bodies.QueryInt = Field(default=1, ge=1, le=1_000_000, description="page number, from 1")
    per_page: bodies.QueryInt = Field(default=50, ge=1, le=projects.MAX_PER_PAGE, description="items per page")


# --- response shapes ------------------------------------------------------------------------

_STATS = {"type": "object", "properties": {k: {"type": "integer"} for k in (
    "items", "accepted", "edited", "rejected", "added", "mean_ms", "median_ms")}}
_SETTINGS: dict[str, Any] = {
    "namespace": {"type": "string"}, "name": {"type": "string"}, "full_name": {"type": "string"},
    "description": {"type": "string"}, "task": {"type": "string"},
    "classes": {"type": "array", "items": {"type": "string"}}, "private": {"type": "boolean"},
    "queue_order": {"type": "string"}, "suggest": {"type": ["object", "null"]},
    "model_version": {"type": ["string", "null"]}, "dataset_package": {"type": "string"},
    "role": {"type": ["string", "null"], "description": "the caller's role"},
    "counts": {"type": "object", "description": "items per status, and the total"}}
_PROJECT_DOC = {"type": "object", "properties": {
    **_SETTINGS,
    "members": {"type": "array", "description": "for owners only", "items": {"type": "object"}},
    "snapshots": {"type": "array", "items": {"type": "object"}},
    "stats": {"type": "object", "properties": {
        "per_model_version": {"type": "array", "items": _STATS}, "total": _STATS},
        "description": "per model version of each item's latest save: suggestions accepted, edited, rejected, "
                       "labels added by hand, and the time per item"}}}
_ITEM_DOC = {"type": "object", "properties": {
    "id": {"type": "integer"}, "file_name": {"type": "string"}, "width": {"type": "integer"},
    "height": {"type": "integer"}, "split": {"type": "string"}, "status": {"type": "string"},
    "revision": {"type": "integer"}, "labels": {"type": "array"}, "suggestions": {"type": ["array", "null"]},
    "suggestion_version": {"type": ["string", "null"]}, "confidence": {"type": ["number", "null"]},
    "lease": {"type": ["object", "null"], "description": "who holds the item, until when"},
    "image": {"type": "string", "description": "the image's URL path"}}}


def _project_name(request: Request) -> tuple[str, str]:
    return request.path_params["namespace"], request.path_params["name"]


def _writable(session: Session, namespace: str, name: str) -> AnnotationProject:
    """The project for a write: the role check (in the service) decides what a stranger is told."""
    project = projects.find_project(session, namespace, name)
    if project is None:
        raise HubError("project_not_found", f"no project {namespace}/{name}")
    return project


# --- projects -------------------------------------------------------------------------------


@endpoint("GET", "/api/v1/projects", "Annotation projects you may see", "projects", access=OPTIONAL,
          query=ProjectList,
          response={"type": "object", "properties": {
              "total": {"type": "integer"}, "page": {"type": "integer"}, "per_page": {"type": "integer"},
              "projects": {"type": "array", "items": {"type": "object", "properties": _SETTINGS}}}})
async def list_projects(request: Request) -> Response:
    who = await principal(request)
    q: ProjectList = read_query(request)

    def work(session: Session) -> dict[str, Any]:
        total, rows = projects.list_projects(session, who, q.namespace, page=q.page, per_page=q.per_page)
        counts = projects.status_counts(session, [p.id for p in rows if p.id is not None])
        docs = [{**projects.settings_document(p), "counts": counts[p.id or 0]} for p in rows]
        return {"total": total, "page": q.page, "per_page": q.per_page, "projects": docs}

    return json_response(await in_session(request, work))


@endpoint("POST", "/api/v1/projects", "Create an annotation project", "projects",
          access=Access("annotate", role="member of the namespace (its user, or a member of its organisation)"),
          errors=("namespace_not_found", "invalid_project", "project_exists"), body=NewProject, status=201,
          response=_PROJECT_DOC)
async def create_project(request: Request) -> Response:
    who = await principal(request, required=True)
    body: NewProject = await read_body(request)

    def work(session: Session) -> dict[str, Any]:
        project = projects.create_project(
            session, who, namespace=body.namespace, name=body.name, task=body.task, classes=body.classes,
            description=body.description, private=body.private, queue_order=body.queue_order,
            suggest=body.suggest.model_dump() if body.suggest else None, dataset_package=body.dataset_package)
        return projects.project_document(session, who, project)

    doc = await in_session(request, work, write=True)
    return json_response(doc, status=201, headers={"location": f"/api/v1/projects/{doc['full_name']}"})


@endpoint("GET", "/api/v1/projects/{namespace}/{name}",
          "A project: settings, your role, progress, snapshots and statistics per model version", "projects",
          access=OPTIONAL, errors=_PROJECT_ERRORS, params=_PROJECT, response=_PROJECT_DOC)
async def get_project(request: Request) -> Response:
    who = await principal(request)
    namespace, name = _project_name(request)

    def work(session: Session) -> dict[str, Any]:
        return projects.project_document(session, who, projects.get_project(session, who, namespace, name))

    return json_response(await in_session(request, work))


@endpoint("PATCH", "/api/v1/projects/{namespace}/{name}", "Change a project's settings", "projects",
          access=Access("annotate", role="project owner"), errors=(*_PROJECT_ERRORS, "invalid_project"),
          params=_PROJECT, body=ProjectSettings, response=_PROJECT_DOC)
async def patch_project(request: Request) -> Response:
    who = await principal(request, required=True)
    body: ProjectSettings = await read_body(request)
    changes = {key: getattr(body, key) for key in body.model_fields_set}
    nulls = [{"field": key, "message": "cannot be null"} for key, value in changes.items()
             if value is None and key != "suggest"]
    if nulls:
        raise HubError("invalid_project", f"'{nulls[0]['field']}' cannot be null", details={"problems": nulls})
    if "suggest" in changes and body.suggest is not None:
        changes["suggest"] = body.suggest.model_dump()
    namespace, name = _project_name(request)

    def work(session: Session) -> dict[str, Any]:
        project = _writable(session, namespace, name)
        projects.update_project(session, who, project, changes)
        return projects.project_document(session, who, project)

    return json_response(await in_session(request, work, write=True))


@endpoint("PUT", "/api/v1/projects/{namespace}/{name}/members/{user}",
          "Give a user a role in the project: owner, annotator or reviewer", "projects",
          access=Access("annotate", role="project owner"), errors=(*_PROJECT_ERRORS, "user_not_found"),
          params=(*_PROJECT, ("user", "path", "user name")), body=Member, status=204)
async def put_project_member(request: Request) -> Response:
    body: Member = await read_body(request)
    return await _member(request, body.role)


@endpoint("DELETE", "/api/v1/projects/{namespace}/{name}/members/{user}",
          "Take a user's role in the project away", "projects",
          access=Access("annotate", role="project owner"), errors=(*_PROJECT_ERRORS, "user_not_found"),
          params=(*_PROJECT, ("user", "path", "user name")), status=204)
async def delete_project_member(request: Request) -> Response:
    return await _member(request, None)


async def _member(request: Request, role: ProjectRole | None) -> Response:
    who = await principal(request, required=True)
    namespace, name = _project_name(request)
    user = request.path_params["user"]

    def work(session: Session) -> None:
        projects.set_member(session, who, _writable(session, namespace, name), user, role)

    await in_session(request, work, write=True)
    return Response(status_code=204)


# --- items ----------------------------------------------------------------------------------


@endpoint("GET", "/api/v1/projects/{namespace}/{name}/items", "The project's items, by id", "projects",
          access=OPTIONAL, errors=_PROJECT_ERRORS, params=_PROJECT, query=ItemList,
          response={"type": "object", "properties": {
              "total": {"type": "integer"}, "page": {"type": "integer"}, "per_page": {"type": "integer"},
              "items": {"type": "array", "items": _ITEM_DOC}}})
async def list_items(request: Request) -> Response:
    who = await principal(request)
    q: ItemList = read_query(request)
    namespace, name = _project_name(request)

    def work(session: Session) -> dict[str, Any]:
        project = projects.get_project(session, who, namespace, name)
        total, items = queue.list_items(session, project, q.status, page=q.page, per_page=q.per_page)
        return {"total": total, "page": q.page, "per_page": q.per_page, "items": items}

    return json_response(await in_session(request, work))


@endpoint("GET", "/api/v1/projects/{namespace}/{name}/items/{item_id:id}",
          "One item: its labels, suggestions, revision and lease", "projects", access=OPTIONAL,
          errors=_ITEM_ERRORS, params=_ITEM, response=_ITEM_DOC)
async def get_item(request: Request) -> Response:
    who = await principal(request)
    namespace, name = _project_name(request)
    item_id = request.path_params["item_id"]

    def work(session: Session) -> dict[str, Any]:
        project = projects.get_project(session, who, namespace, name)
        return queue.item_document(projects.get_item(session, project, item_id), project)

    return json_response(await in_session(request, work))


@endpoint("GET", "/api/v1/projects/{namespace}/{name}/items/{item_id:id}/image", "The item's image", "projects",
          access=OPTIONAL, errors=(*_ITEM_ERRORS, "blob_not_found", "storage_unavailable", "invalid_range"),
          params=_ITEM, response={"type": "string", "format": "binary"})
async def get_image(request: Request) -> Response:
    who = await principal(request)
    namespace, name = _project_name(request)
    item_id = request.path_params["item_id"]

    def work(session: Session) -> tuple[str, int, str, bool]:
        project = projects.get_project(session, who, namespace, name)
        item = projects.get_item(session, project, item_id)
        blob = session.get(Blob, item.sha256)
        if blob is None:
            raise HubError("blob_not_found", "the image is recorded but missing")
        return item.sha256, blob.size, item.file_name, project.private

    digest, size, file_name, private = await in_session(request, work)
    response = await blob_response(request, ctx(request), digest, size, filename=file_name)
    lower = file_name.lower()
    if "location" not in response.headers:
        response.headers["content-type"] = "image/png" if lower.endswith(".png") else "image/jpeg"
        response.headers["content-disposition"] = response.headers["content-disposition"].replace(
            "attachment", "inline", 1)
    if private:  # the bytes never change, but only the caller may keep them
        response.headers["cache-control"] = "private, max-age=3600"
    return response


@endpoint("GET", "/api/v1/projects/{namespace}/{name}/items/{item_id:id}/history",
          "Every change to the item: who, when, which revision, the labels and what came from suggestions",
          "projects", access=OPTIONAL, errors=_ITEM_ERRORS, params=_ITEM,
          response={"type": "object", "properties": {"events": {"type": "array", "items": {"type": "object"}}}})
async def get_history(request: Request) -> Response:
    who = await principal(request)
    namespace, name = _project_name(request)
    item_id = request.path_params["item_id"]

    def work(session: Session) -> dict[str, Any]:
        project = projects.get_project(session, who, namespace, name)
        return {"events": queue.history(session, project, projects.get_item(session, project, item_id))}

    return json_response(await in_session(request, work))


@endpoint("PUT", "/api/v1/projects/{namespace}/{name}/items/{item_id:id}/labels",
          "Save labels on an item, from the revision you started at (a stale one is refused with the current item)",
          "projects", access=Access("annotate", role="project annotator or owner"),
          errors=(*_ITEM_ERRORS, "stale_revision", "item_leased", "invalid_labels"), params=_ITEM, body=Labels,
          response=_ITEM_DOC)
async def put_labels(request: Request) -> Response:
    who = await principal(request, required=True)
    body: Labels = await read_body(request)
    namespace, name = _project_name(request)
    item_id = request.path_params["item_id"]

    def work(session: Session) -> dict[str, Any]:
        project = _writable(session, namespace, name)
        item = queue.save_labels(session, who, project, item_id, body.revision, body.labels, body.duration_ms)
        return queue.item_document(item, project)

    return json_response(await in_session(request, work, write=True))


@endpoint("DELETE", "/api/v1/projects/{namespace}/{name}/items/{item_id:id}/lease",
          "Give a leased item back to the queue", "projects",
          access=Access("annotate", role="lease's holder or a project owner"), errors=_ITEM_ERRORS, params=_ITEM,
          status=204)
async def delete_lease(request: Request) -> Response:
    who = await principal(request, required=True)
    namespace, name = _project_name(request)
    item_id = request.path_params["item_id"]

    def work(session: Session) -> None:
        queue.release(session, who, _writable(session, namespace, name), item_id)

    await in_session(request, work, write=True)
    return Response(status_code=204)


@endpoint("POST", "/api/v1/projects/{namespace}/{name}/items/{item_id:id}/review",
          "Approve a saved item, or send it back to the queue", "projects",
          access=Access("annotate", role="project reviewer or owner"),
          errors=(*_ITEM_ERRORS, "stale_revision"), params=_ITEM, body=Review, response=_ITEM_DOC)
async def post_review(request: Request) -> Response:
    who = await principal(request, required=True)
    body: Review = await read_body(request)
    namespace, name = _project_name(request)
    item_id = request.path_params["item_id"]

    def work(session: Session) -> dict[str, Any]:
        project = _writable(session, namespace, name)
        return queue.item_document(queue.review(session, who, project, item_id, body.revision, body.verdict), project)

    return json_response(await in_session(request, work, write=True))


@endpoint("POST", "/api/v1/projects/{namespace}/{name}/queue",
          "Lease the next item to label for ten minutes (one you hold already comes first); null when none is left",
          "projects", access=Access("annotate", role="project annotator or owner"), errors=_PROJECT_ERRORS,
          params=_PROJECT,
          response={"type": "object", "properties": {"item": {"anyOf": [_ITEM_DOC, {"type": "null"}]}}})
async def post_queue(request: Request) -> Response:
    who = await principal(request, required=True)
    namespace, name = _project_name(request)

    def work(session: Session) -> dict[str, Any]:
        project = _writable(session, namespace, name)
        item = queue.next_item(session, who, project)
        return {"item": None if item is None else queue.item_document(item, project, holder=_holder(who))}

    return json_response(await in_session(request, work, write=True))


def _holder(who: Principal) -> str | None:
    return who.user.name if who.user is not None else None

"""Annotation projects (docs/annotation.md): what touches blobs and workers.

Adding images as items, uploaded or taken from a dataset version (owners), the suggestion workers' claims and posts (annotators and
owners), and snapshots that publish the accepted labels as a dataset version (owners). The
role is checked by :mod:`hub.services.annotation` once the project is loaded. A snapshot is a
publish: it needs a token that may publish to the dataset package (declared ``publish:any``,
the exact package checked by the publish rules), where the others need ``annotate``.

Adding images and snapshots work in steps, so no session is held while the store is read or
written: the checks (the caller's role, the blobs they may reference, the files a snapshot
will hold), then the store (image headers; a snapshot's new files), then the write, which
checks the role again.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from hub.api import bodies
from hub.api._http import Registry, json_response, principal, read_body
from hub.api.access import Access
from hub.context import ctx, in_session, run_sync
from hub.errors import ErrorCode
from hub.models import AnnotationItem, AnnotationProject
from hub.services.access import require_project_role
from hub.services.annotation import from_dataset, images, snapshots, suggestions
from hub.services.annotation.labels import MAX_LABELS
from hub.services.annotation.projects import get_project

endpoint = Registry()

_PROJECT = (("namespace", "path", "namespace (user or organisation)"), ("name", "path", "project name"))
_ROLE_ERRORS: tuple[ErrorCode, ...] = ("project_not_found", "forbidden")
#: Suggestions for 256 items of up to 1000 boxes each are larger than the usual 1 MiB body.
_SUGGESTIONS_BODY_LIMIT = 16 << 20

# --- bodies -----------------------------------------------------------------------------------

FileName = Annotated[str, Field(
    min_length=5, max_length=128, pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*\.(?:[pP][nN][gG]|[jJ][pP][eE]?[gG])$",
    description="a flat, portable name (letters, digits, '.', '_', '-') ending in .png, .jpg or .jpeg; "
                "images/<split>/<file_name> in a snapshot")]
Split = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="the dataset split")]
Worker = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
                              description="the worker's name, shown with its leases")]
SemVer = Annotated[str, Field(pattern=bodies.SEMVER_PATTERN, max_length=128, description="a SemVer 2.0 version")]
ItemId = Annotated[int, Field(ge=0, le=2**31 - 1, description="an item's id"), BeforeValidator(bodies.integral)]


class NewItem(bodies.Body):
    sha256: bodies.Digest
    file_name: FileName
    split: Split = "train"


class NewItems(bodies.Body):
    """Images to add: blobs the caller uploaded (or may reference), each with its name."""

    codes: ClassVar[dict[str, ErrorCode]] = {"items": "invalid_files", "items.*": "invalid_files"}
    items: Annotated[list[NewItem], Field(min_length=1, max_length=images.MAX_ITEMS_PER_CALL)]


class FromDataset(bodies.Body):
    """A dataset version whose images (and, if asked, labels) become items."""

    codes: ClassVar[dict[str, ErrorCode]] = {"package": "invalid_package_name", "version": "invalid_version"}
    package: Annotated[str, Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*/[a-z0-9]+(?:[-_.][a-z0-9]+)*$", max_length=104,
                                  description="the dataset package, namespace/name")]
    version: SemVer
    splits: Annotated[list[Split], Field(min_length=1, max_length=100, description="the splits to take; every one "
                                                                                   "unless given")] | None = None
    labels: bool = Field(default=False, description="the dataset's labels become the new items' labels, "
                                                    "which are then done")


class Claim(bodies.Body):
    """A worker asks for items to suggest labels for."""

    worker: Worker
    limit: Annotated[int, Field(ge=1, le=suggestions.MAX_BATCH, description="most items to take"),
                     BeforeValidator(bodies.integral)] = 16
    lease_seconds: Annotated[int, Field(ge=10, le=3600, description="how long the items stay the worker's"),
                             BeforeValidator(bodies.integral)] = 600


class SuggestionResult(bodies.Body):
    item: ItemId
    suggestions: Annotated[list[Any], Field(max_length=MAX_LABELS, description=(
        'detection: [{"class", "bbox": [x, y, w, h], "score"}]; classification: [{"class", "score"}]'))]


class PostSuggestions(bodies.Body):
    """A worker's suggestions, with the model version that made them."""

    worker: Worker
    model_version: SemVer
    results: Annotated[list[SuggestionResult], Field(min_length=1, max_length=suggestions.MAX_BATCH)]


class NewSnapshot(bodies.Body):
    """Which version of which dataset package a snapshot publishes (both optional)."""

    codes: ClassVar[dict[str, ErrorCode]] = {"version": "invalid_version", "package": "invalid_package_name"}
    version: SemVer | None = Field(default=None, description="the next minor version of the latest one unless given "
                                                             "(1.0.0 first)")
    package: Annotated[str, Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*/[a-z0-9]+(?:[-_.][a-z0-9]+)*$", max_length=104,
                                  description="the dataset package, namespace/name; the project's unless given")] | None = None


# --- endpoints --------------------------------------------------------------------------------


_ADDED = {"type": "object", "properties": {
    "added": {"type": "integer"}, "existing": {"type": "integer", "description": "named already, same image"},
    "items": {"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "integer"}, "file_name": {"type": "string"}}}}}}


def _names(request: Request) -> tuple[str, str]:
    return request.path_params["namespace"], request.path_params["name"]


def _project_path(project: AnnotationProject) -> str:
    return f"/api/v1/projects/{project.full_name}"


@endpoint("POST", "/api/v1/projects/{namespace}/{name}/items", "Add images (uploaded blobs) as items", "projects",
          access=Access("annotate", role="project's owner"), params=_PROJECT, body=NewItems, status=201,
          errors=(*_ROLE_ERRORS, "invalid_files", "missing_blobs", "invalid_image", "storage_unavailable"),
          response=_ADDED)
async def add_items(request: Request) -> Response:
    who = await principal(request, required=True)
    body: NewItems = await read_body(request)
    namespace, name = _names(request)
    hub = ctx(request)
    asked = [images.NewItem(i.sha256, i.file_name, i.split) for i in body.items]

    def check(session: Session) -> tuple[list[images.NewItem], dict[str, int]]:
        project = get_project(session, who, namespace, name)
        require_project_role(session, who, project, "manage")  # before the names: a stranger learns nothing
        wanted = images.check_names(asked)
        return wanted, images.check_blobs(session, who, project, wanted)

    wanted, sizes = await in_session(request, check, write=True)  # write: the blobs are marked wanted (gc)
    headers = await run_sync(images.read_headers, hub.store, wanted, sizes)

    def add(session: Session) -> images.Added:
        return images.add_items(session, who, get_project(session, who, namespace, name), wanted, headers)

    added = await in_session(request, add, write=True)
    return json_response({"added": added.added, "existing": added.existing,
                          "items": [{"id": i, "file_name": f} for i, f in added.items]}, status=201)


@endpoint("POST", "/api/v1/projects/{namespace}/{name}/items/from-dataset",
          "Take a dataset version's images as items (they reference its blobs), with its labels if asked", "projects",
          access=Access("annotate", role="project's owner"), params=_PROJECT, body=FromDataset, status=201,
          errors=(*_ROLE_ERRORS, "package_not_found", "version_not_found", "invalid_package_name", "invalid_version",
                  "invalid_project", "invalid_field", "invalid_labels", "invalid_files", "missing_blobs",
                  "invalid_image", "storage_unavailable"),
          response=_ADDED)
async def add_items_from_dataset(request: Request) -> Response:
    who = await principal(request, required=True)
    body: FromDataset = await read_body(request)
    namespace, name = _names(request)
    hub = ctx(request)

    def check(session: Session) -> from_dataset.Source:
        project = get_project(session, who, namespace, name)
        return from_dataset.source(session, who, project, body.package, body.version, body.splits)

    src = await in_session(request, check, write=True)  # write: the blobs are marked wanted (gc)
    taken = await run_sync(from_dataset.read, hub.store, src, labels=body.labels)

    def add(session: Session) -> images.Added:
        return images.add_items(session, who, get_project(session, who, namespace, name), taken.items, taken.headers,
                                labels=taken.labels, note=src.note)

    added = await in_session(request, add, write=True)
    return json_response({"added": added.added, "existing": added.existing,
                          "items": [{"id": i, "file_name": f} for i, f in added.items]}, status=201)


_CLAIMED = {"type": "object", "properties": {
    "id": {"type": "integer"}, "sha256": {"type": "string"}, "width": {"type": "integer"},
    "height": {"type": "integer"}, "file_name": {"type": "string"},
    "image": {"type": "string", "description": "the image's URL path"}}}
_MODEL = {"type": "object", "properties": {
    "package": {"type": "string"}, "version": {"type": "string"}, "solver": {"type": ["string", "null"]}}}


def _claimed(project: AnnotationProject, item: AnnotationItem) -> dict[str, Any]:
    return {"id": item.id, "sha256": item.sha256, "width": item.width, "height": item.height,
            "file_name": item.file_name, "image": f"{_project_path(project)}/items/{item.id}/image"}


@endpoint("POST", "/api/v1/projects/{namespace}/{name}/suggestions/claim",
          "A suggestion worker takes items to suggest labels for, with a lease, and learns the model to run",
          "projects", access=Access("annotate", role="project's annotator or owner"), params=_PROJECT, body=Claim,
          errors=(*_ROLE_ERRORS, "no_suggestion_model"),
          response={"type": "object", "properties": {
              "model": _MODEL, "lease_until": {"type": "string", "format": "date-time"},
              "items": {"type": "array", "items": _CLAIMED, "description": "empty when nothing is left"}}})
async def claim(request: Request) -> Response:
    who = await principal(request, required=True)
    body: Claim = await read_body(request)
    namespace, name = _names(request)

    def work(session: Session) -> dict[str, Any]:
        project = get_project(session, who, namespace, name)
        model, until, items = suggestions.claim(session, who, project, worker=body.worker, limit=body.limit,
                                                lease_seconds=body.lease_seconds)
        return {"model": model.document(), "lease_until": until.isoformat(),
                "items": [_claimed(project, i) for i in items]}

    return json_response(await in_session(request, work, write=True))


@endpoint("POST", "/api/v1/projects/{namespace}/{name}/suggestions",
          "A suggestion worker posts suggestions for the items it claimed", "projects",
          access=Access("annotate", role="project's annotator or owner"), params=_PROJECT, body=PostSuggestions,
          errors=(*_ROLE_ERRORS, "invalid_labels"),
          response={"type": "object", "properties": {
              "stored": {"type": "integer"},
              "skipped": {"type": "integer", "description": "saved, taken by an annotator or another worker, "
                                                            "not the project's, or made by another model version"}}})
async def post_suggestions(request: Request) -> Response:
    who = await principal(request, required=True)
    body: PostSuggestions = await read_body(request, _SUGGESTIONS_BODY_LIMIT)
    namespace, name = _names(request)
    results = [suggestions.Result(r.item, r.suggestions) for r in body.results]

    def work(session: Session) -> tuple[int, int]:
        project = get_project(session, who, namespace, name)
        return suggestions.post(session, who, project, worker=body.worker, model_version=body.model_version,
                                results=results)

    stored, skipped = await in_session(request, work, write=True)
    return json_response({"stored": stored, "skipped": skipped})


@endpoint("POST", "/api/v1/projects/{namespace}/{name}/snapshots",
          "Publish the accepted labels (done and approved items) as a version of a dataset package; a publish, so "
          "the token needs a publish scope covering the package (the project's namespace unless the body names "
          "another)", "projects",
          access=Access("publish:any", target="body:package", role="project's owner"),
          params=_PROJECT, body=NewSnapshot, status=201,
          errors=(*_ROLE_ERRORS, "nothing_to_snapshot", "invalid_labels", "namespace_not_found", "invalid_package_name",
                  "invalid_version", "invalid_manifest", "invalid_path", "invalid_files", "missing_blobs",
                  "manifest_mismatch", "version_exists", "version_deleted", "similar_name_exists",
                  "name_shadows_upstream", "storage_unavailable"),
          response={"type": "object", "properties": {
              "package": {"type": "string"}, "version": {"type": "string"},
              "items": {"type": "integer", "description": "images in the version"},
              "labels": {"type": "integer", "description": "boxes (detection) or labelled images (classification)"}}})
async def snapshot(request: Request) -> Response:
    who = await principal(request, required=True)
    body: NewSnapshot = await read_body(request)
    namespace, name = _names(request)
    hub = ctx(request)

    def prepare(session: Session) -> snapshots.Plan:
        return snapshots.plan(session, who, get_project(session, who, namespace, name), version=body.version,
                              package=body.package)

    plan = await in_session(request, prepare)
    await run_sync(snapshots.store, hub.uploads, who, plan)

    def publish(session: Session) -> dict[str, Any]:
        row = snapshots.publish(session, hub.settings, who, get_project(session, who, namespace, name), plan)
        return {"package": row.package, "version": row.version, "items": row.items, "labels": row.labels}

    doc = await in_session(request, publish, write=True)
    return json_response(doc, status=201, headers={"location": f"/api/v1/packages/{doc['package']}/versions/{doc['version']}"})

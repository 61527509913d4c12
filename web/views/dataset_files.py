"""Datasets in and out through the website (docs/datasets.md, "On the website").

- **Export**: ``/NS/NAME/v/VERSION/export/FORMAT.zip`` writes a dataset version as a zip in one of
  the formats that fit its task. The version's files are taken from the blob store into a
  temporary directory (linked where the store has local files, else downloaded and checked
  against their digests), converted with the client's exporter (which checks the package as
  ``cvflow dataset export`` does), and zipped while the response streams: nothing holds the
  whole dataset in memory. Past :data:`MAX_EXPORT_BYTES` the page says to pull and export instead.
- **Import**: ``/publish/dataset`` takes a zip of a COCO, VOC, YOLO or ImageFolder folder from a
  signed-in user, unpacks it within limits (:func:`web.archives.unpack`: no absolute paths, no
  ``..``, no links, bounded entries, size and compression ratio, all checked on the zip's
  directory before a byte is written), converts it with the client's importer, stores the files
  as the user's uploads and publishes them with :func:`hub.services.packages.publish`, so every
  rule of publishing applies.

The request is synchronous; the limits keep it to what a web request can carry. The page's
script sends the CSRF token in a header, since a zip is larger than the forms the CSRF check reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlmodel import Session, col, select
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from cvflow.datasets import FORMATS, export_dataset, import_dataset
from cvflow.errors import DatasetError, Problem, ValidationError
from cvflow.manifest import MANIFEST_FILENAME
from cvflow.manifest.dataset import ANNOTATIONS_DIR, IMAGES_DIR
from cvflow.package import scan_package_files
from hub.context import ctx, in_session, run_sync
from hub.errors import HubError
from hub.models import File, Namespace, Organisation, OrgMember
from hub.services import access, packages
from hub.services.accounts import Principal
from hub.services.blobs import user_holder
from hub.storage import BlobNotFound, StorageError
from web import archives
from web.archives import dataset_root, detect_format, unpack, zip_stream
from web.session import web_principal
from web.templating import render

PAGE = "/publish/dataset"
#: Largest dataset (its images and annotation files) exported on the website.
MAX_EXPORT_BYTES = 2 << 30
#: Largest zip taken by the import form (what it unpacks to is bounded in web.archives).
MAX_ARCHIVE_BYTES = 2 << 30
_FIELD_LIMIT = 2000
_BLOCK = 1 << 20


# --- export ---------------------------------------------------------------------------------


#: Exports and imports running at once in one hub process; more wait for a moment (503, Retry-After),
#: since each may take a few GiB of temporary disk.
MAX_CONCURRENT = 4
_EXPORTS = threading.BoundedSemaphore(MAX_CONCURRENT)
_IMPORTS = threading.BoundedSemaphore(MAX_CONCURRENT)


class _Done:
    """Removes a temporary directory and releases its slot, once, whoever calls it first."""

    def __init__(self, tmp: Path, slot: threading.BoundedSemaphore) -> None:
        self._tmp, self._slot, self._lock, self._done = tmp, slot, threading.Lock(), False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._slot.release()


def _busy(request: Request) -> Response:
    response = _page(request, 503, "Busy", "the hub is converting other datasets just now; try again in a minute")
    response.headers["retry-after"] = "60"
    return response


@dataclass(frozen=True)
class _Version:
    full_name: str
    version: str
    manifest: dict[str, Any]
    files: list[File]
    private: bool


def _page(request: Request, status: int, title: str, message: str) -> Response:
    return render(request, "error.html", status=status, title=title, message=message)


def _problem_text(exc: ValidationError, tmp: Path, limit: int = 10) -> str:
    """The error and its first problems as one line of text, the temporary directory left out."""
    lines = [exc.message, *(str(p) for p in exc.problems[:limit] if p.message != exc.message)]
    if len(exc.problems) > limit:
        lines.append(f"and {len(exc.problems) - limit} more")
    return "; ".join(lines).replace(str(tmp), "the version")


async def export(request: Request) -> Response:
    """The version as a zip in the format the path names; a page saying why when it cannot be."""
    who = await web_principal(request)
    p = request.path_params
    hub = ctx(request)

    def work(session: Session) -> _Version:
        package = packages.get_package(session, who, p["namespace"], p["name"])
        row = packages.get_version(session, package, p["version"])
        files = list(session.exec(select(File).where(File.version_id == row.id).order_by(File.path)))
        return _Version(package.full_name, row.version, json.loads(row.manifest), files, package.private)

    try:
        v = await in_session(request, work)
    except HubError as exc:
        if exc.status == 404:
            return _page(request, 404, "Not found", exc.message)
        raise
    task = str((v.manifest.get("dataset") or {}).get("task") or "")
    fitting = [f.name for f in FORMATS.values() if f.task == task]
    fmt = FORMATS.get(p["fmt"])
    if v.manifest.get("kind") != "dataset":
        return _page(request, 404, "Not found", f"{v.full_name} is a model, not a dataset: there is nothing to export")
    if fmt is None or fmt.task != task:
        return _page(request, 404, "Not found", f"{v.full_name}@{v.version} cannot be exported as {p['fmt']!r}: "
                     f"it is a {task} dataset, which exports as {', '.join(fitting) or 'nothing'}")
    wanted = [f for f in v.files if f.path == MANIFEST_FILENAME or f.path.startswith((f"{IMAGES_DIR}/",
                                                                                        f"{ANNOTATIONS_DIR}/"))]
    total = sum(f.size for f in wanted)
    if total > MAX_EXPORT_BYTES:
        ref = f"{v.full_name}@{v.version}"
        return _page(request, 413, "Too large to export here",
                     f"{ref} holds {total / (1 << 30):.1f} GiB, more than the {MAX_EXPORT_BYTES >> 30} GiB the website "
                     f"exports. Export it on your machine: cvflow dataset export {fmt.name} "
                     f"\"$(cvflow pull -q {ref})\" ./{ref.split('/')[1].split('@')[0]}-{fmt.name}")
    if not _EXPORTS.acquire(blocking=False):
        return _busy(request)
    tmp = Path(tempfile.mkdtemp(prefix="cvflow-export-"))
    done = _Done(tmp, _EXPORTS)
    try:
        await run_sync(_build_export, hub.store, wanted, fmt.name, tmp)
    except BaseException as exc:
        await run_sync(done)
        if isinstance(exc, (BlobNotFound, StorageError)):
            return _page(request, 503, "Cannot export now", "a file of this version cannot be read from storage now")
        if isinstance(exc, ValidationError):  # the hub checks a dataset's file list at publish, not its labels
            return _page(request, 422, "Cannot export this version", _problem_text(exc, tmp / "package"))
        raise
    stem = f"{v.full_name.split('/')[1]}-{v.version}-{fmt.name}"
    headers = {"content-disposition": f'attachment; filename="{stem}.zip"',
               "cache-control": "private, no-store" if v.private else "public, max-age=3600"}
    return StreamingResponse(zip_stream(tmp / "out", stem, on_close=done), media_type="application/zip",
                             headers=headers)


def _build_export(store: Any, files: list[File], fmt: str, tmp: Path) -> None:
    """Write the version exported as ``fmt`` to ``tmp/out`` (by way of ``tmp/package``)."""
    package = tmp / "package"
    for f in files:
        target = package / f.path  # paths were checked at publish: relative, no '..'
        target.parent.mkdir(parents=True, exist_ok=True)
        local = store.local_path(f.sha256)
        if local is not None:  # the store's own file, verified when it was stored
            os.symlink(local, target)
        else:
            _download(store, f, target)
    export_dataset(fmt, package, tmp / "out")
    shutil.rmtree(package)


def _download(store: Any, file: File, target: Path) -> None:
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for chunk in store.open_range(file.sha256):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != file.sha256:
        raise StorageError(f"blob {file.sha256} does not match its digest")


# --- the import form ------------------------------------------------------------------------

FIELDS = ("format", "namespace", "name", "version", "description")


@dataclass
class _Refusal:
    """What the form shows when an import is refused: a code, a message, each problem."""

    code: str
    message: str
    status: int
    problems: list[Problem] = dataclasses.field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message,
                          "details": {"problems": [dataclasses.asdict(p) for p in self.problems]}}}


def _from_hub(exc: HubError) -> _Refusal:
    raw = exc.details.get("problems") if isinstance(exc.details, dict) else None
    problems = [Problem(str(p.get("code", "")), str(p.get("field", "")), str(p.get("message", "")))
                for p in raw or [] if isinstance(p, dict)]
    # A form's content is never a 404 page: an unknown namespace is something typed.
    return _Refusal(exc.code, exc.message, 400 if exc.status == 404 else exc.status, problems)


def _from_validation(exc: ValidationError, tmp: Path) -> _Refusal:
    def clean(text: str) -> str:
        return text.replace(str(tmp / "src"), "the archive").replace(str(tmp), "the archive")

    return _Refusal(exc.code, clean(exc.message), 422,
                    [Problem(p.code, clean(p.field), clean(p.message)) for p in exc.problems])


def _namespaces(session: Session, who: Principal) -> list[str]:
    """Where the user may publish a new dataset from the form: their namespace and their organisations'."""
    user = who.require_user()
    own = session.get(Namespace, user.namespace_id)
    orgs = session.exec(select(Organisation.name).join(OrgMember, col(OrgMember.org_id) == Organisation.id)
                        .where(OrgMember.user_id == user.id).order_by(Organisation.name))
    return [*([own.name] if own is not None else []), *orgs]


def _render(request: Request, namespaces: list[str], values: dict[str, Any], refusal: _Refusal | None = None,
            ) -> Response:
    return render(request, "dataset_import.html", status=refusal.status if refusal else 200, values=values,
                  namespaces=namespaces, error=refusal, formats=list(FORMATS),
                  max_unpacked_gib=archives.MAX_UNPACKED_BYTES >> 30, max_entries=archives.MAX_ENTRIES)


async def import_page(request: Request) -> Response:
    who = await web_principal(request)
    if who.user is None:
        return RedirectResponse(f"/login?next={PAGE}", status_code=303)
    namespaces = await in_session(request, _namespaces, who)
    return _render(request, namespaces, {"format": "detect", "namespace": who.user.name, "version": "1.0.0"})


async def import_archive(request: Request) -> Response:
    """The form's zip, converted and published as the signed-in user; the new version's page after.

    The CSRF token was checked before this view runs (web.security.CsrfMiddleware).
    """
    who = await web_principal(request)
    wants_json = "application/json" in request.headers.get("accept", "")
    if who.user is None:
        if wants_json:
            return JSONResponse({"error": {"code": "unauthenticated", "message": "sign in to do this"}}, status_code=401)
        return RedirectResponse(f"/login?next={PAGE}", status_code=303)
    values: dict[str, Any] = {"format": "detect", "namespace": who.user.name, "version": "1.0.0"}
    if not _IMPORTS.acquire(blocking=False):
        result: str | _Refusal = _Refusal("busy", "the hub is converting other datasets just now; try again in a "
                                                  "minute", 503)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="cvflow-import-"))
        try:
            result = await _import(request, who, values, tmp)
        finally:
            await run_sync(_Done(tmp, _IMPORTS))
    if isinstance(result, _Refusal):
        if wants_json:
            return JSONResponse(result.body(), status_code=result.status)
        return _render(request, await in_session(request, _namespaces, who), values, result)
    if wants_json:
        return JSONResponse({"url": result})
    return RedirectResponse(result, status_code=303)


async def _import(request: Request, who: Principal, values: dict[str, Any], tmp: Path) -> str | _Refusal:
    """The new version's page, or why there is none; ``values`` gets what the form said."""
    hub = ctx(request)
    length = request.headers.get("content-length")
    if hub.settings.read_only:
        return _Refusal("read_only", "this hub is read-only (a mirror): publish on its upstream", 403)
    if length is not None and length.isdigit() and int(length) > MAX_ARCHIVE_BYTES + (1 << 20):
        return _Refusal("body_too_large", f"the zip may be at most {MAX_ARCHIVE_BYTES >> 30} GiB", 413)
    try:
        form = await _limited(request).form(max_files=1, max_fields=20)
    except HubError as exc:
        return _from_hub(exc)
    try:
        archive = _read_form(form, values)
        if isinstance(archive, _Refusal):
            return archive
        await in_session(request, _may_publish, who, values["namespace"], values["name"], values["version"])
        package = await run_sync(_convert, archive.file, values, tmp)
        holder = user_holder(who.require_user().id)
        files = await run_sync(_store, hub, package, holder)
        manifest_toml = (package / MANIFEST_FILENAME).read_text(encoding="utf-8")

        def publish(session: Session) -> str:
            version = packages.publish(session, hub.settings, who, values["namespace"], values["name"],
                                       manifest_toml=manifest_toml, files=files,
                                       private=True if values["private"] else None)
            return f"/{values['namespace']}/{values['name']}/v/{version.version}"

        return await in_session(request, publish, write=True)
    except HubError as exc:
        return _from_hub(exc)
    except ValidationError as exc:  # DatasetError, ManifestError, a name or version the manifest refuses
        return _from_validation(exc, tmp)
    finally:
        await form.close()


def _read_form(form: FormData, values: dict[str, Any]) -> UploadFile | _Refusal:
    for key in FIELDS:
        value = form.get(key)
        if isinstance(value, str) and value.strip():
            values[key] = value.strip()[:_FIELD_LIMIT]
    values["private"] = form.get("private") == "on"
    archive = form.get("archive")
    if not isinstance(archive, UploadFile) or not archive.filename:
        return _Refusal("bad_request", "choose a zip of a COCO, VOC, YOLO or ImageFolder folder", 400)
    if values["format"] not in ("detect", *FORMATS):
        return _Refusal("invalid_field", f"format must be detect or one of {', '.join(FORMATS)}", 422)
    for key in ("namespace", "name", "version"):
        if not values.get(key):
            return _Refusal("invalid_field", f"{key} is required", 422)
    return archive


def _may_publish(session: Session, who: Principal, namespace: str, name: str, version: str) -> None:
    """Before the zip is unpacked: refusals that cost nothing to find (publish checks them all again)."""
    package = packages.find_package(session, namespace, name)
    if package is None:
        if namespace not in _namespaces(session, who) and not who.is_admin:
            raise HubError("forbidden", f"you may publish in {who.require_user().name!r} and your organisations' "
                                        f"namespaces, not {namespace!r}")
        return
    if not access.may_publish(session, who, package):
        raise HubError("forbidden", f"only maintainers of {package.full_name} may publish its versions")
    try:
        packages.get_version(session, package, version)
    except HubError:
        return
    raise HubError("version_exists", f"{package.full_name}@{version} is already published; versions are immutable")


def _convert(fileobj: IO[bytes], values: dict[str, Any], tmp: Path) -> Path:
    """Unpack and import the zip; returns the dataset package's directory."""
    src = tmp / "src"
    src.mkdir()
    unpack(fileobj, src)
    root = dataset_root(src)
    fmt = detect_format(root) if values["format"] == "detect" else values["format"]
    package = tmp / "package"
    import_dataset(fmt, root, package, name=f"{values['namespace']}/{values['name']}", version=values["version"],
                   description=values.get("description") or None)
    shutil.rmtree(src)
    return package


def _store(hub: Any, package: Path, holder: str) -> list[dict[str, object]]:
    """Store the package's files as blobs granted to ``holder``: its uploads, as ``cvflow publish`` makes them."""
    entries, problems = scan_package_files(package)
    if problems:  # the importer writes plain files only
        raise DatasetError("the converted package cannot be published", problems)
    files: list[dict[str, object]] = []
    for entry in entries:
        with (package / entry.path).open("rb") as f:
            def pieces(f: IO[bytes] = f) -> Iterator[bytes]:
                while block := f.read(_BLOCK):
                    yield block

            digest, _ = hub.uploads.put_stream(pieces(), entry.size, grant_to=holder, sha256=entry.sha256)
        files.append({**dataclasses.asdict(entry), "sha256": digest})
    return files


def _limited(request: Request) -> Request:
    """The request, its body cut off with ``body_too_large`` past :data:`MAX_ARCHIVE_BYTES` (and
    the form's few fields): a body without a Content-Length is counted as it arrives."""
    received = 0
    receive = request.receive

    async def counted() -> Any:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > MAX_ARCHIVE_BYTES + (1 << 20):
            raise HubError("body_too_large", f"the zip may be at most {MAX_ARCHIVE_BYTES >> 30} GiB",
                           details={"limit": MAX_ARCHIVE_BYTES})
        return message

    return Request(request.scope, counted)

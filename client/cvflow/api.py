"""The hub's REST API as Python calls.

:class:`HubClient` takes an ``httpx.Client`` or transport, so the same code talks to a hub
over the network or to the Starlette app in-process. Every hub error becomes a typed
exception from :mod:`cvflow.errors` whose ``code`` is the hub's own.

The token is sent only to the hub's own origin (scheme, host and port of ``base_url``):
a redirect elsewhere, such as a presigned URL of the blob store, goes without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from cvflow import __version__
from cvflow.errors import (
    HubAuthError,
    HubConflictError,
    HubError,
    HubNotFoundError,
    HubUnavailableError,
    ValidationError,
)
from cvflow.fetch import Fetcher
from cvflow.safeparse import MAX_DOCUMENT_DEPTH, loads_json

MiB = 1 << 20
DEFAULT_CHUNK = 64 * MiB
Progress = Callable[[int], None]


def _error_for(response: httpx.Response) -> HubError:
    try:
        body = loads_json(response.content, max_depth=MAX_DOCUMENT_DEPTH)["error"]
        code, message, details = body["code"], body["message"], body.get("details") or {}
    except (ValueError, KeyError, TypeError):
        code, message, details = "", response.text[:200] or response.reason_phrase, {}
    status = response.status_code
    cls: type[HubError]
    if status == 404:
        cls = HubNotFoundError
    elif status in (401, 403):
        cls = HubAuthError
    elif status == 409:
        cls = HubConflictError
    elif status >= 500:
        cls = HubUnavailableError
    else:
        cls = HubError
    return cls(f"{message} [{code or status}]", code=code or None, status=status, details=details)


class HubClient:
    """A session with one hub. Methods raise :class:`~cvflow.errors.HubError` subclasses."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(httpx.URL(self.base_url))
        headers = {"user-agent": f"cvflow/{__version__}"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.http = client or httpx.Client(
            base_url=self.base_url, headers=headers, transport=transport,
            timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=True,
        )
        if client is not None:
            self.http.headers.update(headers)
        # Every request, each redirect included, passes this hook: the token never leaves the
        # hub's origin (a presigned store URL, an absolute URL, an http -> https hop).
        self.http.event_hooks["request"].append(self._token_only_to_the_hub)
        # Blob bodies skip httpx where the client talks to the network itself (see cvflow.fetch).
        self.fetcher: Fetcher | None = None if client is not None or transport is not None else Fetcher.for_hub(
            self.base_url, headers={"user-agent": headers["user-agent"]}, token_header=headers.get("authorization"),
            timeout=timeout)

    def _token_only_to_the_hub(self, request: httpx.Request) -> None:
        if _origin(request.url) != self._origin:
            request.headers.pop("authorization", None)

    def close(self) -> None:
        if self.fetcher is not None:
            self.fetcher.close()
        self.http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kw)
        except httpx.TimeoutException as exc:
            raise HubUnavailableError(f"the hub at {self.base_url} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise HubUnavailableError(f"cannot reach the hub at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            raise _error_for(response)
        return response

    def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        response = self.request(method, path, **kw)
        try:
            # Every hub answer is a JSON object (an error's too).
            document: dict[str, Any] = loads_json(response.content, max_depth=MAX_DOCUMENT_DEPTH)
            return document
        except (ValueError, UnicodeDecodeError) as exc:  # not JSON, or nested past any hub document
            raise HubUnavailableError(f"{self.base_url} did not answer like a CVFlow hub") from exc

    @contextlib.contextmanager
    def stream(self, path: str, *, headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """A streamed GET (follows redirects to presigned URLs). Raises like ``request``."""
        try:
            with self.http.stream("GET", path, headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_for(response)
                yield response
        except httpx.TimeoutException as exc:
            raise HubUnavailableError(f"the hub at {self.base_url} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise HubUnavailableError(f"download from {self.base_url} failed: {exc}") from exc

    # -- accounts

    def login(self, username: str, password: str, *, scopes: list[str] | None = None,
              name: str = "cvflow login") -> dict[str, Any]:
        body: dict[str, Any] = {"username": username, "password": password, "name": name}
        if scopes:
            body["scopes"] = scopes
        return self._json("POST", "/api/v1/auth/login", json=body)

    def whoami(self) -> dict[str, Any]:
        return self._json("GET", "/api/v1/whoami")

    # -- reading

    def search(self, query: str = "", *, task: str | None = None, tag: str | None = None,
               sort: str = "downloads", page: int = 1, per_page: int = 20) -> dict[str, Any]:
        params = {"q": query, "sort": sort, "page": page, "per_page": per_page}
        params.update({k: v for k, v in {"task": task, "tag": tag}.items() if v})
        return self._json("GET", "/api/v1/packages", params=params)

    def package(self, name: str) -> dict[str, Any]:
        """The package with all its versions. Raises HubNotFoundError."""
        return self._json("GET", f"/api/v1/packages/{name}")

    def version(self, name: str, version: str) -> dict[str, Any]:
        """One version: manifest, files (path, size, sha256, url), dependencies."""
        return self._json("GET", f"/api/v1/packages/{name}/versions/{quote(version)}")

    def index(self, names: Iterable[str]) -> dict[str, Any]:
        """Versions, yanks and dependencies of many packages in one request."""
        return self._json("POST", "/api/v1/index", json={"packages": sorted(set(names))})

    def file_path(self, name: str, version: str, path: str) -> str:
        return f"/api/v1/packages/{name}/versions/{quote(version)}/files/{quote(path)}"

    # -- publishing

    def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        wanted = sorted(set(digests))
        missing: set[str] = set()
        for i in range(0, len(wanted), 5000):
            body = self._json("POST", "/api/v1/blobs/check", json={"digests": wanted[i : i + 5000]})
            missing.update(body["missing"])
        return missing

    def start_upload(self, size: int) -> dict[str, Any]:
        return self._json("POST", "/api/v1/uploads", json={"size": size})

    def upload_batch(self, blobs: Sequence[tuple[str, bytes]]) -> bool:
        """Upload small blobs whole in one request (``POST /api/v1/blobs``): records of a line
        ``<sha256> <size>`` and the bytes. False when the hub has no such endpoint (an older
        hub: upload them one by one instead); raises the hub's error otherwise."""
        body = b"".join(part for digest, data in blobs for part in (f"{digest} {len(data)}\n".encode(), data))
        try:
            self.request("POST", "/api/v1/blobs", content=body,
                         headers={"content-type": "application/octet-stream"})
        except HubError as exc:
            if exc.status in (404, 405):  # no route: a hub from before batches
                return False
            raise
        return True

    def upload_offset(self, location: str) -> int:
        return int(self._json("GET", location)["offset"])

    def upload_chunk(self, location: str, offset: int, data: bytes) -> int:
        # httpcore re-slices (copies) what is left of a ``bytes`` body after each partial send,
        # which is quadratic for a large chunk; 1 MiB views with a declared length are not.
        body = self._json("PATCH", location, content=_views(data),
                          headers={"upload-offset": str(offset), "content-length": str(len(data))})
        return int(body["offset"])

    def finish_upload(self, location: str, digest: str) -> dict[str, Any]:
        return self._json("POST", location + "/finish", json={"sha256": digest})

    def upload_file(self, source: BinaryIO, size: int, digest: str, *, location: str | None = None,
                    chunk_size: int = DEFAULT_CHUNK, progress: Progress | None = None,
                    on_location: Callable[[str], None] | None = None) -> None:
        """Upload ``size`` bytes from ``source`` (seekable) as the blob ``digest``.

        With ``location`` of an earlier, interrupted upload it resumes from the offset the hub
        reports; ``on_location`` receives a new session's location so a caller can save it.
        ``progress`` receives the byte counts as they are sent (an exception it raises stops
        the upload; the hub keeps the chunks it acknowledged). Raises HubError (the file
        shrank, or the hub refused), HubUnavailableError.
        """
        offset = 0
        if location is not None:
            try:
                offset = self.upload_offset(location)
            except HubNotFoundError:
                location = None
        if location is None:
            location = str(self.start_upload(size)["location"])
            if on_location:
                on_location(location)
        if progress and offset:
            progress(offset)
        source.seek(offset)
        while offset < size:
            length = min(chunk_size, size - offset)
            # Each chunk streams from the file in 1 MiB reads: no chunk-sized buffer, one copy.
            body = self._json("PATCH", location, content=_file_chunk(source, offset, length, progress),
                              headers={"upload-offset": str(offset), "content-length": str(length)})
            new_offset = int(body["offset"])
            if new_offset != offset + length:
                raise HubError(f"the hub took the chunk at {offset} to offset {new_offset}, not {offset + length}")
            offset = new_offset
        self.finish_upload(location, digest)

    def publish(self, name: str, manifest_text: str, files: list[dict[str, Any]], *,
                private: bool | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"manifest": manifest_text, "files": files}
        if private is not None:
            body["private"] = private
        return self._json("POST", f"/api/v1/packages/{name}/versions", json=body)

    def register_repository(self, url: str, *, namespace: str | None = None, subdir: str | None = None,
                            branch_pattern: str | None = None, tag_pattern: str | None = None,
                            private: bool | None = None) -> dict[str, Any]:
        """Register a git repository with the hub's indexer; its SemVer tags become versions.

        Returns the repository document, with ``webhook_url`` and ``webhook_secret``. Raises
        HubConflictError (``repository_exists``), HubAuthError, HubError (``invalid_repository_url``).
        """
        body: dict[str, Any] = {"url": url}
        optional = {"namespace": namespace, "subdir": subdir, "branch_pattern": branch_pattern,
                    "tag_pattern": tag_pattern, "private": private}
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._json("POST", "/api/v1/repositories", json=body)

    def yank(self, name: str, version: str, reason: str, *, undo: bool = False) -> dict[str, Any]:
        action = "unyank" if undo else "yank"
        return self._json("POST", f"/api/v1/packages/{name}/versions/{quote(version)}/{action}",
                          json={"reason": reason})

    # -- annotation projects (docs/annotation.md); ``project`` is ``namespace/name``

    def create_project(self, namespace: str, name: str, *, task: str, classes: list[str],
                       suggest: dict[str, str] | None = None, private: bool | None = None,
                       queue_order: str | None = None, description: str | None = None,
                       dataset_package: str | None = None) -> dict[str, Any]:
        """Create a project; ``suggest`` is ``{"package", "range", "solver"}``. Raises HubConflictError
        (``project_exists``), HubAuthError, HubError (``invalid_project``, ``namespace_not_found``)."""
        body: dict[str, Any] = {"namespace": namespace, "name": name, "task": task, "classes": classes}
        optional = {"suggest": suggest, "private": private, "queue_order": queue_order,
                    "description": description, "dataset_package": dataset_package}
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._json("POST", "/api/v1/projects", json=body)

    def project(self, project: str) -> dict[str, Any]:
        """Settings, progress and statistics per model version. Raises HubNotFoundError (``project_not_found``)."""
        return self._json("GET", project_path(project))

    def project_items(self, project: str, *, status: str | None = None, page: int = 1,
                      per_page: int = 100) -> dict[str, Any]:
        params: dict[str, Any] = {"page": page, "per_page": per_page}
        if status:
            params["status"] = status
        return self._json("GET", project_path(project, "items"), params=params)

    def project_item(self, project: str, item_id: int) -> dict[str, Any]:
        return self._json("GET", project_path(project, f"items/{int(item_id)}"))

    def item_image(self, project: str, item_id: int) -> bytes:
        """The item's image bytes (as stored: PNG or JPEG)."""
        return self.request("GET", project_path(project, f"items/{int(item_id)}/image")).content

    def add_items(self, project: str, items: list[dict[str, str]]) -> dict[str, Any]:
        """Add uploaded blobs as items: ``[{"sha256", "file_name", "split"}]``. Raises HubError
        (``missing_blobs``, ``invalid_image``, ``invalid_files``)."""
        return self._json("POST", project_path(project, "items"), json={"items": items})

    def add_items_from_dataset(self, project: str, package: str, version: str, *, labels: bool = False,
                               splits: list[str] | None = None) -> dict[str, Any]:
        """Take a dataset version's images as items (``labels``: its labels too, the items then done):
        ``{"added", "existing", "items"}``. Raises HubNotFoundError (``package_not_found``,
        ``version_not_found``), HubError (``invalid_project``, ``invalid_labels``, ``invalid_files``)."""
        body: dict[str, Any] = {"package": package, "version": version, "labels": labels}
        if splits:
            body["splits"] = splits
        return self._json("POST", project_path(project, "items/from-dataset"), json=body)

    def claim_suggestions(self, project: str, *, limit: int, worker: str,
                          lease_seconds: int | None = None) -> dict[str, Any]:
        """Lease up to ``limit`` items to suggest labels for: ``{"model": {"package", "version", "solver"},
        "lease_until", "items": [{"id", "sha256", "width", "height", "file_name", "image"}]}``, the items
        empty when nothing is left. Raises HubConflictError (``no_suggestion_model``)."""
        body: dict[str, Any] = {"limit": limit, "worker": worker}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        return self._json("POST", project_path(project, "suggestions/claim"), json=body)

    def post_suggestions(self, project: str, *, worker: str, model_version: str,
                         results: list[dict[str, Any]]) -> dict[str, Any]:
        """Post ``[{"item": id, "suggestions": [...]}]`` made by ``model_version``: ``{"stored", "skipped"}``
        (skipped: saved or taken meanwhile, or the project moved to another model version).
        Raises HubError (``invalid_labels``)."""
        body = {"worker": worker, "model_version": model_version, "results": results}
        return self._json("POST", project_path(project, "suggestions"), json=body)

    def snapshot(self, project: str, *, version: str | None = None) -> dict[str, Any]:
        """Publish the accepted labels as a dataset version. Raises HubConflictError
        (``nothing_to_snapshot``, ``version_exists``), HubAuthError."""
        body = {} if version is None else {"version": version}
        return self._json("POST", project_path(project, "snapshots"), json=body)

    # -- training jobs (docs/training.md); a job's holder proves its lease with the claim's secret

    def training(self, project: str) -> dict[str, Any]:
        """The project's fine-tune settings and recent jobs: ``{"settings", "jobs"}``."""
        return self._json("GET", project_path(project, "training"))

    def update_training(self, project: str, **settings: Any) -> dict[str, Any]:
        """Change fine-tune settings (``every``, ``target``, ``trainer``, ``hyperparameters``; owners)."""
        return self._json("PATCH", project_path(project, "training"), json=settings)

    def queue_training_job(self, project: str) -> dict[str, Any]:
        """Queue a fine-tune of the project's model on a new snapshot now (owners): the job.
        Raises HubConflictError (``job_active``, ``nothing_to_snapshot``), HubError (``no_trainer``)."""
        return self._json("POST", project_path(project, "training-jobs"), json={})

    def training_job(self, job_id: int) -> dict[str, Any]:
        """One job. Raises HubNotFoundError (``job_not_found``)."""
        return self._json("GET", f"/api/v1/training-jobs/{int(job_id)}")

    def claim_training_job(self, *, worker: str, lease_seconds: int | None = None,
                           projects: Iterable[str] = ()) -> dict[str, Any] | None:
        """Take the oldest queued job this token may train: ``{"job", "lease", "lease_expires_at",
        "checkpoint"}`` (``checkpoint``: ``{"sha256", "size", "state"}`` to resume from, or None), or None
        when nothing is queued that it may run. Raises HubAuthError (a token without ``annotate``)."""
        body: dict[str, Any] = {"worker": worker}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        if projects:
            body["projects"] = list(projects)
        response = self.request("POST", "/api/v1/training-jobs/claim", json=body)
        if response.status_code == 204 or not response.content:
            return None
        try:
            document: dict[str, Any] = loads_json(response.content, max_depth=MAX_DOCUMENT_DEPTH)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HubUnavailableError(f"{self.base_url} did not answer like a CVFlow hub") from exc
        return document

    def training_heartbeat(self, job_id: int, lease: str, *, progress: dict[str, Any] | None = None,
                           history: list[dict[str, Any]] | None = None, log_tail: str | None = None,
                           lease_seconds: int | None = None) -> dict[str, Any]:
        """Renew the lease (by ``lease_seconds``, else the claim's length) and report progress, every
        epoch so far and the log's end. Raises HubConflictError (``lease_lost``): stop working on it."""
        body: dict[str, Any] = {"lease": lease}
        optional = {"progress": progress, "history": history, "log_tail": log_tail, "lease_seconds": lease_seconds}
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._json("POST", f"/api/v1/training-jobs/{int(job_id)}/heartbeat", json=body)

    def put_training_checkpoint(self, job_id: int, lease: str, source: BinaryIO, size: int) -> dict[str, Any]:
        """Upload the job's checkpoint (``checkpoint.safetensors``), replacing the previous one."""
        headers = {"cvflow-lease": lease, "content-type": "application/octet-stream", "content-length": str(size)}
        return self._json("PUT", f"/api/v1/training-jobs/{int(job_id)}/checkpoint", content=_file_views(source),
                          headers=headers)

    def get_training_checkpoint(self, job_id: int, lease: str, dest: Path) -> int:
        """Download the job's checkpoint into ``dest`` (written aside, then renamed); its size."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        size = 0
        with self.stream(f"/api/v1/training-jobs/{int(job_id)}/checkpoint", headers={"cvflow-lease": lease}) as r, \
                tmp.open("wb") as f:
            for chunk in r.iter_bytes(1 << 20):
                f.write(chunk)
                size += len(chunk)
        tmp.replace(dest)
        return size

    def put_training_preview(self, job_id: int, lease: str, png: bytes) -> None:
        """Upload the job's preview grid (a PNG or JPEG of at most 8 MiB)."""
        self.request("PUT", f"/api/v1/training-jobs/{int(job_id)}/preview", content=png,
                     headers={"cvflow-lease": lease, "content-type": "application/octet-stream"})

    def finish_training_job(self, job_id: int, lease: str, *, state: str, version: str | None = None,
                            metrics: dict[str, float] | None = None, base_metrics: dict[str, float] | None = None,
                            device: str | None = None, seconds: float | None = None,
                            message: str | None = None, log_tail: str | None = None) -> dict[str, Any]:
        """End the job ``done`` (naming the published version) or ``failed`` (with a message): the job,
        ``promoted`` said. Raises HubConflictError (``lease_lost``), HubError (``invalid_training``)."""
        body: dict[str, Any] = {"lease": lease, "state": state}
        optional = {"version": version, "metrics": metrics, "base_metrics": base_metrics, "device": device,
                    "seconds": seconds, "message": message, "log_tail": log_tail}
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._json("POST", f"/api/v1/training-jobs/{int(job_id)}/finish", json=body)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the default port filled in: what "same origin" compares."""
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


def project_path(project: str, rest: str = "") -> str:
    """``/api/v1/projects/<namespace>/<name>[/rest]``. Raises ValidationError for a name not ``namespace/name``."""
    namespace, _, name = project.strip().partition("/")
    if not namespace or not name or "/" in name:
        raise ValidationError(f"{project!r} is not a project name: write it as namespace/name")
    path = f"/api/v1/projects/{quote(namespace, safe='')}/{quote(name, safe='')}"
    return f"{path}/{rest}" if rest else path


def upload_path(client: HubClient, path: Path, digest: str, **kw: Any) -> None:
    """Upload a file by path; see :meth:`HubClient.upload_file`."""
    with path.open("rb") as f:
        client.upload_file(f, path.stat().st_size, digest, **kw)


def _views(data: bytes, step: int = 1 << 20) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), step):
        yield view[start : start + step]


def _file_chunk(source: BinaryIO, offset: int, length: int, progress: Progress | None,
                step: int = 1 << 20) -> Iterator[bytes]:
    """``length`` bytes of ``source`` from where it stands (``offset``), as a request body.

    Fresh ``bytes`` per read: h11 passes a lone ``bytes`` through to the socket, where a
    view would be copied once more.
    """
    left = length
    while left:
        piece = source.read(min(step, left))
        if not piece:
            raise HubError(f"the file shrank while uploading (at byte {offset + length - left})")
        left -= len(piece)
        yield piece
        if progress:
            progress(len(piece))


def _file_views(source: BinaryIO, step: int = 1 << 20) -> Iterator[bytes]:
    """A file's bytes in 1 MiB pieces: a streamed request body that never holds the whole file."""
    while piece := source.read(step):
        yield piece

"""Sending a blob: the fastest way the deployment allows.

In order of preference:

1. ``X-Accel-Redirect`` (file storage behind nginx, ``accel_redirect_prefix`` set): the hub
   answers with headers only and nginx sends the file with sendfile.
2. A presigned redirect (S3 storage, ``s3_presign`` on): the client fetches from the store.
3. ``FileResponse`` (file storage): Range handled by Starlette; servers that implement the
   ASGI ``pathsend`` extension (Granian) send the file without Python touching the bytes.
4. Streaming from the store (S3 without presigning), single ranges supported.

All of them carry ``ETag: "<sha256>"`` and never read more than a chunk into memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from hub.context import HubContext, run_sync
from hub.errors import HubError
from hub.storage import BlobNotFound, StorageError, blob_key

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class BlobFileResponse(FileResponse):
    # Larger reads than Starlette's 64 KiB default: far fewer event-loop round trips per GiB.
    chunk_size = 1 << 20


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single byte range as ``(start, end_exclusive)``; None to send the whole blob.

    Raises ``invalid_range`` when the range cannot be satisfied. Multiple ranges are
    answered with the whole blob, which RFC 9110 allows.
    """
    match = _RANGE.match(header.replace(" ", ""))
    if not match:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise HubError("invalid_range", f"bytes {header!r} is outside a blob of {size} bytes",
                       details={"size": size})
    return start, end


class _SmallBlob(Response):
    """A whole small blob from memory, its headers built once per digest and file name."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.body = body
        self.background = None
        self.raw_headers = list(raw_headers)  # a copy: middleware may add to the list it is sent


#: The answer's headers for a whole small blob, by (digest, file name): immutable, like the blob.
_SMALL_HEADERS: dict[tuple[str, str], list[tuple[bytes, bytes]]] = {}


async def blob_response(
    request: Request, hub: HubContext, digest: str, size: int, *, filename: str
) -> Response:
    small = size <= hub.small_blobs.largest and not hub.settings.accel_redirect_prefix
    if small and "range" not in request.headers and "if-range" not in request.headers:
        data = hub.small_blobs.get(digest)
        raw = _SMALL_HEADERS.get((digest, filename))
        if data is not None and raw is not None:  # the hot path: no file system call, no header building
            return _SmallBlob(data, raw)
    etag = f'"{digest}"'
    headers = {
        "etag": etag,
        "digest": f"sha-256={_b64(digest)}",
        "content-disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
        "cache-control": "public, max-age=31536000, immutable",
    }
    store, settings = hub.store, hub.settings
    rng = parse_range(request.headers.get("range", ""), size)  # unsatisfiable: 416 with a code
    small = small and "if-range" not in request.headers
    data = hub.small_blobs.get(digest) if small else None
    if data is not None:  # read from the file store before (below): no file system call now
        return _bytes_response(data, rng, headers, digest, filename)
    try:
        path = store.local_path(digest)
    except BlobNotFound as exc:
        raise HubError("blob_not_found", "the blob is recorded but missing from storage") from exc
    if path is not None and settings.accel_redirect_prefix:
        # The prefix is an nginx internal location whose alias is the store's root.
        relative = blob_key(digest)
        return Response(headers={**headers, "x-accel-redirect": settings.accel_redirect_prefix + relative,
                                 "content-type": "application/octet-stream"})
    if path is None and settings.s3_presign:
        url = await run_sync(store.presigned_url, digest, filename=filename)
        if url:
            return RedirectResponse(url, status_code=302, headers={"etag": etag})
    if path is not None and small:
        # A small file from memory: FileResponse costs four thread hops (stat, open, read, close).
        data = hub.small_blobs.get(digest)
        if data is None:
            data = await run_sync(path.read_bytes)
            if len(data) != size:  # a recorded size that the stored bytes do not have: sent as stored
                return BlobFileResponse(path, media_type="application/octet-stream", headers=headers)
            hub.small_blobs.put(digest, data)
        return _bytes_response(data, rng, headers, digest, filename)
    if path is not None:
        return BlobFileResponse(path, media_type="application/octet-stream", headers=headers)
    start, end = rng or (0, size)
    try:
        chunks = await run_sync(lambda: _first_then_rest(store.open_range(digest, start, end)))
    except BlobNotFound as exc:
        raise HubError("blob_not_found", "the blob is recorded but missing from storage") from exc
    except StorageError as exc:
        raise HubError("storage_unavailable", str(exc)) from exc
    headers["accept-ranges"] = "bytes"
    headers["content-length"] = str(end - start)
    if rng:
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(chunks, status_code=206 if rng else 200, headers=headers,
                             media_type="application/octet-stream")


def _bytes_response(data: bytes, rng: tuple[int, int] | None, headers: dict[str, str], digest: str,
                    filename: str) -> Response:
    headers = {**headers, "accept-ranges": "bytes", "content-type": "application/octet-stream"}
    if rng is None:
        response = Response(data, headers=headers)
        if len(_SMALL_HEADERS) > 10_000:
            _SMALL_HEADERS.clear()
        _SMALL_HEADERS[digest, filename] = response.raw_headers
        return _SmallBlob(data, response.raw_headers)
    start, end = rng
    headers["content-range"] = f"bytes {start}-{end - 1}/{len(data)}"
    return Response(data[start:end], status_code=206, headers=headers)


def _first_then_rest(it: Iterable[bytes]) -> Iterator[bytes]:
    """Pull the first chunk now so "not found" becomes an error before headers are sent."""
    iterator = iter(it)
    try:
        first = next(iterator)
    except StopIteration:
        return iter(())

    def rest() -> Iterator[bytes]:
        yield first
        yield from iterator

    return rest()


def _b64(hex_digest: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(hex_digest)).decode()

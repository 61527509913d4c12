"""Blobs: ask which the hub lacks, then upload those in resumable chunks.

Protocol::

    POST   /api/v1/blobs/check         {"digests": [...]}  -> {"missing": [...]}
    POST   /api/v1/uploads             {"size": N}         -> 201 {"id", "offset": 0, ...}
    PATCH  /api/v1/uploads/{id}        Upload-Offset: K, body = bytes K..K+len
    GET    /api/v1/uploads/{id}                            -> {"offset": K, ...}  (resume here)
    POST   /api/v1/uploads/{id}/finish {"sha256": "..."}   -> 201 {"sha256", "size"}
    DELETE /api/v1/uploads/{id}
    POST   /api/v1/blobs               body = records "<sha256> <size>\n" + bytes  -> 201 {"blobs": [...]}

The last uploads many small blobs (up to 1 MiB each, 32 MiB and 2,000 blobs a request) in one
request and one transaction: a dataset's thousands of images, which would take three requests
and a session each.

"Present" means present *for the caller*: a blob they uploaded, or one a version they may
read references. Knowing a digest never gives the bytes (``hub.services.blobs``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
from sqlmodel import Session
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from hub.api import bodies
from hub.api._http import Registry, json_response, principal, read_body, read_bytes
from hub.api.access import Access
from hub.context import ctx, in_session, run_sync
from hub.errors import HubError
from hub.models import Upload
from hub.services.access import reader
from hub.services.blobs import BATCH_BODY_LIMIT, referable, user_holder

endpoint = Registry()
PIECE = 1 << 20  # bytes handed to the storage thread at a time
_UPLOAD = {"type": "object", "properties": {
    "id": {"type": "string"}, "offset": {"type": "integer"}, "size": {"type": "integer"},
    "location": {"type": "string"}, "max_chunk_size": {"type": "integer"}}}


def _publisher(who: Any) -> Any:
    user = who.require_user()
    scopes = who.scopes.items if who.scopes else frozenset()
    if not any(s == "admin" or s.startswith("publish") for s in scopes):
        raise HubError("insufficient_scope", "uploading blobs needs a publish scope")
    return user


@endpoint("POST", "/api/v1/blobs/check", "Which of these blobs does the hub lack? Upload only those", "blobs",
          access=Access("publish:any"), errors=("unauthenticated", "insufficient_scope", "invalid_digest", "invalid_json"),
          body=bodies.BlobCheck,
          response={"type": "object", "properties": {"missing": {"type": "array", "items": {"type": "string"}},
                                                     "present": {"type": "array", "items": {"type": "string"}}}})
async def check_blobs(request: Request) -> Response:
    # "present" only for blobs the caller may reference in a version (uploaded by them, or in a
    # version they may read); any other is "missing", whether or not the hub has it.
    who = await principal(request, required=True)
    user = _publisher(who)
    digests = (await read_body(request, limit=2 << 20)).digests

    def work(session: Session) -> dict[str, Any]:
        return referable(session, user_holder(user.id), digests, readable=reader(session, who), touch=True)

    found = await in_session(request, work, write=True)
    return json_response({"missing": sorted(set(digests) - found.keys()), "present": sorted(found)})


@endpoint("POST", "/api/v1/blobs", "Upload small blobs whole, many in one request (records of '<sha256> <size>\\n' "
          "then the bytes)", "blobs",
          access=Access("publish:any"), status=201, request_type="application/octet-stream",
          errors=("unauthenticated", "insufficient_scope", "bad_request", "invalid_digest", "digest_mismatch",
                  "upload_too_large", "body_too_large", "storage_unavailable"),
          response={"type": "object", "properties": {"blobs": {"type": "array", "items": {
              "type": "object", "properties": {"sha256": {"type": "string"}, "size": {"type": "integer"}}}}}})
async def put_blobs(request: Request) -> Response:
    who = await principal(request, required=True)
    user = _publisher(who)
    body = await read_bytes(request, BATCH_BODY_LIMIT, "a batch of blobs")
    stored = await run_sync(ctx(request).uploads.put_batch, user, body)  # hashing: off the event loop
    return json_response({"blobs": [{"sha256": d, "size": n} for d, n in stored]}, status=201)


def _upload_json(upload: Upload, hub: Any) -> dict[str, Any]:
    return {"id": upload.id, "offset": upload.offset, "size": upload.declared_size,
            "location": f"/api/v1/uploads/{upload.id}", "max_chunk_size": hub.settings.max_chunk_size}


@endpoint("POST", "/api/v1/uploads", "Open a resumable upload session for a blob of a declared size", "blobs",
          access=Access("publish:any"), status=201, response=_UPLOAD,
          errors=("unauthenticated", "insufficient_scope", "upload_too_large", "invalid_field", "storage_unavailable"),
          body=bodies.NewUpload)
async def create_upload(request: Request) -> Response:
    who = await principal(request, required=True)
    user = _publisher(who)
    size = (await read_body(request)).size
    hub = ctx(request)
    upload = await run_sync(hub.uploads.create, user, size)
    body = _upload_json(upload, hub)
    return json_response(body, status=201, headers={"location": body["location"], "upload-offset": "0"})


@endpoint("GET", "/api/v1/uploads/{upload_id}", "An upload's committed offset: resume from here", "blobs",
          access=Access("publish:any", role="upload's owner"), errors=("unauthenticated", "upload_not_found"), response=_UPLOAD,
          params=(("upload_id", "path", "upload session id"),), headers={"Upload-Offset": "the committed offset"})
async def get_upload(request: Request) -> Response:
    who = await principal(request, required=True)
    hub = ctx(request)
    upload = await run_sync(hub.uploads.get, who.require_user(), request.path_params["upload_id"])
    return json_response(_upload_json(upload, hub), headers={"upload-offset": str(upload.offset)})


@endpoint("PATCH", "/api/v1/uploads/{upload_id}", "Append a chunk at the offset given in the Upload-Offset header",
          "blobs", access=Access("publish:any", role="upload's owner"), request_type="application/octet-stream", response=_UPLOAD,
          params=(("upload_id", "path", "upload session id"), ("Upload-Offset", "header", "where this chunk starts")),
          errors=("unauthenticated", "upload_not_found", "upload_offset_mismatch", "upload_too_large", "body_too_large",
                  "incomplete_chunk", "chunk_too_small", "bad_request", "storage_unavailable"))
async def patch_upload(request: Request) -> Response:
    who = await principal(request, required=True)
    user = who.require_user()
    hub = ctx(request)
    try:
        offset = int(request.headers["upload-offset"])
        length = int(request.headers["content-length"])
    except (KeyError, ValueError) as exc:
        raise HubError("bad_request", "a chunk needs Upload-Offset and Content-Length headers") from exc
    if offset < 0 or length < 0:
        raise HubError("bad_request", "Upload-Offset and Content-Length must not be negative")
    if length > hub.settings.max_chunk_size:
        raise HubError("body_too_large", f"a chunk may be at most {hub.settings.max_chunk_size} bytes",
                       details={"limit": hub.settings.max_chunk_size})
    upload_id = request.path_params["upload_id"]
    upload = await _stream_into(request, lambda pieces: hub.uploads.write_chunk(
        user, upload_id, offset=offset, length=length, pieces=pieces))
    return json_response(_upload_json(upload, hub), headers={"upload-offset": str(upload.offset)})


async def _stream_into(request: Request, work: Any) -> Any:
    """Run ``work(pieces)`` in a thread while the request body streams into ``pieces``.

    The body is read on the event loop and handed over in 1 MiB pieces through a small
    buffer, so memory stays bounded and hashing and writing happen off the loop.
    """
    # Pieces travel as lists of the server's own body chunks: no bytes are copied on the way.
    send, receive = anyio.create_memory_object_stream[list[bytes]](4)

    async def produce() -> None:
        async with send:
            batch: list[bytes] = []
            size = 0
            try:
                async for chunk in request.stream():
                    if not chunk:
                        continue
                    batch.append(chunk)
                    size += len(chunk)
                    if size >= PIECE:
                        await send.send(batch)
                        batch, size = [], 0
            except ClientDisconnect:
                return
            if batch:
                await send.send(batch)

    def pieces() -> Iterator[bytes]:
        while True:
            try:
                yield from anyio.from_thread.run(receive.receive)
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return

    result: Any = None
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        try:
            result = await anyio.to_thread.run_sync(work, pieces())
        except Exception as exc:  # raised below, not wrapped in the task group's ExceptionGroup
            error = exc
        finally:
            tg.cancel_scope.cancel()
            receive.close()
    if error is not None:
        raise error
    return result


@endpoint("POST", "/api/v1/uploads/{upload_id}/finish", "Verify the sha256 and make the blob visible", "blobs",
          access=Access("publish:any", role="upload's owner"), status=201, params=(("upload_id", "path", "upload session id"),),
          errors=("unauthenticated", "upload_not_found", "invalid_digest", "digest_mismatch", "size_mismatch",
                  "storage_unavailable"),
          body=bodies.FinishUpload)
async def finish_upload(request: Request) -> Response:
    who = await principal(request, required=True)
    digest = (await read_body(request)).sha256
    hub = ctx(request)
    blob = await run_sync(hub.uploads.finish, who.require_user(), request.path_params["upload_id"], digest)
    return json_response({"sha256": blob.sha256, "size": blob.size}, status=201)


@endpoint("DELETE", "/api/v1/uploads/{upload_id}", "Abandon an upload session", "blobs",
          access=Access("publish:any", role="upload's owner"),
          status=204, errors=("unauthenticated", "upload_not_found"), params=(("upload_id", "path", "upload session id"),))
async def delete_upload(request: Request) -> Response:
    who = await principal(request, required=True)
    hub = ctx(request)
    await run_sync(hub.uploads.abort, who.require_user(), request.path_params["upload_id"])
    return Response(status_code=204)

"""Liveness and readiness probes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hub import db
from hub.api._http import Registry, json_response
from hub.api.access import PUBLIC
from hub.context import ctx, run_sync
from hub.errors import HubError
from hub.storage import StorageError

endpoint = Registry()


@endpoint("GET", "/healthz", "Liveness: the process answers", "health", access=PUBLIC)
async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


@endpoint("GET", "/readyz", "Readiness: the database and the blob store answer", "health", access=PUBLIC,
          errors=("database_unavailable", "storage_unavailable"))
async def readyz(request: Request) -> Response:
    hub = ctx(request)
    await run_sync(db.check, hub.engine, hub.schema_head)
    try:
        await run_sync(hub.store.check)
    except StorageError as exc:
        raise HubError("storage_unavailable", f"blob store unavailable: {exc}") from exc
    return json_response({"status": "ready", "database": "ok", "storage": "ok"})

"""The change feed: ``GET /api/v1/changes?since=N`` pages through publishes, yanks and unyanks."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hub.api import bodies
from hub.api._http import Registry, ctx, json_response, principal, read_query, run_sync
from hub.api.access import OPTIONAL
from hub.db import session_scope
from hub.mirror import feed

endpoint = Registry()

_EVENT = {"type": "object", "required": ["serial", "action"], "properties": {
    "serial": {"type": "integer"},
    "action": {"enum": [*feed.ACTIONS, "hidden"],
               "description": "hidden: a change to a package the caller may not read"},
    "package": {"type": "string"}, "version": {"type": ["string", "null"]},
    "at": {"type": "string", "format": "date-time"}, "data": {"type": "object"}}}


@endpoint("GET", "/api/v1/changes", "Changes after a serial, oldest first: publishes, yanks, unyanks, visibility",
          "mirrors", access=OPTIONAL, errors=("invalid_field",), query=bodies.Changes,
          headers={"X-CVFlow-Serial": "the hub's current serial (on every response of the hub)"},
          response={"type": "object", "properties": {
              "since": {"type": "integer"}, "serial": {"type": "integer", "description": "the current serial"},
              "events": {"type": "array", "items": _EVENT},
              "next": {"type": "integer", "description": "pass as since to read on"},
              "more": {"type": "boolean"}}})
async def changes(request: Request) -> Response:
    who = await principal(request)
    q: bodies.Changes = read_query(request)
    since, limit = q.since, q.limit
    hub = ctx(request)

    def work() -> dict[str, Any]:
        with session_scope(hub.engine) as session:
            return feed.changes(session, who, since, limit)

    page = await run_sync(work)
    return json_response(page, headers={feed.SERIAL_HEADER: str(page["serial"])})

"""The change feed: ``GET /api/v1/changes?since=N`` pages through publishes, yanks and unyanks."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hub.api._http import Registry, ctx, json_response, principal, query_int, run_sync
from hub.db import session_scope
from hub.errors import HubError
from hub.mirror import feed

endpoint = Registry()

_EVENT = {"type": "object", "required": ["serial", "action"], "properties": {
    "serial": {"type": "integer"},
    "action": {"enum": [*feed.ACTIONS, "hidden"],
               "description": "hidden: a change to a package the caller may not read"},
    "package": {"type": "string"}, "version": {"type": ["string", "null"]},
    "at": {"type": "string", "format": "date-time"}, "data": {"type": "object"}}}


@endpoint("GET", "/api/v1/changes", "Changes after a serial, oldest first: publishes, yanks, unyanks, visibility",
          "mirrors", auth="optional", errors=("invalid_field",),
          params=(("since", "query", "the last serial already seen (0: from the start)"),
                  ("limit", "query", f"most events to return, 1 to {feed.MAX_PAGE} (default {feed.MAX_PAGE})")),
          headers={"X-CVFlow-Serial": "the hub's current serial (on every response of the hub)"},
          response={"type": "object", "properties": {
              "since": {"type": "integer"}, "serial": {"type": "integer", "description": "the current serial"},
              "events": {"type": "array", "items": _EVENT},
              "next": {"type": "integer", "description": "pass as since to read on"},
              "more": {"type": "boolean"}}})
async def changes(request: Request) -> Response:
    who = await principal(request)
    since = query_int(request, "since", 0)
    limit = query_int(request, "limit", feed.MAX_PAGE)
    if since < 0 or not 1 <= limit <= feed.MAX_PAGE:
        raise HubError("invalid_field", f"since must be 0 or more and limit 1 to {feed.MAX_PAGE}")
    hub = ctx(request)

    def work() -> dict[str, Any]:
        with session_scope(hub.engine) as session:
            return feed.changes(session, who, since, limit)

    page = await run_sync(work)
    return json_response(page, headers={feed.SERIAL_HEADER: str(page["serial"])})

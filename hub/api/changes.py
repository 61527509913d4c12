"""The change feed: ``GET /api/v1/changes?since=N`` pages through publishes, yanks and unyanks."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hub.api import bodies
from hub.api._http import Registry, json_response, principal, read_query
from hub.api.access import OPTIONAL
from hub.context import in_session
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
    page: dict[str, Any] = await in_session(request, feed.changes, who, q.since, q.limit)
    return json_response(page, headers={feed.SERIAL_HEADER: str(page["serial"])})

"""Two pure ASGI middlewares: the ``X-CVFlow-Serial`` header, and refusing writes on a read-only hub."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from hub.api._http import READ_ONLY_ALLOWED, SAFE_METHODS, dumps
from hub.errors import HubError
from hub.mirror.feed import SerialTracker

_HEADER = b"x-cvflow-serial"

Scope = dict[str, Any]


class SerialHeaderMiddleware:
    """Adds the hub's current change-feed serial to every response that does not carry one.

    Reads use the value the tracker holds, refreshed at most once a second in a thread while
    reads go on with the value held (only the very first read waits); after a write the
    tracker is refreshed before the header goes out, so a client that just published sees a
    serial that includes its change.
    """

    def __init__(self, app: Any, tracker: SerialTracker) -> None:
        self.app = app
        self.tracker = tracker

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracker = self.tracker
        write = scope["method"] not in SAFE_METHODS
        if not write and tracker.stale():
            if tracker.loaded():
                tracker.refresh_soon()  # this answer carries the value held; the next ones the new
            else:
                await run_in_threadpool(tracker.refresh)

        async def send_with_serial(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                if not any(k.lower() == _HEADER for k, _ in headers):
                    if write:
                        await run_in_threadpool(tracker.refresh)
                    headers.append((_HEADER, str(tracker.value).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_serial)


class ReadOnlyMiddleware:
    """Answers API writes with ``403 read_only`` (except reading the index and signing in)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or scope["method"] in SAFE_METHODS or not path.startswith("/api/")
                or path.startswith(READ_ONLY_ALLOWED)):
            await self.app(scope, receive, send)
            return
        error = HubError("read_only", "this hub is read-only (a mirror); publish to its upstream instead")
        body = dumps(error.body())
        await send({"type": "http.response.start", "status": error.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

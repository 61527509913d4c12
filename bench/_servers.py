"""The peer servers the benchmarks start, as ASGI/WSGI factories and one uvicorn launcher.

    python bench/_servers.py bare|sink PORT    # uvicorn with the options `cvflow-hub serve` uses
    granian --factory --working-dir bench _servers:bare_from_env ...

Configured through environment variables so every server gets the same input:
``BENCH_BODY`` (a file holding the bytes to answer), ``BENCH_HEADERS`` (``name: value`` lines)
and ``BENCH_PYPI_ROOT`` (pypiserver's package directory).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


def bare_from_env() -> Any:
    """A bare Starlette app answering one route with fixed bytes: the framework's ceiling."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    body = Path(os.environ["BENCH_BODY"]).read_bytes()
    headers = dict(line.split(": ", 1) for line in os.environ.get("BENCH_HEADERS", "").splitlines() if line)
    media_type = headers.pop("content-type", "application/json")

    async def document(request: Any) -> Response:
        return Response(body, media_type=media_type, headers=headers)

    return Starlette(routes=[Route("/api/v1/packages/{namespace}/{name}", document)])


def sink_from_env() -> Any:
    """A raw ASGI app that reads a request body and throws it away: the loopback upload ceiling."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        received = 0
        more = True
        while more:
            message = await receive()
            received += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = str(received).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


def pypi_from_env() -> Any:
    """pypiserver's WSGI app over ``BENCH_PYPI_ROOT``, for a server other than its own."""
    import pypiserver

    return pypiserver.app(roots=[os.environ["BENCH_PYPI_ROOT"]])


def main() -> None:
    import uvicorn

    which, port = sys.argv[1], int(sys.argv[2])
    app = {"bare": bare_from_env, "sink": sink_from_env}[which]()
    # The same call as `cvflow-hub serve` (hub/cli.py): uvloop + httptools when installed.
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=True,
                timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()

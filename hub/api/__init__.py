"""The REST API, ``/api/v1``. Each module registers its endpoints with their OpenAPI facts."""

from __future__ import annotations

from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

#: The largest row id: ids are SQL ``INTEGER`` columns (32 bits on PostgreSQL).
MAX_ROW_ID = 2**31 - 1


def _up_to(n: int) -> str:
    """A regular expression for the decimal numbers 0 to ``n`` (leading zeros allowed)."""
    digits = str(n)
    alternatives = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for i, d in enumerate(digits):
        if d != "0":
            alternatives.append(f"{digits[:i]}[0-{int(d) - 1}][0-9]{{{len(digits) - i - 1}}}")
    alternatives.append(digits)
    return "(?:" + "|".join(alternatives) + ")"


class IdConvertor(IntegerConvertor):
    """``{x:id}``: a row id. A larger number matches no route (404), rather than reaching the
    database as a value its column cannot hold."""

    regex = _up_to(MAX_ROW_ID)


register_url_convertor("id", IdConvertor())

from hub.api import (  # noqa: E402  (they use ``:id``)
    accounts,
    blobs,
    changes,
    docs,
    health,
    hf,
    packages,
    project_data,
    projects,
    repositories,
    training,
)
from hub.api._http import Endpoint  # noqa: E402

MODULES = (health, accounts, packages, blobs, repositories, changes, projects, project_data, training, hf, docs)


def endpoints() -> list[Endpoint]:
    return [e for module in MODULES for e in module.endpoint.endpoints]


#: Matched first: Starlette tries routes in order, and these carry most of the traffic.
HOT_PATHS = (
    "/api/v1/packages/{namespace}/{name}",
    "/api/v1/packages/{namespace}/{name}/versions/{version}/files/{path:path}",
    "/api/v1/packages/{namespace}/{name}/versions/{version}",
    "/api/v1/index",
)


class ByMethod:
    """The endpoints of one path, chosen by the request's method.

    One route per path, not per method: Starlette answers a method the path does not take
    with 405 and an ``Allow`` that lists every method it does take.
    """

    def __init__(self, apps: dict[str, ASGIApp]) -> None:
        self.apps = apps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        app = self.apps.get(method) or (self.apps["GET"] if method == "HEAD" else None)
        assert app is not None, "the route checks the method first"
        await app(scope, receive, send)


def routes() -> list[BaseRoute]:
    # The paths do not overlap, so the order changes speed only, never which route answers.
    ordered = sorted(endpoints(), key=lambda e: (e.path not in HOT_PATHS, HOT_PATHS.index(e.path) if e.path in HOT_PATHS else 0))
    by_path: dict[str, dict[str, Route]] = {}
    for e in ordered:
        by_path.setdefault(e.path, {})[e.method] = e.route()
    return [Route(path, ByMethod({m: r.app for m, r in methods.items()}), methods=list(methods),
                  name=" ".join(r.name for r in methods.values()))
            for path, methods in by_path.items()]

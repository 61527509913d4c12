"""The REST API, ``/api/v1``. Each module registers its endpoints with their OpenAPI facts."""

from __future__ import annotations

from starlette.routing import BaseRoute

from hub.api import accounts, blobs, changes, health, packages, repositories
from hub.api._http import Endpoint

MODULES = (health, accounts, packages, blobs, repositories, changes)


def endpoints() -> list[Endpoint]:
    return [e for module in MODULES for e in module.endpoint.endpoints]


#: Matched first: Starlette tries routes in order, and these carry most of the traffic.
HOT_PATHS = (
    "/api/v1/packages/{namespace}/{name}",
    "/api/v1/packages/{namespace}/{name}/versions/{version}/files/{path:path}",
    "/api/v1/packages/{namespace}/{name}/versions/{version}",
    "/api/v1/index",
)


def routes() -> list[BaseRoute]:
    # The paths do not overlap, so the order changes speed only, never which route answers.
    ordered = sorted(endpoints(), key=lambda e: (e.path not in HOT_PATHS, HOT_PATHS.index(e.path) if e.path in HOT_PATHS else 0))
    return [e.route() for e in ordered]

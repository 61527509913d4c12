"""``GET /api/docs``: the API reference as a web page, rendered on the server from the hub's own
OpenAPI document (:mod:`hub.api.openapi`) by :mod:`cvflow.openapi_html`.

The app (``hub/app.py``) hands in the site's layout as ``app.state.api_docs_page``; without one
the page is the renderer's whole document with its inline stylesheet.
"""

from __future__ import annotations

from functools import cache

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from cvflow import openapi_html
from hub.api._http import Registry
from hub.api.access import PUBLIC

endpoint = Registry()

OPENAPI_URL = "/api/v1/openapi.json"


@cache
def reference() -> str:
    """The reference's HTML fragment; the document is fixed for the process's life."""
    from hub.api import openapi  # it reads every module's registry, this one included

    return openapi_html.reference(openapi.build(), json_url=OPENAPI_URL)


@endpoint("GET", "/api/docs", "The API reference as a web page (HTML), from the OpenAPI document", "docs",
          access=PUBLIC)
async def api_docs(request: Request) -> Response:
    layout = getattr(request.app.state, "api_docs_page", None)
    if layout is not None:
        response: Response = layout(request, reference())
        return response
    from hub.api import openapi

    return HTMLResponse(openapi_html.page(openapi.build(), json_url=OPENAPI_URL))

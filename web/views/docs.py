"""The API reference page (``/api/docs``) in the site's layout.

The route is the API's (:mod:`hub.api.docs`, public like the OpenAPI document); the app hands it
:func:`api_docs_page`, which wraps the reference that :mod:`cvflow.openapi_html` renders from the
hub's OpenAPI document in ``api_docs.html``.
"""

from __future__ import annotations

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from web.templating import render


def api_docs_page(request: Request, reference_html: str) -> Response:
    """``reference_html`` is the renderer's output, every string in it already escaped."""
    return render(request, "api_docs.html", reference=Markup(reference_html))  # noqa: S704 (escaped by the renderer)

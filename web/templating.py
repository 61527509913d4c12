"""Jinja2 set up for the website: autoescaping on, a few filters, the page context."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from cvflow.solver import declared_input
from web.security import LazyCsrfToken

TEMPLATES = Path(__file__).parent / "templates"

env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)


def filesize(n: int | None) -> str:
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def day(value: str | datetime | None) -> str:
    if value is None:
        return ""
    return (value if isinstance(value, str) else value.isoformat())[:10]


def http_url(value: str | None) -> str | None:
    """The URL if it is http(s) and so safe to link; None for anything else (``javascript:``,
    ``data:``, an ssh remote such as ``git@host:repo``), which pages show as text instead."""
    if not value:
        return None
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    return value.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def replace_page(params: Any, page: int) -> str:
    items = [(k, v) for k, v in params.multi_items() if k != "page"]
    return urlencode([*items, ("page", str(page))])


env.filters["filesize"] = filesize
env.filters["replace_page"] = replace_page
env.filters["day"] = day
env.filters["http_url"] = http_url
env.filters["declared_input"] = declared_input


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    user = request.scope.get("web_user")
    page = env.get_template(template).render(
        request=request, user=user, csrf_token=LazyCsrfToken(request), **context
    )
    return HTMLResponse(page, status_code=status, headers={"cache-control": "no-store"} if user else None)

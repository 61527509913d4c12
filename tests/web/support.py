"""What the website tests share: fetching pages as a browser would, signing in through the real
form, publishing quickly in-process, and reading the parts of a page a test cares about."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import select

from hub.db import session_scope
from hub.models import Token, User
from hub.services import accounts, packages
from hub.services.blobs import user_holder
from tests.helpers import PASSWORD, LiveHub, manifest

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
#: Browser context options: a desktop window and a phone (390x844 CSS pixels, touch).
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 900}}
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
                         "has_touch": True}


@contextlib.contextmanager
def clipboard_context(chromium: Any, origin: str, **options: Any) -> Iterator[Any]:
    """A Chromium context (``options`` as ``new_context`` takes them) whose pages on ``origin``
    may read and write the clipboard, closed afterwards."""
    ctx = chromium.new_context(**options)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    try:
        yield ctx
    finally:
        ctx.close()
SOLVER = b"class Detector:\n    def infer(self, image):\n        return []\n"
HTML = {"accept": "text/html,application/xhtml+xml"}
README = b"""# Digit reader

Reads *handwritten* digits. See [the paper](https://example.org/lenet).

| split | accuracy |
| ----- | -------- |
| test  | 0.98     |

```python
print("hello")
```
"""


def browser(hub: LiveHub, **kw: Any) -> httpx.Client:
    """A client that asks for pages and keeps cookies, like a browser without JavaScript."""
    client = httpx.Client(base_url=hub.url, headers=HTML, timeout=30, **kw)
    hub._clients.append(client)  # closed with the hub fixture's other clients
    return client


def download(hub: LiveHub, name: str, version: str, path: str = "cvflow.toml") -> None:
    """Fetch a file as a client does; fetching the manifest counts a download."""
    r = hub.client().get(f"/api/v1/packages/{name}/versions/{version}/files/{path}")
    assert r.status_code == 200, r.text
    hub.context.downloads.flush()  # counted in memory and written in batches: written now


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return unescape(match[1])


def sign_in(client: httpx.Client, name: str, password: str = PASSWORD, *, next: str | None = None) -> httpx.Response:
    """Sign in through the sign-in form: load it, take its CSRF token, post the credentials."""
    form = client.get("/login", params={"next": next} if next else None)
    assert form.status_code == 200, form.text
    data = {"csrf_token": csrf(form.text), "username": name, "password": password}
    data["next"] = hidden(form.text, "next")
    return client.post("/login", data=data)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{re.escape(name)}" value="([^"]*)"', html)
    assert match, f"no hidden input {name!r}"
    return unescape(match[1])


def publish_direct(
    hub: LiveHub,
    token: str,
    name: str,
    version: str = "1.0.0",
    *,
    files: dict[str, bytes] | None = None,
    manifest_text: str | None = None,
    private: bool | None = None,
    source_repository: str | None = None,
    source_commit: str | None = None,
    **manifest_kw: Any,
) -> None:
    """Publish through the hub's services in-process: the same checks as the API, without the
    upload round trips (seeding dozens of packages over HTTP costs seconds per test)."""
    ctx = hub.context
    text = manifest_text if manifest_text is not None else manifest(name, version, **manifest_kw)
    contents = {"cvflow.toml": text.encode(), **(files or {"solver.py": SOLVER})}
    namespace, pkg = name.split("/", 1)
    with session_scope(ctx.engine) as session:
        holder = user_holder(accounts.resolve_token(session, token).require_user().id)
    entries = [{"path": p, "size": len(b), "sha256": ctx.uploads.put_small(b, grant_to=holder)}
               for p, b in contents.items()]
    with session_scope(ctx.engine, write=True) as session:
        who = accounts.resolve_token(session, token)
        packages.publish(session, ctx.settings, who, namespace, pkg, manifest_toml=text, files=entries,
                         private=private, source_repository=source_repository, source_commit=source_commit)


def yank_direct(hub: LiveHub, token: str, name: str, version: str, reason: str) -> None:
    namespace, pkg = name.split("/", 1)
    with session_scope(hub.context.engine, write=True) as session:
        who = accounts.resolve_token(session, token)
        packages.set_yanked(session, who, namespace, pkg, version, yanked=True, reason=reason)


def live_tokens(hub: LiveHub, user: str) -> list[Token]:
    with session_scope(hub.context.engine) as session:
        owner = session.exec(select(User).where(User.name == user)).one()
        return list(session.exec(select(Token).where(Token.user_id == owner.id, Token.revoked_at.is_(None))))  # type: ignore[union-attr]


def section(html: str, heading_id: str) -> str:
    """The HTML of the ``<section aria-labelledby=heading_id>``."""
    match = re.search(rf'<section aria-labelledby="{heading_id}">(.*?)</section>', html, re.S)
    assert match, f"no section {heading_id!r}"
    return match[1]


def listed(html: str) -> list[str]:
    """Package names in a package list, in order."""
    return re.findall(r'<h3><a href="/([^"]+)">', html)


def text(html: str) -> str:
    """The page's text with tags dropped and whitespace folded, for phrases a reader sees."""
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


class Tags(HTMLParser):
    """Every start tag with its (entity-decoded) attributes, and the text inside each script."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data

    def of(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == name]

"""Script planted in a README, a description, a solver, a yank reason, a token name, a source URL, a
package name and a search query: the pages carry none of it as markup, and a real browser (headless
Chromium) runs none of it.

Two layers stand between a payload and a visitor: the sanitiser (and Jinja's escaping) and the
Content-Security-Policy. The browser test also fails on any CSP violation report, so a payload that
the sanitiser let through and only the CSP stopped is still a failure.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import PASSWORD, LiveHub, publish
from tests.web.support import SOLVER, Tags, browser, csrf, publish_direct, section, sign_in, yank_direct

# Each payload, if it ever ran, would set window.__xss (and most would also open a dialog).
README = """# Harmless title

<script>window.__xss = 'readme script'; alert(1)</script>

<img src=x onerror="window.__xss = 'readme img'; alert(2)">

<svg onload="window.__xss = 'readme svg'"><circle r="1"/></svg>

<a href="javascript:window.__xss = 'raw link'">raw link</a>

<iframe src="javascript:window.__xss = 'iframe'"></iframe>

<div onmouseover="window.__xss = 'hover'">hover me</div>

<style>body { display: none }</style>

<meta http-equiv="refresh" content="0;url=javascript:window.__xss='meta'">

<form action="https://evil.example/steal"><button>Go</button></form>

[markdown link](javascript:window.__xss='md link')

[mixed case](JaVaScRiPt:window.__xss='mixed')

[entity](&#106;avascript:window.__xss='entity')

[data url](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MTwvc2NyaXB0Pg==)

![image](javascript:window.__xss='image')

<javascript:window.__xss='autolink'>

A [good link](https://example.org/docs) stays.

```html
<script>window.__xss = 'in a code block, shown as text'</script>
```
"""
DESCRIPTION = "<script>window.__xss='description'</script><img src=x onerror=window.__xss='desc-img'>"
SOLVER_DESCRIPTION = "<img src=x onerror=window.__xss='solver'>"
YANK_REASON = "<script>window.__xss='yank'</script>"
TOKEN_NAME = "<img src=x onerror=window.__xss='token'>"
QUERY = "<script>window.__xss='query'</script>\"><img src=x onerror=window.__xss='attr'>"
# The hub refuses non-web source URLs (tested below); this one is a valid https URL full of markup.
BAD_SOURCE = "https://example.org/\"><script>window.__xss='source'</script>"


def manifest_with_markup(name: str, version: str) -> str:
    # JSON strings are TOML basic strings: the payloads go in exactly as written.
    return f"""[package]
name = "{name}"
version = "{version}"
description = {json.dumps(DESCRIPTION)}
task = "classification"
tags = ["xss"]

[[solvers]]
name = "detect"
class = "solver:Detector"
description = {json.dumps(SOLVER_DESCRIPTION)}
inputs = {{ image = {json.dumps("image: " + SOLVER_DESCRIPTION)} }}
outputs = {{ boxes = {json.dumps(SOLVER_DESCRIPTION)} }}

[metrics]
accuracy = 0.5
latency_ms = 3
"""


def plant(hub: LiveHub) -> str:
    """Publish alice/planted (1.0.0 yanked, 1.1.0) full of payloads; returns alice's token."""
    token = hub.create_user("alice")
    for version in ("1.0.0", "1.1.0"):
        publish_direct(hub, token, "alice/planted", version, manifest_text=manifest_with_markup("alice/planted", version),
                       files={"solver.py": SOLVER, "README.md": README.encode()},
                       source_repository=BAD_SOURCE, source_commit="4b825dc642cb6eb9a060e54bf8d69288fbee4904")
    yank_direct(hub, token, "alice/planted", "1.0.0", YANK_REASON)
    return token


def assert_inert(html: str) -> None:
    """No markup in the page can run script or leave the site on its own."""
    tags = Tags(html)
    assert [attrs.get("src") for attrs in tags.of("script")] == ["/static/copy.js"]
    assert tags.scripts == [""]
    for tag, attrs in tags.tags:
        assert tag not in {"iframe", "object", "embed", "style", "meta", "base", "frame"} or (
            tag == "meta" and "http-equiv" not in attrs), (tag, attrs)
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, value)
            assert name not in {"style", "srcdoc", "formaction"}, (tag, name)
            if name in {"href", "src", "action", "xlink:href", "data", "poster"} and value:
                squeezed = "".join(value.split()).lower()
                assert not squeezed.startswith(("javascript:", "vbscript:", "data:")), (tag, name, value)
        if tag == "form":
            assert (attrs.get("action") or "").startswith("/"), attrs


def test_readme_is_rendered_without_script_handlers_or_dangerous_links(hub: LiveHub) -> None:
    plant(hub)
    html = browser(hub).get("/alice/planted").text
    assert_inert(html)
    readme = html.split('<div class="readme">', 1)[1].split("<aside>", 1)[0]
    assert "<h1>Harmless title</h1>" in readme
    assert '<a href="https://example.org/docs" rel="nofollow noopener noreferrer">good link</a>' in readme
    assert "&lt;script&gt;window.__xss = 'in a code block, shown as text'&lt;/script&gt;" in readme
    # Raw HTML is shown as text, never as markup.
    assert "&lt;img src=x onerror=" in readme and "<img src=x" not in readme
    assert "<form" not in readme and "<iframe" not in readme and "<svg" not in readme


def test_manifest_text_yank_reasons_and_source_are_escaped(hub: LiveHub) -> None:
    plant(hub)
    client = browser(hub)
    for path in ("/alice/planted", "/alice/planted/v/1.0.0", "/", "/search?q=planted", "/alice", "/zoo/classification"):
        html = client.get(path).text
        assert_inert(html)
    page = client.get("/alice/planted/v/1.0.0").text
    assert "&lt;script&gt;window.__xss=&#39;description&#39;&lt;/script&gt;" in page
    assert page.count("&lt;img src=x onerror=window.__xss=&#39;solver&#39;&gt;") == 3  # description, input, output
    assert "This version was yanked: &lt;script&gt;window.__xss=&#39;yank&#39;&lt;/script&gt;" in page
    # Markup in a source URL is escaped, in the link and in its text.
    source = section(page, "source-h")
    assert "&lt;script&gt;window.__xss=&#39;source&#39;&lt;/script&gt;" in source and "<script" not in source


def test_the_manifest_takes_markup_in_a_description_as_plain_text(hub: LiveHub) -> None:
    alice = hub.client(hub.create_user("alice"))
    r = publish(alice, "alice/planted", manifest_text=manifest_with_markup("alice/planted", "1.0.0"))
    assert r.status_code == 201, r.text
    assert r.json()["manifest"]["description"] == DESCRIPTION  # stored as written; escaped when shown
    assert "&lt;script&gt;" in browser(hub).get("/alice/planted").text


@pytest.mark.parametrize("name", ["alice/<script>", "alice/x\"onmouseover=alert(1)", "alice/a b", "alice/ÿ"])
def test_package_names_with_markup_are_refused(hub: LiveHub, name: str) -> None:
    alice = hub.client(hub.create_user("alice"))
    ns, pkg = name.split("/", 1)
    text = manifest_with_markup("alice/fine", "1.0.0")
    r = alice.post(f"/api/v1/packages/{ns}/{quote(pkg, safe='')}/versions",
                   json={"manifest": text, "files": [{"path": "cvflow.toml", "size": 1, "sha256": "0" * 64}]})
    assert r.status_code in (404, 422), r.text
    if r.status_code == 422:
        assert r.json()["error"]["code"] == "invalid_package_name"
    # Nor can the manifest name a package so: it is checked before anything is stored.
    r = publish(alice, "alice/fine", manifest_text=text.replace('"alice/fine"', f'"{name.replace(chr(34), "")}"'))
    assert r.status_code == 422


def test_user_and_organisation_names_with_markup_are_refused(hub: LiveHub) -> None:
    alice = hub.client(hub.create_user("alice"))
    r = alice.post("/api/v1/orgs", json={"name": "<script>alert(1)</script>"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_package_name"


def test_echoed_input_is_escaped(hub: LiveHub) -> None:
    hub.create_user("alice")
    client = browser(hub)
    search = client.get("/search", params={"q": QUERY, "tag": QUERY, "framework": QUERY})
    assert search.status_code == 200
    assert_inert(search.text)
    assert "&lt;script&gt;window.__xss=&#39;query&#39;&lt;/script&gt;&#34;&gt;&lt;img" in search.text
    for path in (f"/alice/{quote(QUERY, safe='')}", f"/zoo/{quote(QUERY, safe='')}", f"/{quote(QUERY, safe='')}",
                 f"/login?next=/{quote(QUERY)}"):
        r = client.get(path)
        assert r.status_code in (200, 404), path
        assert_inert(r.text)
        assert "<script>window" not in r.text and "<img src=x" not in r.text


def visit(page: Any, url: str, failures: list[str]) -> None:
    page.goto(url, wait_until="load")
    page.mouse.move(200, 300)  # a hover, for any handler that waits for one
    page.mouse.move(400, 500)
    sentinel = page.evaluate("() => window.__xss")
    if sentinel is not None:
        failures.append(f"{url}: window.__xss = {sentinel!r}")


def test_nothing_planted_runs_in_a_real_browser(hub: LiveHub, chromium: Any) -> None:
    plant(hub)
    token_owner = browser(hub)
    sign_in(token_owner, "alice")
    page_html = token_owner.get("/settings/tokens").text
    r = token_owner.post("/settings/tokens", data={"csrf_token": csrf(page_html), "action": "create",
                                                   "name": TOKEN_NAME, "scopes": "read"})
    assert r.status_code == 200
    assert_inert(r.text)
    hub.create_user("root", admin=True)

    context = chromium.new_context()
    page = context.new_page()
    failures: list[str] = []
    page.on("dialog", lambda d: (failures.append(f"dialog: {d.message}"), d.dismiss()))
    page.on("console", lambda m: failures.append(f"console: {m.text}") if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: failures.append(f"page error: {e}"))
    try:
        urls = ["/alice/planted", "/alice/planted/v/1.0.0", "/", "/search?q=planted", "/alice", "/zoo/classification",
                f"/search?q={quote(QUERY)}&tag={quote(QUERY)}", f"/alice/{quote(QUERY, safe='')}",
                f"/zoo/{quote(QUERY, safe='')}", f"/login?next=/{quote(QUERY)}"]
        for url in urls:
            visit(page, hub.url + url, failures)
        # Signed in: the tokens page (a token named with markup) and the admin page (the yank reason).
        for user in ("alice", "root"):
            page.goto(hub.url + "/login")
            page.get_by_label("User name").fill(user)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(hub.url + "/")
            target = "/settings/tokens" if user == "alice" else "/admin"
            visit(page, hub.url + target, failures)
            assert_inert(page.content())
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(hub.url + "/")
        assert failures == []
        # The payloads are on the page as text a reader can see.
        page.goto(hub.url + "/alice/planted/v/1.0.0")
        assert "<script>window.__xss='yank'</script>" in page.inner_text("p.warn")
        assert page.locator(".readme img, .readme iframe, .readme script, .readme svg").count() == 0
    finally:
        context.close()


@pytest.mark.parametrize(("repository", "commit"), [("javascript:window.__xss='source'", None),
                                                    ("https://example.org/repo", "<b>deadbeef</b>")])
def test_the_hub_refuses_non_web_source_urls_and_non_hex_commits(hub, repository, commit):
    from hub.errors import HubError

    token = hub.create_user("alice")
    with pytest.raises(HubError) as caught:
        publish_direct(hub, token, "alice/planted", "1.0.0", files={"solver.py": SOLVER},
                       source_repository=repository, source_commit=commit)
    assert caught.value.code == "invalid_field"

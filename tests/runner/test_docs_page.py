"""The runner's ``/docs``: its own OpenAPI document as a readable page, served by a real runner in
this process (a solver that needs no image library) over a real socket."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from cvflow.runner.server import Runner, RunnerSettings

MANIFEST = """[package]
name = "qa/doc-adder"
version = "0.2.0"
description = "adds <two> numbers"

[[solvers]]
name = "add"
class = "adder_for_docs_tests:Adder"
description = "Add b to a"
"""
MODULE = """from typing import Literal

class Adder:
    def __init__(self, context):
        pass

    def infer(self, a: int, b: int = 1, how: Literal["plus", "minus"] = "plus") -> dict:
        return {"sum": a + b if how == "plus" else a - b}
"""


class Page(HTMLParser):
    """Ids, hrefs, tags seen, and whether anything would load or run."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.tags: set[str] = set()
        self.loads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag in ("script", "link", "img", "iframe") or a.get("src"):
            self.loads.append(tag)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("doc-adder")
    (folder / "cvflow.toml").write_text(MANIFEST)
    (folder / "adder_for_docs_tests.py").write_text(MODULE)
    runner = Runner(RunnerSettings(package_dir=folder, access_log=False))
    server = runner.bind()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    runner.load()
    yield f"http://127.0.0.1:{runner.port}"
    runner.close(grace=1)


def test_docs_is_the_runners_openapi_document_as_a_page(base: str) -> None:
    r = httpx.get(base + "/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = Page()
    page.feed(r.text)
    assert page.loads == [], "the page loads nothing and runs nothing"
    assert "style" in page.tags
    doc = httpx.get(base + "/openapi.json").json()
    assert "/docs" in doc["paths"], "the page is in the document it renders"
    # every operation of the document has its anchor, linked from the table of contents
    for path, item in doc["paths"].items():
        for op in item.values():
            anchor = "op-" + op["operationId"]
            assert anchor in page.ids, (path, anchor)
            assert "#" + anchor in page.hrefs
    assert "qa/doc-adder 0.2.0 API reference" in r.text
    assert "adds &lt;two&gt; numbers" in r.text, "the package's text is escaped"
    infer = r.text[r.text.index('id="op-infer_add"'):]
    infer = infer[:infer.index("</article>")]
    assert "Add b to a" in infer
    # the request body's properties, with the enum and the default; the error codes of the answers
    assert re.search(r"<code>how</code>.*one of <code>plus</code>, <code>minus</code>", infer)
    assert "<code>a</code> <span class=\"api-required\">required</span>" in infer
    for code in ("invalid_field", "solver_error", "not_ready"):
        assert f"<code>{code}</code>" in infer


def test_docs_takes_get_and_head_only(base: str) -> None:
    assert httpx.head(base + "/docs").status_code == 200
    r = httpx.post(base + "/docs")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers["allow"] == "GET, HEAD"


def test_the_renderer_escapes_everything_stops_at_cycles_and_depth() -> None:
    from cvflow import openapi_html

    spec = {
        "openapi": "3.1.0",
        "info": {"title": "<script>alert(1)</script>", "version": "1"},
        "paths": {"/a/{x}": {"get": {
            "summary": "a `code` span and <b>bold</b>", "tags": ["t\"'<>"],
            "parameters": [{"name": "x\"><img src=y>", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "ok", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Node"}}}},
                "404": {"description": "`gone`: <no such thing>; `other`: also"}}}},
            "/b": {"post": {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Deep"}}}},
                            "responses": {}}}},
        "components": {"schemas": {
            "Node": {"type": "object", "properties": {"child": {"$ref": "#/components/schemas/Node"},
                                                      "missing": {"$ref": "#/components/schemas/Nope"}}},
            "Deep": {"type": "object", "properties": {"l1": {"type": "object", "properties": {"l2": {"type": "object",
                     "properties": {"l3": {"type": "object", "properties": {"l4": {"type": "object", "properties": {
                         "l5": {"type": "object", "properties": {"l6": {"type": "string"}}}}}}}}}}}}},
        }},
    }
    html = openapi_html.page(spec)
    page = Page()
    page.feed(html)
    assert page.loads == [] and "<b>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "a <code>code</code> span" in html
    assert "as above: <code>Node</code>" in html, "a cycle is named, not followed"
    assert "<code>l5</code>" in html and "<code>l6</code>" not in html, "nesting stops at MAX_DEPTH"
    assert "<li><code>gone</code>: &lt;no such thing&gt;</li>" in html  # codes read from the description
    assert {"op-get-a-x", "op-post-b"} <= page.ids, "an operation without an operationId has an anchor too"

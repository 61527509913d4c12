"""Pages over real HTTP on both backends: the API reference (``/api/docs``), HTML 404s for every
unknown page at any depth (API paths keep their JSON errors), search by tags (never revealing a
private package), and the sign-in page saying how accounts are made."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tests.helpers import LiveHub
from tests.web.support import HTML, Tags, browser, listed, publish_direct, sign_in


def test_api_docs_is_the_openapi_document_rendered_in_the_site(hub: LiveHub) -> None:
    page = browser(hub).get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<header class="site">' in page.text, "in the site's layout"
    spec = hub.client().get("/api/v1/openapi.json").json()
    ids = {a.get("id") for a in Tags(page.text).of("article")}
    hrefs = {a.get("href") for a in Tags(page.text).of("a")}
    count = 0
    for path, item in spec["paths"].items():
        for op in item.values():
            anchor = "op-" + op["operationId"]
            assert anchor in ids and "#" + anchor in hrefs, (path, anchor)
            count += 1
    assert count > 40
    for tag in {op["tags"][0] for item in spec["paths"].values() for op in item.values()}:
        assert f'<h2 id="tag-{tag}-h">{tag}</h2>' in page.text
    # one operation in full: access, parameters, the body's nested properties, its error codes
    publish = page.text[page.text.index('id="op-create_token"'):]
    publish = publish[:publish.index("</article>")]
    assert "Who may call it:" in publish and "needs a token" in publish
    assert "<h4>Request body</h4>" in publish and "<code>scopes</code>" in publish
    for code in ("unauthenticated", "invalid_json", "invalid_field"):
        assert f"<li><code>{code}</code>:" in publish
    # the table of every error code, and no script from anywhere
    codes = page.text[page.text.index('id="error-codes"'):]
    assert all(f"<code>{code}</code>" in codes for code in spec["x-error-codes"])
    assert not re.search(r"<script[^>]*src=\"(?!/static/)", page.text)
    # public, like the document; a client that asks for JSON gets the page all the same
    assert hub.client().get("/api/docs").status_code == 200
    assert hub.client().post("/api/docs").json()["error"]["code"] == "method_not_allowed"


def test_the_footer_links_the_reference(hub: LiveHub) -> None:
    assert {"href": "/api/docs"} in Tags(browser(hub).get("/").text).of("a")


@pytest.mark.parametrize("path", [
    "/nowhere/at/all/here/deep",  # an unknown namespace, five levels
    "/alice/detector/nope",  # a known package, one level under it
    "/alice/detector/v/1.1.0/nope",  # a known version, deeper
    "/alice/detector/v/1.1.0/images/nope.png",  # a known version, an image it does not have
    "/alice/detector/v/1.1.0/export/coco.zip/more",
    "/alice/missing/anything/else/x/y/z",  # an unknown package, deep
    "/alice/missing",
    "/alice/detector/v",
    "/zoo/classification/extra",
    "/settings/nothing",
    "/static/nothing.css",
])
def test_unknown_pages_are_the_sites_html_404(hub: LiveHub, detector: str, path: str) -> None:
    page = browser(hub).get(path)
    assert page.status_code == 404, path
    assert page.headers["content-type"].startswith("text/html"), (path, page.headers["content-type"])
    assert '<header class="site">' in page.text and "<h1>Not found</h1>" in page.text
    assert {"href": "/"} in Tags(page.text).of("a")


@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/v1/packages/alice/detector/nope/deeper", "/api/x",
                                  "/api/docs/more"])
def test_api_paths_keep_json_errors_for_browsers(hub: LiveHub, detector: str, path: str) -> None:
    r = browser(hub).get(path)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json"), path
    assert r.json()["error"]["code"] == "not_found"


def test_unknown_pages_for_non_browsers_are_still_404(hub: LiveHub) -> None:
    r = hub.client().get("/alice/missing/x")
    assert r.status_code == 404 and "<html" not in r.text


def test_search_matches_tags_in_the_api_and_the_site(hub: LiveHub) -> None:
    token = hub.create_user("alice")
    publish_direct(hub, token, "alice/finder", description="Finds things", tags=("faces", "outdoor"))
    publish_direct(hub, token, "alice/plain", description="Nothing in common", tags=("indoor",))
    publish_direct(hub, token, "alice/hidden", description="Secret", tags=("faces",), private=True)
    api = hub.client()

    def names(q: str, client=api) -> list[str]:  # type: ignore[no-untyped-def]
        r = client.get("/api/v1/packages", params={"q": q, "sort": "name"})
        assert r.status_code == 200, r.text
        return [p["name"] for p in r.json()["results"]]

    assert names("FACES") == ["alice/finder"], "a tag, any case; the private one stays hidden"
    assert names("outdo") == ["alice/finder"], "a part of a tag"
    assert names("door") == ["alice/finder", "alice/plain"]
    assert names("finds") == ["alice/finder"], "descriptions still match"
    assert api.get("/api/v1/packages", params={"q": "faces"}).json()["total"] == 1
    assert names("faces", hub.client(token)) == ["alice/finder", "alice/hidden"], "the owner sees both"
    bob = hub.user_client("bob")
    assert names("faces", bob) == ["alice/finder"]
    site = browser(hub).get("/search", params={"q": "faces"})
    assert listed(site.text) == ["alice/finder"] and "alice/hidden" not in site.text


def test_sign_in_page_says_how_accounts_are_made(hub: LiveHub) -> None:
    page = browser(hub).get("/login")
    assert page.status_code == 200
    assert "<code>cvflow-hub user create</code>" in page.text
    assert "administrator" in page.text
    assert "OpenID Connect" not in page.text, "no provider is configured on this hub"
    assert sign_in(browser(hub), "nobody").status_code in (200, 400, 401)


def test_sign_in_page_names_the_openid_connect_provider_when_one_is_configured(
        hub: LiveHub, monkeypatch: pytest.MonkeyPatch) -> None:
    providers = '[{"name": "corp", "title": "Corp SSO", "issuer": "http://127.0.0.1:9", "client_id": "x"}]'
    settings = dataclasses.replace(hub.context.settings, oidc_providers=providers)
    monkeypatch.setattr(hub.context, "settings", settings)  # the page reads the providers per request
    page = browser(hub).get("/login").text
    assert "<code>cvflow-hub user create</code>" in page
    assert "Signing in with Corp SSO" in page and "OpenID Connect" in page


def test_html_accept_header_is_what_picks_a_page(hub: LiveHub) -> None:
    assert hub.client().get("/alice/missing/x", headers=HTML).headers["content-type"].startswith("text/html")

"""In headless Chromium against a hub on loopback: the API reference (``/api/docs``) with its
table of contents and anchors, loading nothing from elsewhere; and on a phone (390x844) the
package page's shortened digests with their copy buttons and the home page's single search box.
Screenshots go to ``artifacts/screenshots/``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.conftest import running_hub
from tests.helpers import LiveHub
from tests.web.support import DESKTOP, PHONE, clipboard_context, publish_direct

WEIGHTS = b"\1" * 4096
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def site(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    with running_hub(make_settings("sqlite-file")) as live:
        token = live.create_user("alice")
        publish_direct(live, token, "alice/reader", description="Reads digits", files={
            "solver.py": b"class Reader:\n    def infer(self, image):\n        return []\n", "weights.bin": WEIGHTS},
            source_repository="https://example.org/alice/reader.git", source_commit=COMMIT)
        yield live


@pytest.fixture
def phone(chromium: Any, site: LiveHub) -> Iterator[Any]:
    with clipboard_context(chromium, site.url, **PHONE) as ctx:
        yield ctx


def loopback_only(page: Any) -> list[str]:
    """The hosts of every request the page makes, filled in as it makes them."""
    hosts: list[str] = []
    page.on("request", lambda request: hosts.append(urlsplit(request.url).hostname or request.url))
    return hosts


def test_api_reference_in_a_browser(chromium: Any, site: LiveHub, screenshots: Path) -> None:
    ctx = chromium.new_context(**DESKTOP)
    try:
        page = ctx.new_page()
        hosts = loopback_only(page)
        page.goto(site.url + "/")
        page.get_by_role("link", name="API reference").click()
        page.wait_for_url(site.url + "/api/docs")
        assert page.get_by_role("heading", level=1, name="CVFlow hub API reference").is_visible()
        for heading in ("Contents", "packages", "accounts", "health", "docs", "Error codes"):
            expect(page.get_by_role("heading", level=2, name=heading, exact=True)).to_be_visible()
        page.screenshot(path=str(screenshots / "api-docs.png"))
        # an operation's link in the table of contents scrolls to its anchor
        toc = page.get_by_role("navigation", name="Contents")
        toc.locator('a[href="#op-list_packages"]').click()
        page.wait_for_url(site.url + "/api/docs#op-list_packages")
        operation = page.locator("#op-list_packages")
        expect(operation).to_be_in_viewport()
        expect(operation.get_by_role("heading", level=3)).to_contain_text("/api/v1/packages")
        expect(operation).to_contain_text("Who may call it:")
        page.screenshot(path=str(screenshots / "api-docs-operation.png"))
        # an anchor typed in by hand lands there too
        page.goto(site.url + "/api/docs#op-healthz")
        expect(page.locator("#op-healthz")).to_be_in_viewport()
        assert hosts and set(hosts) == {"127.0.0.1"}, hosts
    finally:
        ctx.close()


def test_package_page_on_a_phone_shortens_digests_and_copies_them_whole(
        phone: Any, site: LiveHub, screenshots: Path) -> None:
    page = phone.new_page()
    hosts = loopback_only(page)
    page.goto(site.url + "/alice/reader")
    full = hashlib.sha256(WEIGHTS).hexdigest()
    row = page.get_by_role("row").filter(has_text="weights.bin")
    digest = row.locator("code.digest")
    # the cell shows the first 12 characters and an ellipsis: the code box is 13 characters wide
    widths = digest.evaluate("""el => {
        const probe = document.createElement('code');
        probe.className = 'digest'; probe.style.width = 'auto'; probe.textContent = 'x';
        el.parentNode.appendChild(probe);
        const one = probe.getBoundingClientRect().width; probe.remove();
        return {box: el.getBoundingClientRect().width, one, scroll: el.scrollWidth};
    }""")
    assert abs(widths["box"] - 13 * widths["one"]) < 1, widths
    assert widths["scroll"] > widths["box"], "the rest of the digest is cut off"
    assert digest.text_content() == full  # cut by the stylesheet only: the page keeps it whole
    expect(row.get_by_role("button", name="Copy")).to_be_visible()
    button = row.locator("button[data-copy]")  # by its name no longer, once it says "Copied"
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == full
    commit = page.get_by_role("complementary").locator("code.digest")
    assert commit.text_content() == COMMIT
    page.locator('button[data-copy="source-commit"]').click()
    expect(page.locator('button[data-copy="source-commit"]')).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == COMMIT
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(screenshots / "package-phone-digests.png"), full_page=True)
    assert set(hosts) == {"127.0.0.1"}, hosts


def test_desktop_package_page_shows_digests_whole_without_buttons(chromium: Any, site: LiveHub) -> None:
    ctx = chromium.new_context(**DESKTOP)
    try:
        page = ctx.new_page()
        page.goto(site.url + "/alice/reader")
        row = page.get_by_role("row").filter(has_text="weights.bin")
        expect(row.get_by_role("button", name="Copy")).to_be_hidden()
        digest = row.locator("code.digest")
        assert digest.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
    finally:
        ctx.close()


def test_home_page_on_a_phone_has_one_search_box(phone: Any, site: LiveHub, screenshots: Path) -> None:
    page = phone.new_page()
    page.goto(site.url + "/")
    boxes = page.get_by_role("searchbox")
    expect(boxes).to_have_count(1)
    expect(page.get_by_role("searchbox", name="Search the hub")).to_be_visible()
    page.get_by_role("searchbox", name="Search the hub").fill("digits")
    page.get_by_role("searchbox", name="Search the hub").press("Enter")
    page.wait_for_url("**/search?q=digits")
    page.goto(site.url + "/")
    page.screenshot(path=str(screenshots / "home-phone-one-search.png"), full_page=True)
    # other pages keep the header's box
    page.goto(site.url + "/zoo")
    expect(page.get_by_role("searchbox", name="Search packages")).to_be_visible()

"""The website in headless Chromium (Debian's, driven by Playwright) against a hub on loopback:
a visitor finds a model and copies its install line, a user signs in and makes a token, and the
pages work from the keyboard and on a phone. Screenshots of the key pages go to
``artifacts/screenshots/`` for CI to keep."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from hub.security import TOKEN_PREFIX
from tests.conftest import running_hub
from tests.helpers import PASSWORD, LiveHub
from tests.web.support import DESKTOP, PHONE, SOLVER, clipboard_context, publish_direct

README = b"""# Reading handwritten digits

A LeNet-style network trained on the scikit-learn digits.

## Use

```
cvflow run alice/digits-lenet
```
"""
ZOO = {"alice/digits-lenet": (0.97, 0.8, 2), "alice/resnet-lite": (0.76, 8.5, 98), "alice/vit-small": (0.81, 30, 330)}


@pytest.fixture(scope="module")
def site(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    """One hub for the module, seeded once: three classifiers with metrics, a detector, a private model."""
    with running_hub(make_settings("sqlite-file")) as live:
        token = live.create_user("alice")
        for name, (acc, lat, mem) in ZOO.items():
            publish_direct(live, token, name, task="classification", description=f"{name.split('/')[1]} classifier",
                           files={"solver.py": SOLVER, "README.md": README} if "digits" in name else None,
                           extra=f'framework = "torch"\n\n[metrics]\naccuracy = {acc}\nlatency_ms = {lat}\nmemory_mb = {mem}')
        publish_direct(live, token, "alice/face-finder", description="Finds faces in photos", tags=("faces",))
        publish_direct(live, token, "alice/private-model", private=True, description="Not for everyone")
        yield live


@pytest.fixture
def context(chromium: Any, site: LiveHub) -> Iterator[Any]:
    with clipboard_context(chromium, site.url, **DESKTOP) as ctx:
        yield ctx


def shoot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def sign_in(page: Any, site: LiveHub, user: str = "alice") -> None:
    page.goto(site.url + "/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(site.url + "/")


def test_visitor_finds_a_model_reads_it_copies_the_install_line_and_sees_the_zoo(
        context: Any, site: LiveHub, screenshots: Path) -> None:
    page = context.new_page()
    page.goto(site.url + "/")
    assert page.get_by_role("heading", name="Recently updated").is_visible()
    shoot(page, screenshots, "home")

    box = page.get_by_role("searchbox", name="Search the hub")
    box.fill("digits")
    box.press("Enter")
    page.wait_for_url("**/search?q=digits")
    assert page.get_by_text("1 package", exact=True).is_visible()
    shoot(page, screenshots, "search")

    page.get_by_role("link", name="alice/digits-lenet").click()
    page.wait_for_url(site.url + "/alice/digits-lenet")
    assert page.get_by_role("heading", name="Reading handwritten digits").is_visible()
    assert page.get_by_text("A LeNet-style network trained on the scikit-learn digits.").is_visible()

    copy = page.locator('button[data-copy="install-line"]')
    copy.click()
    expect(copy).to_have_text("Copied")  # after the clipboard write resolves
    assert page.evaluate("navigator.clipboard.readText()") == "cvflow install alice/digits-lenet@1.0.0"
    page.locator('button[data-copy="run-line"]').click()
    expect(page.locator('button[data-copy="run-line"]')).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "cvflow run alice/digits-lenet@1.0.0 --port 8765"
    shoot(page, screenshots, "package")

    page.get_by_role("link", name="Model zoo").click()
    page.get_by_role("link", name="classification").click()
    page.wait_for_url(site.url + "/zoo/classification")
    assert page.locator("svg.chart circle").count() == len(ZOO)
    assert page.locator("table tbody tr").count() == len(ZOO)
    assert page.get_by_role("img", name="Accuracy against latency; bubble area shows memory").is_visible()
    shoot(page, screenshots, "zoo")


def test_user_signs_in_makes_a_token_and_sees_a_private_package(
        context: Any, chromium: Any, site: LiveHub, screenshots: Path) -> None:
    page = context.new_page()
    page.goto(site.url + "/settings/tokens")
    page.wait_for_url("**/login?next=/settings/tokens")
    shoot(page, screenshots, "sign-in")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(site.url + "/settings/tokens")

    page.get_by_label("Name", exact=True).fill("ci-runner")
    page.get_by_label("publish", exact=True).check()
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_label("New token").input_value()
    assert secret.startswith(TOKEN_PREFIX) and len(secret) > 30
    assert page.get_by_role("status").get_by_text("shown only once").is_visible()
    shoot(page, screenshots, "tokens")
    r = site.client(secret).get("/api/v1/whoami")
    assert r.status_code == 200 and r.json()["name"] == "alice"

    page.goto(site.url + "/settings/tokens")
    assert page.get_by_label("New token").count() == 0 and secret not in page.content()
    assert page.get_by_role("cell", name="ci-runner", exact=True).is_visible()

    response = page.goto(site.url + "/alice/private-model")
    assert response.status == 200
    assert page.get_by_role("heading", name="alice/private-model").is_visible()

    stranger = chromium.new_context()
    try:
        other = stranger.new_page()
        response = other.goto(site.url + "/alice/private-model")
        assert response.status == 404
        assert other.get_by_role("heading", name="Not found").is_visible()
        assert "Not for everyone" not in other.content()
        other.goto(site.url + "/search?q=model")
        assert other.get_by_role("link", name="alice/private-model").count() == 0
    finally:
        stranger.close()


def test_keyboard_reaches_the_skip_link_first_and_inputs_are_labelled(context: Any, site: LiveHub) -> None:
    page = context.new_page()
    page.goto(site.url + "/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"
    skip = page.get_by_role("link", name="Skip to content").bounding_box()
    assert skip and skip["x"] >= 0 and skip["y"] >= 0  # on screen once focused
    page.keyboard.press("Enter")
    assert page.url.endswith("#main")

    assert page.get_by_role("searchbox", name="Search packages").count() == 1
    assert page.get_by_role("searchbox", name="Search the hub").count() == 1
    page.goto(site.url + "/search?q=x")
    for label in ("Text", "Task", "Tag", "Framework", "Sort"):
        assert page.get_by_label(label, exact=True).count() == 1, label
    # Every form control on the main pages has an accessible name.
    for path in ("/", "/search", "/login", "/alice/digits-lenet"):
        page.goto(site.url + path)
        unnamed = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, button')]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
            .map(el => el.outerHTML)""")
        assert unnamed == [], (path, unnamed)


def test_package_page_fits_a_phone(chromium: Any, site: LiveHub, screenshots: Path) -> None:
    phone = chromium.new_context(**PHONE)
    try:
        page = phone.new_page()
        for path, name in (("/alice/digits-lenet", "package-phone"), ("/", "home-phone"),
                           ("/zoo/classification", None)):
            page.goto(site.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (path, width)  # no sideways scrolling
            if name:
                shoot(page, screenshots, name)
    finally:
        phone.close()

"""Fixtures for the website tests: a headless Chromium (Debian's, driven by Playwright) shared by
the session, the folder the screenshots go to (``artifacts/``, which git ignores), and a package
with everything a package page shows."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LiveHub
from tests.web.support import ARTIFACTS, README, publish_direct, yank_direct

# Authlib 1.9 warns at import that it will move from httpx to "httpx2" one day, and installs an
# "always" filter for its own warnings; nothing here can act on it, so it is imported quietly once.
with warnings.catch_warnings():
    import authlib.deprecate  # noqa: F401  (installs the "always" filter, which the next line overrides)

    warnings.simplefilter("ignore")
    import authlib.integrations.starlette_client  # noqa: F401

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run scripts/browser (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def detector(hub: LiveHub) -> str:
    """alice/detector 1.0.0 (yanked) and 1.1.0 with a README, a dependency and a dependent."""
    token = hub.create_user("alice")
    publish_direct(hub, token, "alice/base")
    files = {"solver.py": b"class Detector: pass\n", "README.md": README, "weights.bin": b"\0" * 2048}
    for version in ("1.0.0", "1.1.0"):
        publish_direct(hub, token, "alice/detector", version, files=files, dependencies={"alice/base": "^1.0"},
                       extra='framework = "torch"',
                       solver_extra='inputs = { image = "image: a photo", min_score = "number" }\n'
                                    'outputs = { boxes = "faces as [x, y, w, h]" }')
    yank_direct(hub, token, "alice/detector", "1.0.0", "wrong labels")
    publish_direct(hub, token, "alice/app", dependencies={"alice/detector": ">=1.0"})
    return "alice/detector"

"""The documentation keeps up with the code: every hub setting has its row in docs/configuration.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hub.settings import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [f.name for f in dataclasses.fields(Settings) if f"`CVFLOW_HUB_{f.name.upper()}`" not in text]
    assert missing == [], f"add these to docs/configuration.md: {missing}"

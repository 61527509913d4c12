"""docs/datasets.md lists every problem code the dataset code can raise."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_problem_code_is_documented() -> None:
    sources = [*(ROOT / "client" / "cvflow" / "datasets").glob("*.py"), ROOT / "client/cvflow/manifest/dataset.py"]
    codes = {m for p in sources for m in re.findall(r'(?:fail|add|_bad|Problem)\(\s*"([a-z_]+)"', p.read_text())}
    assert len(codes) > 30
    docs = (ROOT / "docs" / "datasets.md").read_text()
    assert sorted(c for c in codes if f"`{c}`" not in docs) == []

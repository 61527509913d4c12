from __future__ import annotations

from pathlib import Path

import pytest

from cvflow.datasets import Dataset, write_package
from tests.datasets.synth import build_detection


@pytest.fixture(scope="session")
def detection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Path]:
    """The synthetic detection dataset and its package in the canonical layout (read-only: copy to change)."""
    root = tmp_path_factory.mktemp("detection")
    ds = build_detection(root)
    write_package(ds, root / "pkg", name="alice/digits", version="1.0.0", license="CC0-1.0")
    return ds, root / "pkg"

"""Start the runner with a package venv's Python: ``python -I .../cvflow/runner/_boot.py ARGS``.

A package's virtual environment has the package's requirements and nothing of the client's
(no click, no httpx). This makes *this* ``cvflow`` package importable there, and only it:
its parent folder is not put on ``sys.path`` (it may be a site-packages full of the
client's dependencies). The runner and ``cvflow.solver`` need the standard library alone,
plus Pillow for images.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def install_cvflow() -> None:
    """Register ``cvflow`` (the folder above this file) in ``sys.modules`` without touching ``sys.path``."""
    if "cvflow" in sys.modules:
        return
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("cvflow", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cvflow"] = module
    spec.loader.exec_module(module)


if __name__ == "__main__":
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p != here]  # without -I/-P Python puts this folder first
    install_cvflow()
    from cvflow.runner.__main__ import main

    sys.exit(main())

"""Start a trainer with a package venv's Python: ``python -I -u .../cvflow/training/_boot.py --spec SPEC.json``.

Like ``cvflow/runner/_boot.py`` (whose :func:`install_cvflow` it uses): the package's venv has
the package's requirements and nothing of the client's, so *this* ``cvflow`` is made importable
there without its parent folder (perhaps a site-packages full of the client's dependencies) on
``sys.path``. :mod:`cvflow.training.runtime` then needs the standard library alone. Under
``torchrun`` each rank runs this file (without ``-I``: torchrun starts its workers itself).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def install_cvflow() -> None:
    """Register ``cvflow`` (two folders up) in ``sys.modules``, with the runner boot's helper."""
    boot = Path(__file__).resolve().parent.parent / "runner" / "_boot.py"
    spec = importlib.util.spec_from_file_location("_cvflow_runner_boot", boot)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install_cvflow()


if __name__ == "__main__":
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p != here]  # without -I/-P Python puts this folder first
    install_cvflow()
    from cvflow.training.runtime import main

    sys.exit(main())

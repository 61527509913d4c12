"""The import hook put in every package venv: it makes this client's ``cvflow`` package (and only
it, not the client's dependencies) importable there, since solvers are written against
``cvflow.solver``. A ``cvflow`` that the package's requirements install wins over it.

Why a hook and not a runtime distribution installed into each venv: docs/runner.md."""

from __future__ import annotations

from pathlib import Path

LINK_NAME = "_cvflow_link"


#: Put in every package venv: finds ``cvflow`` in this client's folder, and nothing else from
#: there, after every other finder (so an installed ``cvflow`` wins). Nothing is imported at start.
_LINK_SOURCE = '''"""Written by `cvflow install`: makes the cvflow client at ROOT importable as ``cvflow``."""
import importlib.util
import sys

ROOT = {root!r}


class CvflowFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "cvflow":
            return None
        return importlib.util.spec_from_file_location("cvflow", ROOT + "/__init__.py",
                                                      submodule_search_locations=[ROOT])


if not any(getattr(f, "__name__", "") == "CvflowFinder" for f in sys.meta_path):
    sys.meta_path.append(CvflowFinder)
'''


def write_link(site_packages: Path) -> None:
    root = str(Path(__file__).resolve().parent.parent)  # the cvflow package folder
    (site_packages / f"{LINK_NAME}.py").write_text(_LINK_SOURCE.format(root=root))
    (site_packages / f"{LINK_NAME}.pth").write_text(f"import {LINK_NAME}\n")

"""Run solver code written for the original CVPM runtime (2019) unchanged.

A 2019 solver subclasses ``cvpm.solver.Solver``, calls ``self.set_ready()``, reads its upload
with ``cvpm.utility.load_image_file`` and has ``infer(self, image_file, config)``: a path and a
dict of the other form fields. This package gives such code what it imports and how it is called:

| module | what it holds |
| --- | --- |
| ``cvpm/`` | the ``cvpm`` package such code imports: ``solver``, ``utility``, ``bundle`` |
| ``adapter`` | telling a 2019 solver by its ``infer``; the call that writes the upload to a file |

Why a finder added by the runner rather than the venv's import hook (``cvflow.install.hook``):
the shim is needed only where solver code runs, which is the runner, and only for packages whose
manifest came from ``cvpm.toml`` (their ``cvflow.toml`` has ``[tool.cvpm]``). The runner knows
both when it reads the manifest, so packages installed before this shim existed get it too, no
venv carries state for it, and a package that is not legacy never sees a ``cvpm`` it did not ask
for. The finder goes last on ``sys.meta_path``, so a real ``cvpm`` distribution that the
package's requirements install (or a ``cvpm/`` folder in the package) wins over it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: The folder holding the shim's ``cvpm`` package.
SHIM_DIR = Path(__file__).resolve().parent / "cvpm"


class CvpmShimFinder:
    """Finds ``cvpm`` (the shim) when nothing before it on ``sys.meta_path`` did; its submodules
    are found inside it by the ordinary path finder."""

    @classmethod
    def find_spec(cls, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != "cvpm":
            return None
        return importlib.util.spec_from_file_location("cvpm", SHIM_DIR / "__init__.py",
                                                      submodule_search_locations=[str(SHIM_DIR)])


def install_finder() -> None:
    """Make the shim importable as ``cvpm`` in this process (once; after every other finder)."""
    if CvpmShimFinder not in sys.meta_path:
        sys.meta_path.append(CvpmShimFinder)

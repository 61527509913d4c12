"""The package manifest: ``cvflow.toml``, and the legacy CVPM pair it replaces.

The full schema is in ``client/README.md``. Parsing collects *every* problem into one
``ManifestError`` so an author fixes a manifest in one round. Unknown keys are
problems (they are usually typos), except under a top-level ``[tool]`` table, which
is left for other tools.

Legacy CVPM packages have ``cvpm.toml`` and optionally ``pretrained.toml``;
``parse_cvpm`` maps them onto a ``Manifest`` with ``legacy=True`` (see its docstring).

The names below are loaded on first use (PEP 562), so importing one submodule does not import
the others: ``cvflow.manifest.suggest`` (standard library only) is imported by the runner in a
package's venv, where the client's own libraries (``tomli_w``, ``packaging``) are absent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cvflow.manifest.dataset import DATASET_TASKS, KINDS, DatasetInfo
    from cvflow.manifest.load import check_files_against_manifest, load_package_dir, parse_cvpm, parse_manifest
    from cvflow.manifest.model import (
        DEFAULT_README,
        LEGACY_MANIFEST_FILENAME,
        LEGACY_WEIGHTS_FILENAME,
        MANIFEST_FILENAME,
        TASKS,
        WEIGHT_FORMATS,
        BatchPolicy,
        Manifest,
        Solver,
        Weight,
    )
    from cvflow.manifest.suggest import Suggest
    from cvflow.manifest.training import Hyperparameter, Lineage, Trainer

#: Each exported name and the submodule it lives in.
_WHERE = {
    **dict.fromkeys(("DATASET_TASKS", "KINDS", "DatasetInfo"), "dataset"),
    **dict.fromkeys(("check_files_against_manifest", "load_package_dir", "parse_cvpm", "parse_manifest"), "load"),
    **dict.fromkeys(("DEFAULT_README", "LEGACY_MANIFEST_FILENAME", "LEGACY_WEIGHTS_FILENAME", "MANIFEST_FILENAME",
                     "TASKS", "WEIGHT_FORMATS", "BatchPolicy", "Manifest", "Solver", "Weight"), "model"),
    "Suggest": "suggest",
    **dict.fromkeys(("Hyperparameter", "Lineage", "Trainer"), "training"),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DATASET_TASKS",
    "DEFAULT_README",
    "KINDS",
    "LEGACY_MANIFEST_FILENAME",
    "LEGACY_WEIGHTS_FILENAME",
    "MANIFEST_FILENAME",
    "TASKS",
    "WEIGHT_FORMATS",
    "BatchPolicy",
    "DatasetInfo",
    "Hyperparameter",
    "Lineage",
    "Manifest",
    "Solver",
    "Suggest",
    "Trainer",
    "Weight",
    "check_files_against_manifest",
    "load_package_dir",
    "parse_cvpm",
    "parse_manifest",
]

"""The package manifest: ``cvflow.toml``, and the legacy CVPM pair it replaces.

The full schema is in ``client/README.md``. Parsing collects *every* problem into one
``ManifestError`` so an author fixes a manifest in one round. Unknown keys are
problems (they are usually typos), except under a top-level ``[tool]`` table, which
is left for other tools.

Legacy CVPM packages have ``cvpm.toml`` and optionally ``pretrained.toml``;
``parse_cvpm`` maps them onto a ``Manifest`` with ``legacy=True`` (see its docstring).
"""

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

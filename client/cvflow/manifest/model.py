"""The manifest's data: constants and the Manifest, Solver, Weight and BatchPolicy classes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from cvflow.errors import ManifestError
from cvflow.manifest.dataset import DatasetInfo
from cvflow.manifest.suggest import Suggest
from cvflow.manifest.training import Lineage, Trainer
from cvflow.names import PackageName
from cvflow.solver import declared_input
from cvflow.versions import Version, VersionRange

MANIFEST_FILENAME = "cvflow.toml"
LEGACY_MANIFEST_FILENAME = "cvpm.toml"
LEGACY_WEIGHTS_FILENAME = "pretrained.toml"
DEFAULT_README = "README.md"
TASKS = frozenset(
    {
        "classification",
        "detection",
        "segmentation",
        "keypoints",
        "ocr",
        "embedding",
        "generation",
        "tracking",
        "depth",
        "other",
    }
)
WEIGHT_FORMATS = ("safetensors", "pickle", "onnx", "other")
# Suffixes that mean pickle are guessed as pickle: loading a pickle runs code, so
# an unknown-but-likely pickle must need the author's explicit allow_pickle.
_FORMAT_BY_SUFFIX = {
    ".safetensors": "safetensors", ".onnx": "onnx", ".pt": "pickle", ".pth": "pickle",
    ".pkl": "pickle", ".pickle": "pickle", ".ckpt": "pickle", ".bin": "pickle",
    ".joblib": "pickle",
}  # fmt: skip
_PACKAGE_KEYS = (
    "name",
    "version",
    "description",
    "license",
    "task",
    "tags",
    "readme",
    "homepage",
    "repository",
    "python",
    "requirements",
    "framework",
    "allow_pickle",
    "kind",
)
_SECTIONS = ("package", "dependencies", "solvers", "weights", "metrics", "dataset", "trainers", "lineage", "tool")
_SOLVER_NAME_RE = re.compile(r"\A[a-z0-9_-]{1,64}\Z")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: ``module.path:ClassName``, or the file form ``path/to/file.py:ClassName`` (a file the runner loads by
#: its path, for directories that are not Python identifiers, as legacy CVPM packages have).
_FILE = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
_CLASS_RE = re.compile(rf"\A(?:{_IDENT}(?:\.{_IDENT})*|(?:{_FILE}/)*{_FILE}\.py):{_IDENT}\Z")
_IO_NAME_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_TAG_RE = re.compile(r"\A[a-z0-9-]{1,32}\Z")
_LICENSE_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9.+:() -]{0,127}\Z")
_METRIC_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")
MAX_DESCRIPTION = 512
MAX_TAGS = 20
#: The kinds of solver input, as the runner reads them from ``infer``'s type hints.
INPUT_KINDS = ("image", "images", "integer", "number", "string", "boolean")
MAX_IO_FIELDS = 32


@dataclass(frozen=True)
class BatchPolicy:
    """How a runner may group requests to one solver: up to ``max_size`` requests,
    waiting at most ``max_wait_ms`` for a batch to fill."""

    max_size: int
    max_wait_ms: float = 0.0


@dataclass(frozen=True)
class Solver:
    """A solver class the package exposes; ``class_path`` is ``"module.path:ClassName"``."""

    name: str
    class_path: str
    description: str | None = None
    batch: BatchPolicy | None = None
    #: Declared interface, shown by the hub without running code: input name -> "kind" or
    #: "kind: description" (kinds in INPUT_KINDS; the runner checks them against ``infer``),
    #: output name -> description.
    inputs: dict[str, str] = field(default_factory=dict, hash=False)
    outputs: dict[str, str] = field(default_factory=dict, hash=False)
    #: Where its output holds labels for an annotation project (``cvflow.manifest.suggest``).
    suggest: Suggest | None = None

    def input_kinds(self) -> dict[str, str]:
        return {k: declared_input(v)[0] for k, v in self.inputs.items()}

    @property
    def module(self) -> str:
        return self.class_path.partition(":")[0]

    @property
    def class_name(self) -> str:
        return self.class_path.partition(":")[2]


@dataclass(frozen=True)
class Weight:
    """A weight file: ``path`` in the package, fetched from ``url`` when one is given."""

    path: str
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    format: str = "other"


@dataclass
class Manifest:
    """A parsed, valid manifest. Build one with ``parse_manifest`` or ``from_dict``."""

    name: PackageName
    version: Version
    description: str
    license: str | None = None
    task: str | None = None
    tags: list[str] = field(default_factory=list)
    readme: str | None = None  # None: not set; the package's README.md is used if present
    homepage: str | None = None
    repository: str | None = None
    python: str | None = None
    requirements: list[str] = field(default_factory=list)
    framework: str | None = None
    dependencies: dict[str, VersionRange] = field(default_factory=dict)
    solvers: list[Solver] = field(default_factory=list)
    weights: list[Weight] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    allow_pickle: bool = False
    legacy: bool = False  # read from cvpm.toml: URL weights may lack sha256 and size
    kind: str = "model"  # or "dataset" (docs/datasets.md)
    dataset: DatasetInfo | None = None  # the [dataset] table, exactly when kind == "dataset"
    #: How the package fine-tunes (``[[trainers]]``, docs/training.md).
    trainers: list[Trainer] = field(default_factory=list)
    #: Where a fine-tuned version came from (``[lineage]``, written by ``cvflow finetune``).
    lineage: Lineage | None = None

    def trainer(self, name: str | None = None) -> Trainer | None:
        """The trainer called ``name``, or the first one when ``name`` is None."""
        return next((t for t in self.trainers if name is None or t.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON-serialisable form; ``Manifest.from_dict`` reads it back."""
        return {
            "name": str(self.name), "version": str(self.version),
            "description": self.description, "license": self.license, "task": self.task,
            "tags": list(self.tags), "readme": self.readme, "homepage": self.homepage,
            "repository": self.repository, "python": self.python,
            "requirements": list(self.requirements), "framework": self.framework,
            "allow_pickle": self.allow_pickle, "legacy": self.legacy,
            "dependencies": {k: str(v) for k, v in self.dependencies.items()},
            "solvers": [
                {"name": s.name, "class": s.class_path, "description": s.description,
                 "batch": None if s.batch is None else
                 {"max_size": s.batch.max_size, "max_wait_ms": s.batch.max_wait_ms},
                 "inputs": dict(s.inputs) or None, "outputs": dict(s.outputs) or None,
                 "suggest": None if s.suggest is None else s.suggest.to_dict()}
                for s in self.solvers
            ],
            "weights": [
                {"path": w.path, "url": w.url, "sha256": w.sha256, "size": w.size,
                 "format": w.format}
                for w in self.weights
            ],
            "metrics": dict(self.metrics),
            "kind": self.kind,
            "dataset": None if self.dataset is None else self.dataset.to_dict(),
            "trainers": [t.to_dict() for t in self.trainers],
            "lineage": None if self.lineage is None else self.lineage.to_dict(),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Rebuild a manifest from ``to_dict`` output, checking it like a manifest file.

        Raises:
            ManifestError: with every problem found.
        """
        if not isinstance(data, dict):
            raise ManifestError("manifest must be an object")
        sections = {"dependencies", "solvers", "weights", "metrics", "dataset", "trainers", "lineage", "legacy"}
        table: dict[str, Any] = {
            "package": {k: v for k, v in data.items() if k not in sections and v is not None}
        }
        for key in ("dependencies", "solvers", "weights", "metrics", "dataset", "trainers", "lineage"):
            value = data.get(key)
            if isinstance(value, list | dict) and key in ("dataset", "lineage"):
                value = _drop_none(value)
            if isinstance(value, list):
                value = [_drop_none(x) for x in value]
            if value is not None:
                table[key] = value
        from cvflow.manifest.checks import build_manifest  # checks builds Manifests: import late

        return build_manifest(table, legacy=data.get("legacy") is True, source="manifest")

    def to_toml(self) -> str:
        """The manifest as ``cvflow.toml`` text (what ``cvflow init`` writes).

        A legacy manifest's URL weights without ``sha256``/``size`` come out without
        them too, so that text passes ``parse_manifest`` only once they are added.
        """
        d = self.to_dict()
        table: dict[str, Any] = {"package": {k: d[k] for k in _PACKAGE_KEYS if d[k] and (k, d[k]) != ("kind", "model")}}
        for key in ("dependencies", "solvers", "weights", "metrics", "dataset", "trainers", "lineage"):
            if d[key]:
                table[key] = [_drop_none(x) for x in d[key]] if isinstance(d[key], list) else d[key]
        return tomli_w.dumps(table)

    def readme_path(self, paths: Iterable[str]) -> str | None:
        """The README to show: ``readme`` if set, else ``README.md`` if it is in ``paths``."""
        if self.readme is not None:
            return self.readme
        return DEFAULT_README if DEFAULT_README in set(paths) else None


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value



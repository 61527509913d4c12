"""Reading manifests: cvflow.toml text, the legacy CVPM pair, a package directory."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from cvflow.errors import ManifestError, Problem
from cvflow.manifest.checks import build_manifest
from cvflow.manifest.dataset import check_dataset_files
from cvflow.manifest.model import (
    LEGACY_MANIFEST_FILENAME,
    LEGACY_WEIGHTS_FILENAME,
    MANIFEST_FILENAME,
    Manifest,
)
from cvflow.paths import FileEntry
from cvflow.safeparse import TooDeepError, loads_toml


def _load_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return loads_toml(text.removeprefix("\ufeff"))
    except TooDeepError as exc:
        raise ManifestError(
            f"{source} is nested too deep", [Problem("too_deep", "", f"{source}: {exc}")]
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(
            f"{source} is not valid TOML", [Problem("toml_syntax", "", f"{source}: {exc}")]
        ) from exc


def parse_manifest(text: str, *, source: str = MANIFEST_FILENAME) -> Manifest:
    """Parse ``cvflow.toml`` text; ``source`` names it in messages.

    Raises:
        ManifestError: with every problem found (a TOML syntax error is one problem
            whose message carries the line and column).
    """
    return build_manifest(_load_toml(text, source), legacy=False, source=source)


def parse_cvpm(cvpm_text: str, pretrained_text: str | None, *, namespace: str) -> Manifest:
    """Read a legacy CVPM package (``cvpm.toml`` + optional ``pretrained.toml``).

    The bare ``[package] name`` is lowercased and put under ``namespace``; ``author``
    and other unknown keys are ignored. Each ``[[solvers]]`` keeps ``name``
    (lowercased, spaces to ``-``) and ``class``; a dotted ``module.Class`` becomes
    ``module:Class``. Each ``[[models]]`` of pretrained.toml becomes
    ``Weight(path="weights/<name>", url=<url>)``, its ``sha256`` and ``size`` taken
    when present and otherwise left None. CVPM weights were pickles, so the result
    has ``allow_pickle=True`` and ``legacy=True``.

    Raises:
        ManifestError: with every problem found.
    """
    cvpm = _load_toml(cvpm_text, LEGACY_MANIFEST_FILENAME)
    pretrained = _load_toml(pretrained_text, LEGACY_WEIGHTS_FILENAME) if pretrained_text else {}
    raw_package = cvpm.get("package")
    pkg: dict[str, Any] = raw_package if isinstance(raw_package, dict) else {}
    package: dict[str, Any] = {k: pkg[k] for k in ("version", "description", "license") if k in pkg}
    if isinstance(pkg.get("name"), str):
        package["name"] = f"{namespace}/{pkg['name'].strip().lower()}"
    solvers = []
    for solver in cvpm.get("solvers", []) if isinstance(cvpm.get("solvers"), list) else []:
        solver = dict(solver) if isinstance(solver, dict) else {}
        if isinstance(solver.get("name"), str):
            solver["name"] = solver["name"].strip().lower().replace(" ", "-")
        cls = solver.get("class")
        if isinstance(cls, str) and ":" not in cls and "." in cls:
            module, _, cls_name = cls.rpartition(".")
            solver["class"] = f"{module}:{cls_name}"
        solvers.append({k: solver.get(k) for k in ("name", "class") if k in solver})
    weights = []
    models = pretrained.get("models", [])
    for model in models if isinstance(models, list) else []:
        model = model if isinstance(model, dict) else {}
        weight = {k: model[k] for k in ("url", "sha256", "size") if k in model}
        if isinstance(model.get("name"), str):
            weight["path"] = f"weights/{model['name']}"
        weights.append(weight)
    table = {"package": package, "solvers": solvers, "weights": weights}
    return build_manifest(table, legacy=True, source=LEGACY_MANIFEST_FILENAME)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc


def load_package_dir(path: str | Path, *, namespace: str | None = None) -> Manifest:
    """Read the manifest of the package in directory ``path``.

    ``cvflow.toml`` wins; otherwise a legacy ``cvpm.toml`` (+ ``pretrained.toml``)
    is read, which needs ``namespace`` because CVPM names have none.

    Raises:
        ManifestError: if there is no manifest, a legacy one without ``namespace``,
            or the manifest is invalid.
    """
    root = Path(path)
    manifest_file = root / MANIFEST_FILENAME
    if manifest_file.is_file():
        return parse_manifest(_read_text(manifest_file), source=str(manifest_file))
    legacy_file = root / LEGACY_MANIFEST_FILENAME
    if not legacy_file.is_file():
        raise ManifestError(
            f"no {MANIFEST_FILENAME} (or legacy {LEGACY_MANIFEST_FILENAME}) in {root}"
        )
    if namespace is None:
        raise ManifestError(
            f"{legacy_file} is a legacy CVPM manifest without a namespace;"
            " give one (--namespace) to read it"
        )
    weights_file = root / LEGACY_WEIGHTS_FILENAME
    pretrained = _read_text(weights_file) if weights_file.is_file() else None
    return parse_cvpm(_read_text(legacy_file), pretrained, namespace=namespace)


def check_files_against_manifest(manifest: Manifest, files: list[FileEntry]) -> list[Problem]:
    """Problems between a manifest and the package's files (empty when consistent).

    The manifest file must be there, an explicit ``readme`` must be there, and every
    weight without a ``url`` must be there; where a weight states ``sha256`` or
    ``size`` and its file is there, they must match. A dataset's ``images/<split>/`` file
    counts and ``annotations/<split>.json`` files must match its ``[dataset]`` splits.
    """
    by_path = {f.path: f for f in files}
    dataset_problems = [] if manifest.dataset is None else check_dataset_files(manifest.dataset, files)
    required = [LEGACY_MANIFEST_FILENAME] if manifest.legacy else [MANIFEST_FILENAME]
    if manifest.legacy and manifest.weights:
        required.append(LEGACY_WEIGHTS_FILENAME)
    problems = [
        Problem("missing_file", "files", f"{name} is not in the package")
        for name in required
        if name not in by_path
    ]
    if manifest.readme is not None and manifest.readme not in by_path:
        problems.append(
            Problem(
                "missing_file",
                "package.readme",
                f"readme {manifest.readme!r} is not in the package",
            )
        )
    for i, w in enumerate(manifest.weights):
        entry = by_path.get(w.path)
        if entry is None:
            if w.url is None:
                problems.append(
                    Problem(
                        "missing_file",
                        f"weights[{i}].path",
                        f"weight {w.path!r} is not in the package and has no url",
                    )
                )
            continue
        if w.sha256 is not None and w.sha256 != entry.sha256:
            problems.append(
                Problem(
                    "invalid_digest",
                    f"weights[{i}].sha256",
                    f"sha256 of {w.path!r} does not match the file",
                )
            )
        if w.size is not None and w.size != entry.size:
            problems.append(
                Problem(
                    "invalid_size",
                    f"weights[{i}].size",
                    f"{w.path!r} is {entry.size} bytes, not {w.size}",
                )
            )
    return problems + dataset_problems


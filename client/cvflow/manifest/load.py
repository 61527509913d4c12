"""Reading manifests: cvflow.toml text, the legacy CVPM pair, a package directory."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path
from typing import Any

from cvflow.errors import ManifestError, Problem
from cvflow.manifest.checks import build_manifest
from cvflow.manifest.cvpm import REQUIREMENTS_FILENAME, parse_cvpm_table, read_requirements
from cvflow.manifest.dataset import check_dataset_files
from cvflow.manifest.model import (
    LEGACY_MANIFEST_FILENAME,
    LEGACY_WEIGHTS_FILENAME,
    MANIFEST_FILENAME,
    Manifest,
)
from cvflow.names import NAMESPACE_RE, RESERVED_NAMESPACES
from cvflow.paths import FileEntry
from cvflow.safeparse import TooDeepError, loads_toml

log = logging.getLogger("cvflow.manifest")


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


def parse_cvpm(cvpm_text: str, pretrained_text: str | None, *, namespace: str, version: str | None = None,
               requirements: list[str] | None = None, source: str | None = None) -> Manifest:
    """Read a legacy CVPM package (``cvpm.toml`` + optional ``pretrained.toml``).

    The ``[package] name`` becomes ``namespace/<name>`` by ``legacy_package_name``
    (``Face_utility`` -> ``face-utility``); when that changes it, the original is kept at the
    start of the description. ``version`` (the git tag's) is used when the file has none.
    ``requirements`` are the package's Python requirements (read from ``requirements.txt`` by
    ``cvflow.manifest.cvpm.read_requirements``). ``source`` (where it was indexed from) goes into
    a missing description. ``author``, ``vendor``, ``before_install`` and other unknown keys are
    not manifest fields (``legacy_tool_table`` keeps the three for ``[tool.cvpm]``). Each
    ``[[solvers]]`` keeps ``name`` (lowercased, spaces to ``-``) and ``class``, mapped by
    ``legacy_class_path`` (``dir/file/Class`` -> ``dir.file:Class``, or ``dir/file.py:Class``
    where a part is not an identifier; ``module.Class`` -> ``module:Class``). Each ``[[models]]``
    of pretrained.toml becomes ``Weight(path="weights/<name>", url=<url>)``, its ``sha256`` and
    ``size`` taken when present and otherwise left None. CVPM weights were pickles, so the result
    has ``allow_pickle=True`` and ``legacy=True``.

    Raises:
        ManifestError: with every problem found.
    """
    cvpm = _load_toml(cvpm_text, LEGACY_MANIFEST_FILENAME)
    pretrained = _load_toml(pretrained_text, LEGACY_WEIGHTS_FILENAME) if pretrained_text else {}
    return parse_cvpm_table(cvpm, pretrained, namespace=namespace, version=version, requirements=requirements,
                            source=source)


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
    cvpm_text = _read_text(legacy_file)
    if namespace is None:
        namespace = _vendor_namespace(_load_toml(cvpm_text, LEGACY_MANIFEST_FILENAME))
    if namespace is None:
        raise ManifestError(
            f"{legacy_file} is a legacy CVPM manifest without a namespace;"
            " give one (--namespace) to read it"
        )
    weights_file = root / LEGACY_WEIGHTS_FILENAME
    pretrained = _read_text(weights_file) if weights_file.is_file() else None
    requirements_file = root / REQUIREMENTS_FILENAME
    requirements: list[str] = []
    if requirements_file.is_file():
        requirements, notes = read_requirements(_read_text(requirements_file))
        for note in notes:
            log.warning("%s", note)
    return parse_cvpm(cvpm_text, pretrained, namespace=namespace, requirements=requirements)


def _vendor_namespace(cvpm: dict[str, Any]) -> str | None:
    """A CVPM ``vendor``, lowercased, when it is a valid namespace: the namespace a local legacy
    package is read in when none is given."""
    pkg = cvpm.get("package")
    vendor = pkg.get("vendor") if isinstance(pkg, dict) else None
    if not isinstance(vendor, str):
        return None
    candidate = vendor.strip().lower()
    return candidate if NAMESPACE_RE.match(candidate) and candidate not in RESERVED_NAMESPACES else None


def check_files_against_manifest(manifest: Manifest, files: list[FileEntry]) -> list[Problem]:
    """Problems between a manifest and the package's files (empty when consistent).

    The manifest file must be there, an explicit ``readme`` must be there, a solver's file
    (``path/file.py:Class``) must be there, and every weight without a ``url`` must be there;
    where a weight states ``sha256`` or ``size`` and its file is there, they must match. A
    dataset's ``images/<split>/`` file counts and ``annotations/<split>.json`` files must
    match its ``[dataset]`` splits.
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
    for i, s in enumerate(manifest.solvers):
        if s.module.endswith(".py") and s.module not in by_path:
            problems.append(
                Problem("missing_file", f"solvers[{i}].class", f"solver file {s.module!r} is not in the package")
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


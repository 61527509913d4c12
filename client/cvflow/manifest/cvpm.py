"""Legacy CVPM packages (``cvpm.toml`` + optional ``pretrained.toml`` + ``requirements.txt``), read
as the original CVPM wrote them.

The rules (docs/indexer.md, "Legacy CVPM packages"):

* ``[package] name`` (``Face_utility``) becomes a valid package name by :func:`legacy_package_name`;
  the original spelling is kept in the description and in ``[tool.cvpm] name`` of the generated
  ``cvflow.toml``.
* ``version`` is optional: the git tag gives it (``version=`` here).
* ``vendor`` (the 2019 GitHub owner) is not a namespace on this hub: the namespace is the one the
  repository is registered in, or the one the user gives. It is kept in ``[tool.cvpm]``.
* ``[[solvers]] class`` is a slash path from the package root to a class
  (``face_utility/solver/FaceDetectionSolver``), mapped by :func:`legacy_class_path`.
* ``requirements.txt`` gives the Python requirements (:func:`read_requirements`).
* ``before_install`` names a shell script; only the client runs it, and only with the user's
  consent (``cvflow.install.before``).
"""

from __future__ import annotations

import re
from typing import Any

import tomli_w
from packaging.requirements import InvalidRequirement, Requirement

from cvflow.errors import ManifestError, Problem, ValidationError
from cvflow.manifest.checks import build_manifest
from cvflow.manifest.model import LEGACY_MANIFEST_FILENAME, MAX_DESCRIPTION, Manifest
from cvflow.paths import validate_path

__all__ = ["CVPM_TOOL", "REQUIREMENTS_FILENAME", "legacy_class_path", "legacy_package_name", "legacy_tool_table",
           "parse_cvpm_table", "read_requirements", "tool_toml"]

#: The ``[tool]`` key of a generated ``cvflow.toml`` that keeps what ``cvpm.toml`` said and
#: ``cvflow.toml`` has no field for: the original ``name``, ``vendor`` and ``before_install``.
CVPM_TOOL = "cvpm"
REQUIREMENTS_FILENAME = "requirements.txt"

_IDENT = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
_SEGMENT = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_NOT_NAME = re.compile(r"[^a-z0-9]+")


def legacy_package_name(raw: str) -> str:
    """A CVPM package name as a valid ``cvflow.names`` name.

    Lower-cased; every run of characters other than letters and digits (``_``, ``-``, ``.``,
    spaces, anything else) becomes one ``-``, and none is left at either end; cut to 64
    characters. ``Face_utility`` -> ``face-utility``; ``Edge Detector v2`` -> ``edge-detector-v2``.
    This is the name's PEP 503 form (``cvflow.names.normalize_name``), so ``face_utility`` and
    ``face-utility`` are the same package either way. A name with no letter or digit gives ``""``
    (refused as a name).
    """
    return _NOT_NAME.sub("-", raw.strip().lower()).strip("-")[:64].strip("-")


def legacy_class_path(raw: str) -> str:
    """A CVPM ``class`` as a ``cvflow.toml`` class.

    * ``dir/file/Class`` (CVPM's form: the last part is the class, the part before it the file
      without ``.py``) becomes ``dir.file:Class`` when every part is a Python identifier, and
      ``dir/file.py:Class`` (the file form, which the runner loads by its path) when one is not,
      as with a hyphen in ``tesseract-ocr/solver/TesseractOCR``.
    * ``pkg.mod.Class`` (dotted) becomes ``pkg.mod:Class``.
    * Anything else (``module:Class`` already, or a bad value) is left for the manifest's checks.
    """
    value = raw.strip()
    if ":" in value:
        return value
    if "/" in value:
        *parts, cls = value.strip("/").split("/")
        if not parts or not all(_SEGMENT.match(p) for p in parts) or not _IDENT.match(cls):
            return value
        if all(_IDENT.match(p) for p in parts):
            return f"{'.'.join(parts)}:{cls}"
        return f"{'/'.join(parts)}.py:{cls}"
    if "." in value:
        module, _, cls = value.rpartition(".")
        return f"{module}:{cls}"
    return value


def read_requirements(text: str) -> tuple[list[str], list[str]]:
    """The PEP 508 requirements of a ``requirements.txt``, and a note for each line left out.

    Comments (``#`` at the start, or after a space), blank lines and ``\\`` continuations are
    read as pip reads them. Lines that are pip options (``-r other.txt``, ``-e .``,
    ``--index-url``, ``-f``) and lines that are not PEP 508 requirements (a bare URL or path)
    are left out, each with a note that says so; duplicates are kept once.
    """
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        lines.append((start, pending + line))
        pending = ""
    if pending:
        lines.append((start, pending))
    requirements: list[str] = []
    notes: list[str] = []
    for number, line in lines:
        if line.lstrip().startswith("#"):
            continue
        line = re.split(r"\s#", line, maxsplit=1)[0].strip()
        if not line:
            continue
        where = f"{REQUIREMENTS_FILENAME} line {number}"
        if line.startswith("-"):
            notes.append(f"{where}: {line!r} left out: pip options and included files are not read")
            continue
        try:
            Requirement(line)
        except InvalidRequirement:
            notes.append(f"{where}: {line!r} left out: it is not a PEP 508 requirement")
            continue
        if line not in requirements:
            requirements.append(line)
    return requirements, notes


def _script(value: object) -> str | None:
    """``before_install`` as a safe relative path, or None when it is not one."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return validate_path(value.strip().removeprefix("./"))
    except ValidationError:
        return None


def legacy_tool_table(cvpm: dict[str, Any]) -> dict[str, str]:
    """What a ``cvpm.toml`` table says that ``cvflow.toml`` has no field for, for ``[tool.cvpm]``:
    the original ``name``, ``vendor`` and ``before_install`` (a relative path in the package)."""
    pkg = cvpm.get("package")
    pkg = pkg if isinstance(pkg, dict) else {}
    out = {k: pkg[k].strip() for k in ("name", "vendor") if isinstance(pkg.get(k), str) and pkg[k].strip()}
    raw = pkg.get("before_install", cvpm.get("before_install"))
    script = _script(raw)
    if script is not None:
        out["before_install"] = script
    return out


def parse_cvpm_table(cvpm: dict[str, Any], pretrained: dict[str, Any], *, namespace: str,
                     version: str | None = None, requirements: list[str] | None = None,
                     source: str | None = None) -> Manifest:
    """Map parsed ``cvpm.toml`` and ``pretrained.toml`` tables onto a legacy ``Manifest``
    (see :func:`cvflow.manifest.parse_cvpm`)."""
    raw_package = cvpm.get("package")
    pkg: dict[str, Any] = raw_package if isinstance(raw_package, dict) else {}
    package: dict[str, Any] = {k: pkg[k] for k in ("version", "description", "license") if k in pkg}
    if "version" not in package and version is not None:
        package["version"] = version
    if isinstance(pkg.get("name"), str):
        original = pkg["name"].strip()
        mapped = legacy_package_name(original)
        package["name"] = f"{namespace}/{mapped}"
        description = package.get("description")
        if original != mapped and (description is None or isinstance(description, str)):
            package["description"] = _described(original, description, source)
        elif description is None and source is not None:
            package["description"] = f"Indexed from {source}"[:MAX_DESCRIPTION]
    if requirements:
        package["requirements"] = list(requirements)
    extra = []
    raw_script = pkg.get("before_install", cvpm.get("before_install"))
    if raw_script is not None and _script(raw_script) is None:
        extra.append(Problem("invalid_field", "package.before_install",
                             f"before_install {raw_script!r} must be the relative path of a script in the package"))
    solvers = []
    for solver in cvpm.get("solvers", []) if isinstance(cvpm.get("solvers"), list) else []:
        solver = dict(solver) if isinstance(solver, dict) else {}
        if isinstance(solver.get("name"), str):
            solver["name"] = solver["name"].strip().lower().replace(" ", "-")
        if isinstance(solver.get("class"), str):
            solver["class"] = legacy_class_path(solver["class"])
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
    try:
        manifest = build_manifest(table, legacy=True, source=LEGACY_MANIFEST_FILENAME)
    except ManifestError as exc:
        raise _problems([_explained(p) for p in exc.problems] + extra) from exc
    if extra:
        raise _problems(extra)
    return manifest


def _problems(problems: list[Problem]) -> ManifestError:
    n = len(problems)
    return ManifestError(f"{LEGACY_MANIFEST_FILENAME} has {n} problem{'s' if n != 1 else ''}", problems)


def _explained(problem: Problem) -> Problem:
    """A missing version is what 2019 packages have: say where a version comes from."""
    if (problem.code, problem.field) != ("missing_field", "package.version"):
        return problem
    return Problem(problem.code, problem.field, "version is required: cvpm.toml has none, and the indexer takes it"
                   " from the release tag; to read the package here, add version = \"X.Y.Z\" to [package]")


def _described(original: str, description: str | None, source: str | None) -> str:
    """The description that keeps a renamed package's original name: ``Face_utility: ...``."""
    if description and description.strip():
        text = description if description.startswith(original) else f"{original}: {description}"
    else:
        text = f"{original}, a CVPM package" + (f" indexed from {source}" if source else "")
    return text[:MAX_DESCRIPTION]


def tool_toml(manifest_text: str, tool: dict[str, str]) -> str:
    """``manifest_text`` (a generated ``cvflow.toml``) with ``[tool.cvpm]`` added when ``tool`` says anything."""
    if not tool:
        return manifest_text
    return manifest_text.rstrip("\n") + "\n\n" + tomli_w.dumps({"tool": {CVPM_TOOL: tool}})

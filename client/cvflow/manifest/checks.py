"""Building a Manifest from parsed TOML, recording every problem on the way."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from cvflow.errors import ManifestError, Problem, ValidationError
from cvflow.manifest.dataset import KINDS, DatasetInfo, parse_dataset_table
from cvflow.manifest.model import (
    _CLASS_RE,
    _FORMAT_BY_SUFFIX,
    _IO_NAME_RE,
    _LICENSE_RE,
    _METRIC_RE,
    _PACKAGE_KEYS,
    _SECTIONS,
    _SOLVER_NAME_RE,
    _TAG_RE,
    INPUT_KINDS,
    MAX_DESCRIPTION,
    MAX_IO_FIELDS,
    MAX_TAGS,
    TASKS,
    WEIGHT_FORMATS,
    BatchPolicy,
    Manifest,
    Solver,
    Weight,
)
from cvflow.manifest.suggest import parse_suggest
from cvflow.manifest.training import Lineage, Trainer, parse_lineage, parse_ref, parse_trainer
from cvflow.names import PackageName
from cvflow.paths import SHA256_RE, validate_path
from cvflow.solver import declared_input
from cvflow.versions import Version, VersionRange


class _Checker:
    """Reads values out of parsed TOML, recording a Problem for each bad one."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, code: str, where: str, message: str) -> None:
        self.problems.append(Problem(code, where, message))

    def unknown(self, table: dict[str, Any], allowed: Iterable[str], prefix: str) -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.add("unknown_key", f"{prefix}{key}", f"unknown key {key!r}{hint}")

    def text(
        self,
        table: dict[str, Any],
        key: str,
        where: str,
        *,
        required: bool = False,
        max_len: int = 256,
    ) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                self.add("missing_field", where, f"{key} is required")
            return None
        if not isinstance(value, str):
            self.add("invalid_field", where, f"{key} must be a string")
        elif required and not value.strip():
            self.add("invalid_field", where, f"{key} must not be empty")
        elif "\n" in value or "\r" in value:
            self.add("invalid_field", where, f"{key} must be a single line")
        elif len(value) > max_len:
            self.add("invalid_field", where, f"{key} is longer than {max_len} characters")
        else:
            return value
        return None

    def url(self, table: dict[str, Any], key: str, where: str) -> str | None:
        value = self.text(table, key, where, max_len=2048)
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value
        except ValueError:
            ok, parts = False, None
        if not ok:
            self.add("invalid_url", where, f"{key} must be an http(s) URL, not {value!r}")
        elif parts is not None and (parts.username or parts.password):
            # Manifests are public; a token in a URL would leak with every download.
            self.add("invalid_url", where, f"{key} must not contain credentials")
        else:
            return value
        return None

    def wrap(self, exc: ValidationError, where: str) -> None:
        for problem in exc.problems:
            self.add(problem.code, where, problem.message)

    def table_list(self, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            self.add("invalid_field", key, f"{key} must be an array of tables ([[{key}]])")
            return []
        return value


def build_manifest(data: dict[str, Any], *, legacy: bool, source: str) -> Manifest:
    """Check a parsed manifest table and build the Manifest, or raise every problem."""
    c = _Checker()
    c.unknown(data, _SECTIONS, "")
    pkg = data.get("package")
    if not isinstance(pkg, dict):
        c.add("missing_field", "package", "the [package] table is required")
        pkg = {}
    c.unknown(pkg, _PACKAGE_KEYS, "package.")

    name = version = None
    raw_name = c.text(pkg, "name", "package.name", required=True)
    if raw_name is not None:
        try:
            name = PackageName.parse(raw_name)
        except ValidationError as exc:
            c.wrap(exc, "package.name")
    raw_version = c.text(pkg, "version", "package.version", required=True)
    if raw_version is not None:
        try:
            version = Version.parse(raw_version)
        except ValidationError as exc:
            c.wrap(exc, "package.version")
    description = c.text(
        pkg, "description", "package.description", required=not legacy, max_len=MAX_DESCRIPTION
    )
    license_ = c.text(pkg, "license", "package.license", max_len=128)
    if license_ is not None and not _LICENSE_RE.match(license_):
        c.add("invalid_field", "package.license", f"license {license_!r} is not an SPDX expression")
    task = c.text(pkg, "task", "package.task")
    if task is not None and task not in TASKS:
        c.add("invalid_field", "package.task", f"task must be one of {', '.join(sorted(TASKS))}")
    tags = pkg.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        c.add("invalid_field", "package.tags", f"tags must be a list of at most {MAX_TAGS}")
        tags = []
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not _TAG_RE.match(tag):
            c.add(
                "invalid_field", f"package.tags[{i}]", f"tag {tag!r} must match [a-z0-9-]{{1,32}}"
            )
        elif tag in tags[:i]:
            c.add("invalid_field", f"package.tags[{i}]", f"tag {tag!r} is listed twice")
    readme = c.text(pkg, "readme", "package.readme", max_len=1024)
    if readme is not None:
        readme = _path(c, readme, "package.readme")
    python = c.text(pkg, "python", "package.python")
    if python is not None:
        try:
            SpecifierSet(python)
        except InvalidSpecifier:
            c.add("invalid_field", "package.python", f"{python!r} is not a PEP 440 specifier")
    requirements = pkg.get("requirements", [])
    if not isinstance(requirements, list):
        c.add("invalid_field", "package.requirements", "requirements must be a list of strings")
        requirements = []
    for i, req in enumerate(requirements):
        try:
            Requirement(req if isinstance(req, str) else "")
        except InvalidRequirement:
            c.add(
                "invalid_requirement",
                f"package.requirements[{i}]",
                f"{req!r} is not a PEP 508 requirement",
            )
    homepage = c.url(pkg, "homepage", "package.homepage")
    repository = c.url(pkg, "repository", "package.repository")
    framework = c.text(pkg, "framework", "package.framework", max_len=64)
    allow_pickle = pkg.get("allow_pickle", legacy)
    if not isinstance(allow_pickle, bool):
        c.add("invalid_field", "package.allow_pickle", "allow_pickle must be true or false")
        allow_pickle = False

    dependencies: dict[str, VersionRange] = {}
    deps = data.get("dependencies", {})
    if not isinstance(deps, dict):
        c.add("invalid_field", "dependencies", "[dependencies] must be a table")
        deps = {}
    for dep, spec in deps.items():
        where = f"dependencies.{dep}"
        try:
            dep_name = PackageName.parse(dep)
            if raw_name is not None and str(dep_name) == raw_name:
                c.add("invalid_field", where, "a package cannot depend on itself")
            dependencies[str(dep_name)] = VersionRange.parse(spec)
        except ValidationError as exc:
            c.wrap(exc, where)

    solvers: list[Solver] = []
    for i, t in enumerate(c.table_list(data, "solvers")):
        s = _solver(c, t, i)
        if s is not None and any(s.name == x.name for x in solvers):
            c.add("duplicate_solver", f"solvers[{i}].name", f"solver {s.name!r} is defined twice")
        elif s is not None:
            solvers.append(s)
    weights: list[Weight] = []
    for i, t in enumerate(c.table_list(data, "weights")):
        w = _weight(c, t, f"weights[{i}]", legacy=legacy, allow_pickle=allow_pickle)
        if w is not None and any(w.path == x.path for x in weights):
            c.add("duplicate_weight", f"weights[{i}].path", f"weight {w.path!r} is listed twice")
        elif w is not None:
            weights.append(w)
    metrics = _metrics(c, data.get("metrics", {}))
    kind, dataset = _kind(c, pkg, data, task=task, solvers=bool(solvers or data.get("solvers")),
                          weights=bool(weights or data.get("weights")))
    if dataset is not None and task is None:
        task = dataset.task
    trainers = _trainers(c, data, kind=kind, weights=weights)
    lineage = _lineage(c, data, raw_name=raw_name, raw_version=raw_version)

    if c.problems or name is None or version is None:
        n = len(c.problems)
        raise ManifestError(f"{source} has {n} problem{'s' if n != 1 else ''}", c.problems)
    return Manifest(
        name=name,
        version=version,
        description=description or "",
        license=license_,
        task=task,
        tags=list(tags),
        readme=readme,
        homepage=homepage,
        repository=repository,
        python=python,
        requirements=list(requirements),
        framework=framework,
        dependencies=dependencies,
        solvers=solvers,
        weights=weights,
        metrics=metrics,
        allow_pickle=allow_pickle,
        legacy=legacy,
        kind=kind,
        dataset=dataset,
        trainers=trainers,
        lineage=lineage,
    )


def _trainers(c: _Checker, data: dict[str, Any], *, kind: str, weights: list[Weight]) -> list[Trainer]:
    """``[[trainers]]``: each parsed, names unique, the weights it writes among the package's."""
    if data.get("trainers") and kind != "model":  # an empty list is what to_dict writes for none
        c.add("invalid_field", "trainers", "a dataset package has no trainers")
        return []
    trainers: list[Trainer] = []
    paths = {w.path for w in weights}
    for i, table in enumerate(c.table_list(data, "trainers")):
        trainer, problems = parse_trainer(table, f"trainers[{i}]")
        c.problems.extend(problems)
        if trainer is None:
            continue
        if any(t.name == trainer.name for t in trainers):
            c.add("duplicate_trainer", f"trainers[{i}].name", f"trainer {trainer.name!r} is defined twice")
            continue
        for path in trainer.weights:
            if path not in paths:
                c.add("invalid_field", f"trainers[{i}].weights", f"{path!r} is not one of the package's [[weights]]")
        trainers.append(trainer)
    return trainers


def _lineage(c: _Checker, data: dict[str, Any], *, raw_name: str | None, raw_version: str | None) -> Lineage | None:
    """``[lineage]``: well formed, names and versions valid, and not the version itself."""
    if "lineage" not in data:
        return None
    lineage, problems = parse_lineage(data["lineage"])
    c.problems.extend(problems)
    if lineage is None:
        return None
    ok = True
    for key, ref in (("base", lineage.base), ("dataset", lineage.dataset)):
        parts = parse_ref(ref)
        assert parts is not None
        try:
            name = str(PackageName.parse(parts[0]))
            Version.parse(parts[1])
        except ValidationError as exc:
            c.wrap(exc, f"lineage.{key}")
            ok = False
            continue
        if key == "base" and raw_name is not None and name == raw_name and parts[1] == raw_version:
            c.add("invalid_field", "lineage.base", "a version cannot be fine-tuned from itself")
            ok = False
    return lineage if ok else None


def _kind(c: _Checker, pkg: dict[str, Any], data: dict[str, Any], *, task: str | None, solvers: bool,
          weights: bool) -> tuple[str, DatasetInfo | None]:
    """``package.kind`` and, for a dataset, its ``[dataset]`` table (docs/datasets.md)."""
    kind = pkg.get("kind", "model")
    if kind not in KINDS:
        c.add("invalid_field", "package.kind", f"kind must be one of {', '.join(KINDS)}")
        return "model", None
    if kind == "model":
        if "dataset" in data:
            c.add("invalid_field", "dataset", 'a [dataset] table needs kind = "dataset" in [package]')
        return kind, None
    if "dataset" not in data:
        c.add("missing_field", "dataset", 'a package of kind = "dataset" needs a [dataset] table')
        return kind, None
    if solvers or weights:
        # The hub installs and runs nothing from a dataset; code and weights belong in a model package.
        c.add("invalid_field", "solvers" if solvers else "weights", "a dataset package has no solvers or weights")
    info, problems = parse_dataset_table(data["dataset"])
    c.problems.extend(problems)
    if info is not None and task is not None and task != info.task:
        c.add("invalid_field", "package.task", f"package.task is {task!r} but dataset.task is {info.task!r}")
    return kind, info


def _path(c: _Checker, path: str, where: str) -> str | None:
    try:
        return validate_path(path)
    except ValidationError as exc:
        c.wrap(exc, where)
        return None


def _solver(c: _Checker, table: dict[str, Any], i: int) -> Solver | None:
    where = f"solvers[{i}]"
    c.unknown(table, ("name", "class", "description", "batch", "inputs", "outputs", "suggest"), f"{where}.")
    name = c.text(table, "name", f"{where}.name", required=True)
    if name is not None and not _SOLVER_NAME_RE.match(name):
        c.add(
            "invalid_field", f"{where}.name", f"solver name {name!r} must match [a-z0-9_-]{{1,64}}"
        )
        name = None
    class_path = c.text(table, "class", f"{where}.class", required=True)
    if class_path is not None and not _CLASS_RE.match(class_path):
        c.add(
            "invalid_field",
            f"{where}.class",
            f"class {class_path!r} must look like 'module.path:ClassName' (or 'path/to/file.py:ClassName')",
        )
        class_path = None
    description = c.text(table, "description", f"{where}.description", max_len=MAX_DESCRIPTION)
    raw_batch = table.get("batch")
    batch = None if raw_batch is None else _batch(c, raw_batch, f"{where}.batch")
    inputs = _fields(c, table.get("inputs"), f"{where}.inputs", kinds=True)
    outputs = _fields(c, table.get("outputs"), f"{where}.outputs", kinds=False)
    suggest, problems = (None, []) if "suggest" not in table else parse_suggest(table["suggest"], f"{where}.suggest")
    c.problems.extend(problems)
    if name is None or class_path is None:
        return None
    return Solver(name, class_path, description, batch, inputs, outputs, suggest)


def _fields(c: _Checker, raw: object, where: str, *, kinds: bool) -> dict[str, str]:
    """A solver's ``inputs`` (name -> "kind" or "kind: description") or ``outputs`` (name -> description)."""
    if raw is None:
        return {}
    example = '{ image = "image: the photo" }' if kinds else '{ boxes = "faces as [x, y, w, h]" }'
    if not isinstance(raw, dict):
        c.add("invalid_field", where, f"must be a table like {example}")
        return {}
    if len(raw) > MAX_IO_FIELDS:
        c.add("invalid_field", where, f"at most {MAX_IO_FIELDS} entries")
        return {}
    out: dict[str, str] = {}
    for key in raw:
        if not _IO_NAME_RE.match(key):
            c.add("invalid_field", f"{where}.{key}", f"{key!r} must be a Python identifier of at most 64 characters")
            continue
        text = c.text(raw, key, f"{where}.{key}", required=True, max_len=MAX_DESCRIPTION)
        if text is None:
            continue
        if kinds and declared_input(text)[0] not in INPUT_KINDS:
            c.add("invalid_field", f"{where}.{key}",
                  f"{text!r} must start with an input kind: {', '.join(INPUT_KINDS)} (then ': description')")
            continue
        out[key] = text
    return out


def _batch(c: _Checker, raw: object, where: str) -> BatchPolicy | None:
    if not isinstance(raw, dict):
        c.add("invalid_field", where, "batch must be a table like { max_size = 8 }")
        return None
    c.unknown(raw, ("max_size", "max_wait_ms"), f"{where}.")
    size, wait = raw.get("max_size"), raw.get("max_wait_ms", 0)
    if type(size) is not int or size < 1:
        c.add("invalid_field", f"{where}.max_size", "max_size must be an integer >= 1")
    elif not _is_number(wait) or wait < 0:
        c.add("invalid_field", f"{where}.max_wait_ms", "max_wait_ms must be a number >= 0")
    else:
        return BatchPolicy(size, float(wait))
    return None


def _weight(
    c: _Checker, table: dict[str, Any], where: str, *, legacy: bool, allow_pickle: bool
) -> Weight | None:
    c.unknown(table, ("path", "url", "sha256", "size", "format"), f"{where}.")
    path = c.text(table, "path", f"{where}.path", required=True, max_len=1024)
    path = None if path is None else _path(c, path, f"{where}.path")
    url = c.url(table, "url", f"{where}.url")
    sha256, size = table.get("sha256"), table.get("size")
    if sha256 is not None and (not isinstance(sha256, str) or not SHA256_RE.match(sha256)):
        c.add("invalid_digest", f"{where}.sha256", "sha256 must be 64 lowercase hex digits")
    elif sha256 is None and "url" in table and not legacy:
        # Without a digest a downloaded file cannot be verified, so it is refused.
        c.add("missing_field", f"{where}.sha256", "sha256 is required when url is given")
    if size is not None and (type(size) is not int or size < 0):
        c.add("invalid_size", f"{where}.size", "size must be an integer >= 0")
    elif size is None and "url" in table and not legacy:
        c.add("missing_field", f"{where}.size", "size is required when url is given")
    fmt = table.get("format")
    if fmt is None and path is not None:
        fmt = _FORMAT_BY_SUFFIX.get(Path(path).suffix.lower(), "other")
    if fmt is None:
        pass  # the path was invalid, so there is nothing to guess from
    elif fmt not in WEIGHT_FORMATS:
        c.add(
            "invalid_field", f"{where}.format", f"format must be one of {', '.join(WEIGHT_FORMATS)}"
        )
    elif fmt == "pickle" and not allow_pickle:
        c.add(
            "pickle_not_allowed",
            f"{where}.format",
            f"{path} is a pickle, which runs code when loaded; convert it to safetensors"
            " or set allow_pickle = true in [package]",
        )
    if path is None or not isinstance(fmt, str):
        return None
    return Weight(path, url, sha256, size, fmt)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and type(value) in (int, float) and math.isfinite(value)


def _metrics(c: _Checker, table: object) -> dict[str, float]:
    if not isinstance(table, dict):
        c.add("invalid_field", "metrics", "[metrics] must be a table of numbers")
        return {}
    metrics = {}
    for key, value in table.items():
        if not _METRIC_RE.match(key):
            c.add("invalid_field", f"metrics.{key}", "metric names must match [A-Za-z0-9_.-]{1,64}")
        elif not _is_number(value):
            c.add("invalid_field", f"metrics.{key}", f"metric {key!r} must be a finite number")
        else:
            metrics[key] = float(value)
    return metrics



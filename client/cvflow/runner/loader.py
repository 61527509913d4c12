"""Read a package directory's manifest and load its solvers: import, construct, schema, worker.

A solver's class is ``module.path:ClassName``, imported with the package directory first on
``sys.path``, or ``path/to/file.py:ClassName``, a file loaded by its path (legacy CVPM packages
name files in directories such as ``tesseract-ocr/`` that are not importable by a dotted name).

A legacy CVPM package (its ``cvflow.toml`` has ``[tool.cvpm]``: it was read from ``cvpm.toml``)
gets the ``cvpm`` shim (``cvflow.runner.cvpm_compat``) importable, and a solver of it written for
the 2019 runtime (``infer(self, image_file, config)``) is constructed with no arguments and served
through ``cvflow.runner.cvpm_compat.adapter``.

The runner reads ``cvflow.toml`` with ``tomllib`` and trusts it: the hub (or ``cvflow
validate``) has checked it with the full schema of ``cvflow.manifest``, which needs
libraries a package's venv does not have.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cvflow.runner import cvpm_compat
from cvflow.runner.batching import SolverWorker, log
from cvflow.runner.cvpm_compat import adapter
from cvflow.runner.images import require_pillow
from cvflow.runner.schema import SolverSchema, schema_of
from cvflow.safeparse import loads_toml
from cvflow.solver import PICKLE_SUFFIXES, Context, declared_input


class LoadError(Exception):
    """The package or one of its solvers cannot be loaded; the message says which and why."""


@dataclass(frozen=True)
class SolverEntry:
    name: str
    class_path: str
    description: str | None = None
    max_size: int = 1
    max_wait_ms: float = 0.0
    batched: bool = False
    #: The manifest's declared inputs as (name, kind); empty when it declares none.
    inputs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PackageInfo:
    name: str
    version: str
    description: str
    package_dir: Path
    solvers: tuple[SolverEntry, ...]
    weights: Mapping[str, Path] = field(default_factory=dict)
    weight_formats: Mapping[str, str] = field(default_factory=dict)
    allow_pickle: bool = False
    #: Read from a 2019 ``cvpm.toml`` (``[tool.cvpm]`` in ``cvflow.toml``): its solvers may use ``cvpm``.
    legacy: bool = False

    def solver(self, name: str) -> SolverEntry:
        for s in self.solvers:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.solvers) or "none"
        raise LoadError(f"{self.name} has no solver {name!r} (it has: {known})")


def read_package(package_dir: Path) -> PackageInfo:
    """Raises LoadError: no readable ``cvflow.toml`` in ``package_dir``."""
    path = package_dir / "cvflow.toml"
    try:
        data = loads_toml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: TOMLDecodeError, TooDeepError
        raise LoadError(f"cannot read {path}: {exc}") from exc
    pkg = data.get("package") or {}
    solvers = []
    for s in data.get("solvers") or []:
        batch = s.get("batch") or {}
        inputs = tuple((k, declared_input(str(v))[0]) for k, v in (s.get("inputs") or {}).items())
        solvers.append(SolverEntry(s["name"], s["class"], s.get("description"), int(batch.get("max_size", 1)),
                                   float(batch.get("max_wait_ms", 0)), bool(batch), inputs))
    weights, formats = {}, {}
    for w in data.get("weights") or []:
        weights[w["path"]] = package_dir / w["path"]
        suffix = Path(w["path"]).suffix
        guessed = "safetensors" if suffix == ".safetensors" else "pickle" if suffix in PICKLE_SUFFIXES else "other"
        formats[w["path"]] = w.get("format") or guessed
    tool = data.get("tool")
    legacy = isinstance(tool, dict) and isinstance(tool.get("cvpm"), dict)
    return PackageInfo(str(pkg.get("name", "?")), str(pkg.get("version", "?")), str(pkg.get("description", "")),
                       package_dir, tuple(solvers), weights, formats, bool(pkg.get("allow_pickle", False)), legacy)


def resolve_device(requested: str) -> str:
    """``auto``: ``cuda`` when torch is installed and sees a GPU, else ``cpu``; anything else as given."""
    if requested != "auto":
        return requested
    if importlib.util.find_spec("torch") is None:
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


@dataclass
class LoadedSolver:
    entry: SolverEntry
    instance: Any
    schema: SolverSchema
    worker: SolverWorker

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def batching(self) -> dict[str, Any] | None:
        if self.worker.max_size <= 1:
            return None
        return {"max_size": self.worker.max_size, "max_wait_ms": self.worker.max_wait * 1000}


def load_solver(info: PackageInfo, name: str, *, device: str, settings: Mapping[str, str],
                max_queue: int = 1024) -> LoadedSolver:
    """Import the solver's class, construct it with its ``Context`` and build its schema and worker.

    Raises:
        LoadError: the class cannot be imported or found, has no ``infer``, or its hints are unsupported.
        Whatever the solver's constructor raises (the runner logs it and exits).
    """
    entry = info.solver(name)
    if str(info.package_dir) not in sys.path:
        sys.path.insert(0, str(info.package_dir))  # a bare package directory (not installed): its modules first
    module_name, _, class_name = entry.class_path.partition(":")
    if info.legacy:
        cvpm_compat.install_finder()
    try:
        if module_name.endswith(".py"):
            module = _import_file(info.package_dir, module_name)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LoadError(f"solver {name}: cannot import {module_name} ({type(exc).__name__}: {exc})") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise LoadError(f"solver {name}: {module_name} has no class {class_name}")
    context = Context(package=info.name, version=info.version, solver=name, package_dir=info.package_dir,
                      device=device, weights=dict(info.weights), weight_formats=dict(info.weight_formats),
                      settings=dict(settings), allow_pickle=info.allow_pickle)
    if info.legacy and adapter.is_cvpm_solver(cls):
        return _load_cvpm_solver(entry, cls, max_queue)
    instance = cls(context) if _takes_context(cls) else cls()
    infer = getattr(instance, "infer", None)
    if not callable(infer):
        raise LoadError(f"solver {name}: {entry.class_path} has no infer method")
    try:
        schema = schema_of(infer, where=f"solver {name}: {entry.class_path}.infer")
    except TypeError as exc:
        raise LoadError(str(exc)) from exc
    _check_declared(entry, schema)
    if schema.images:
        require_pillow()
    infer_batch = getattr(instance, "infer_batch", None) if entry.batched else None
    if entry.batched and not callable(infer_batch) and entry.max_size > 1:
        log.warning("solver %s: the manifest allows batches of %d, but %s has no infer_batch method;"
                    " calls run one at a time", name, entry.max_size, entry.class_path)
    worker = SolverWorker(name, infer, infer_batch if callable(infer_batch) else None,
                          max_size=entry.max_size, max_wait_ms=entry.max_wait_ms, max_queue=max_queue)
    return LoadedSolver(entry, instance, schema, worker)


def _load_cvpm_solver(entry: SolverEntry, cls: type, max_queue: int) -> LoadedSolver:
    """A 2019 solver: constructed with no arguments, as the 2019 runtime did; served one call at a
    time with ``adapter.SCHEMA`` (one image, the other fields as ``config``)."""
    instance = cls()
    if getattr(instance, "is_ready", True) is False:
        log.warning("solver %s: %s did not call set_ready(); it is served once loaded, as every solver is",
                    entry.name, entry.class_path)
    require_pillow()
    worker = SolverWorker(entry.name, adapter.CvpmCall(instance.infer), None, max_queue=max_queue)
    return LoadedSolver(entry, instance, adapter.SCHEMA, worker)


def _import_file(package_dir: Path, relative: str) -> ModuleType:
    """Import the file form of a class path (``tesseract-ocr/solver.py``) by its path in the package.

    Its directory goes first on ``sys.path``, so its ``import sibling`` finds the files beside it,
    and it is registered under its file name (``solver``) unless a module of that name is loaded
    already, so a sibling that imports it gets this same module.

    Raises:
        ImportError: the file is not in the package, or importing it raised ImportError.
    """
    root = package_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ModuleNotFoundError(f"{relative} is not a file in the package")
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else (
        f"_cvflow_file_{len(sys.modules)}_{''.join(c if c.isalnum() else '_' for c in path.stem)}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{relative} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _check_declared(entry: SolverEntry, schema: SolverSchema) -> None:
    """The inputs the manifest declares (what the hub shows) must be what ``infer`` takes."""
    if not entry.inputs:
        return
    declared = dict(entry.inputs)
    actual = {p.name: p.kind for p in schema.params}
    if declared == actual:
        return
    diffs = [f"{n}: manifest says {declared.get(n, 'nothing')}, infer() takes {actual.get(n, 'nothing')}"
             for n in sorted(declared.keys() | actual.keys()) if declared.get(n) != actual.get(n)]
    raise LoadError(f"solver {entry.name}: the manifest's inputs do not match {entry.class_path}.infer ("
                    + "; ".join(diffs) + ")")


def _takes_context(cls: type) -> bool:
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)

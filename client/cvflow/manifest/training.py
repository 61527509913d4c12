"""``[[trainers]]`` and ``[lineage]``: how a model package fine-tunes, and where a fine-tune came from.

A trainer continues from the package's own weights on a dataset package (docs/training.md)::

    [[trainers]]
    name = "finetune"
    class = "digits_lenet.trainer:Finetune"
    task = "classification"
    layout = "imagefolder"          # the layout it reads; the client converts a dataset to it
    classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    metric = "accuracy"             # the validation metric that decides (higher is better)
    weights = ["weights/model.safetensors"]
    hyperparameters = { epochs = { default = 8, min = 1, max = 200 }, lr = { default = 0.001, min = 1e-6, max = 1.0 } }

A fine-tuned version's manifest records its lineage; ``cvflow finetune`` writes it and the hub
checks it (the base and the dataset versions exist and the publisher may read them)::

    [lineage]
    base = "demo/digits-lenet@1.0.0"
    dataset = "demo/digits-shifted-data@1.2.0"
    trainer = "finetune"
    hyperparameters = { epochs = 8, lr = 0.001 }
    metrics = { accuracy = 0.93 }          # on the dataset's validation split, after
    base_metrics = { accuracy = 0.41 }     # the base version on the same split, before
    device = "cpu"
    seconds = 41.2
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from cvflow.errors import Problem
from cvflow.manifest.dataset import class_name_problem

#: Dataset layouts a trainer may read (docs/datasets.md); the client converts to the one it names.
TRAINER_LAYOUTS = ("coco", "imagefolder", "yolo", "voc")
#: Tasks a trainer may declare: the tasks a dataset package may have.
TRAINER_TASKS = ("classification", "detection")
MAX_HYPERPARAMETERS = 32
MAX_TRAINER_CLASSES = 1000
_NAME_RE = re.compile(r"\A[a-z0-9_-]{1,64}\Z")
_HP_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_METRIC_RE = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")
_REF_RE = re.compile(r"\A(?P<name>[^@\s]{3,104})@(?P<version>[^@\s]{1,128})\Z")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CLASS_RE = re.compile(rf"\A{_IDENT}(?:\.{_IDENT})*:{_IDENT}\Z")
_TRAINER_KEYS = ("name", "class", "description", "task", "layout", "classes", "metric", "weights", "hyperparameters")
_HP_KEYS = ("default", "min", "max", "description")
_LINEAGE_KEYS = ("base", "dataset", "trainer", "hyperparameters", "metrics", "base_metrics", "device", "seconds")


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: its default and, for numbers, its bounds (inclusive)."""

    name: str
    default: int | float | bool | str
    min: float | None = None
    max: float | None = None
    description: str | None = None

    def check(self, value: object) -> int | float | bool | str:
        """``value`` as this hyperparameter's type, or ValueError saying why it is refused."""
        kind = type(self.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false")
            return value
        if kind is str:
            if not isinstance(value, str) or len(value) > 256:
                raise ValueError(f"{self.name} must be a string of at most 256 characters")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{self.name} must be a finite number")
        if kind is int and not float(value).is_integer():
            raise ValueError(f"{self.name} must be an integer")
        number: int | float = int(value) if kind is int else float(value)
        if self.min is not None and number < self.min:
            raise ValueError(f"{self.name} must be at least {_num(self.min)}")
        if self.max is not None and number > self.max:
            raise ValueError(f"{self.name} must be at most {_num(self.max)}")
        return number

    def to_dict(self) -> dict[str, Any]:
        return {"default": self.default, "min": self.min, "max": self.max, "description": self.description}


@dataclass(frozen=True)
class Trainer:
    """A trainer class the package exposes; ``class_path`` is ``"module.path:ClassName"``."""

    name: str
    class_path: str
    task: str
    layout: str = "coco"
    metric: str = "accuracy"
    description: str | None = None
    #: The model's classes in its output order; a dataset's classes are mapped onto them by name.
    classes: tuple[str, ...] = ()
    #: The package's weight files the trainer writes anew (the rest of the package is copied).
    weights: tuple[str, ...] = ()
    hyperparameters: dict[str, Hyperparameter] = field(default_factory=dict, hash=False)

    def resolve(self, given: dict[str, object]) -> dict[str, int | float | bool | str]:
        """The defaults overridden by ``given``, each checked; ValueError naming every problem."""
        problems = [f"unknown hyperparameter {k!r} (this trainer takes: {', '.join(self.hyperparameters) or 'none'})"
                    for k in given if k not in self.hyperparameters]
        out: dict[str, int | float | bool | str] = {}
        for name, hp in self.hyperparameters.items():
            try:
                out[name] = hp.check(given[name]) if name in given else hp.default
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class": self.class_path, "description": self.description, "task": self.task,
                "layout": self.layout, "metric": self.metric, "classes": list(self.classes) or None,
                "weights": list(self.weights) or None,
                "hyperparameters": {k: _drop_none(v.to_dict()) for k, v in self.hyperparameters.items()} or None}


@dataclass(frozen=True)
class Lineage:
    """Where a fine-tuned version came from (the ``[lineage]`` table)."""

    base: str  # "namespace/name@version"
    dataset: str  # "namespace/name@version"
    trainer: str
    hyperparameters: dict[str, int | float | bool | str] = field(default_factory=dict, hash=False)
    metrics: dict[str, float] = field(default_factory=dict, hash=False)
    base_metrics: dict[str, float] = field(default_factory=dict, hash=False)
    device: str = "cpu"
    seconds: float = 0.0

    @property
    def base_name(self) -> str:
        return self.base.rpartition("@")[0]

    @property
    def base_version(self) -> str:
        return self.base.rpartition("@")[2]

    @property
    def dataset_name(self) -> str:
        return self.dataset.rpartition("@")[0]

    @property
    def dataset_version(self) -> str:
        return self.dataset.rpartition("@")[2]

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "dataset": self.dataset, "trainer": self.trainer,
                "hyperparameters": dict(self.hyperparameters), "metrics": dict(self.metrics),
                "base_metrics": dict(self.base_metrics), "device": self.device, "seconds": self.seconds}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _bad(problems: list[Problem], where: str, message: str) -> None:
    problems.append(Problem("invalid_field", where, message))


def _finite(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def _text(raw: dict[str, Any], key: str, where: str, problems: list[Problem], *, required: bool = False,
          max_len: int = 256) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            problems.append(Problem("missing_field", f"{where}.{key}", f"{key} is required"))
        return None
    if not isinstance(value, str) or not value.strip() or "\n" in value or len(value) > max_len:
        _bad(problems, f"{where}.{key}",
                                f"{key} must be a single-line string of 1 to {max_len} characters")
        return None
    return value


def _unknown(raw: dict[str, Any], allowed: tuple[str, ...], where: str, problems: list[Problem]) -> None:
    for key in raw:
        if key not in allowed:
            problems.append(Problem("unknown_key", f"{where}.{key}",
                                    f"unknown key {key!r} (it takes: {', '.join(allowed)})"))


def parse_trainer(raw: dict[str, Any], where: str) -> tuple[Trainer | None, list[Problem]]:
    """The ``[[trainers]]`` entry at ``where`` (``trainers[0]``), or None and every problem found."""
    problems: list[Problem] = []
    _unknown(raw, _TRAINER_KEYS, where, problems)
    name = _text(raw, "name", where, problems, required=True)
    if name is not None and not _NAME_RE.match(name):
        _bad(problems, f"{where}.name", f"trainer name {name!r} must match [a-z0-9_-]{{1,64}}")
    class_path = _text(raw, "class", where, problems, required=True)
    if class_path is not None and not _CLASS_RE.match(class_path):
        _bad(problems, f"{where}.class",
                                f"class {class_path!r} must look like 'module.path:ClassName'")
    description = _text(raw, "description", where, problems, max_len=512)
    task = _text(raw, "task", where, problems, required=True)
    if task is not None and task not in TRAINER_TASKS:
        _bad(problems, f"{where}.task", f"task must be one of {', '.join(TRAINER_TASKS)}")
    layout = raw.get("layout", "coco")
    if layout not in TRAINER_LAYOUTS:
        _bad(problems, f"{where}.layout", f"layout must be one of {', '.join(TRAINER_LAYOUTS)}")
    metric = raw.get("metric", "accuracy" if task == "classification" else "map50")
    if not isinstance(metric, str) or not _METRIC_RE.match(metric):
        _bad(problems, f"{where}.metric", "metric must match [A-Za-z0-9_.-]{1,64}")
    classes = raw.get("classes", [])
    if not isinstance(classes, list) or len(classes) > MAX_TRAINER_CLASSES:
        _bad(problems, f"{where}.classes", f"classes must be a list of at most {MAX_TRAINER_CLASSES} names")
        classes = []
    for i, c in enumerate(classes):
        why = class_name_problem(c)
        if why is None and c in classes[:i]:
            why = f"class {c!r} is listed twice"
        if why is not None:
            _bad(problems, f"{where}.classes[{i}]", why)
    weights = raw.get("weights", [])
    if not isinstance(weights, list) or not all(isinstance(w, str) for w in weights):
        _bad(problems, f"{where}.weights", "weights must be a list of the package's weight paths")
        weights = []
    hps: dict[str, Hyperparameter] = {}
    raw_hps = raw.get("hyperparameters", {})
    if not isinstance(raw_hps, dict) or len(raw_hps) > MAX_HYPERPARAMETERS:
        _bad(problems, f"{where}.hyperparameters",
                                f"hyperparameters must be a table of at most {MAX_HYPERPARAMETERS} entries")
        raw_hps = {}
    for key, spec in raw_hps.items():
        hp_where = f"{where}.hyperparameters.{key}"
        hp = _hyperparameter(key, spec, hp_where, problems)
        if hp is not None:
            hps[key] = hp
    if problems or name is None or class_path is None or task is None:
        return None, problems
    return Trainer(name=name, class_path=class_path, task=task, layout=str(layout), metric=str(metric),
                   description=description, classes=tuple(classes), weights=tuple(weights), hyperparameters=hps), []


def _hyperparameter(key: str, spec: object, where: str, problems: list[Problem]) -> Hyperparameter | None:
    if not _HP_RE.match(key):
        _bad(problems, where, f"{key!r} must be a Python identifier of at most 64 characters")
        return None
    if not isinstance(spec, dict):
        _bad(problems, where, "must be a table like { default = 8, min = 1, max = 100 }")
        return None
    _unknown(spec, _HP_KEYS, where, problems)
    default = spec.get("default")
    if default is None:
        problems.append(Problem("missing_field", f"{where}.default", "default is required"))
        return None
    if not (isinstance(default, bool | str) or _finite(default)):
        _bad(problems, f"{where}.default", "default must be a number, true/false or a string")
        return None
    bounds: dict[str, float | None] = {}
    for side in ("min", "max"):
        value = spec.get(side)
        if value is not None and (isinstance(default, bool | str) or not _finite(value)):
            _bad(problems, f"{where}.{side}", f"{side} must be a finite number, for a number")
            return None
        bounds[side] = None if value is None else float(value)
    description = _text(spec, "description", where, problems, max_len=512)
    hp = Hyperparameter(key, default, bounds["min"], bounds["max"], description)
    if hp.min is not None and hp.max is not None and hp.min > hp.max:
        _bad(problems, where, "min is greater than max")
        return None
    try:
        hp.check(default)
    except ValueError as exc:
        _bad(problems, f"{where}.default", f"the default breaks its own rule: {exc}")
        return None
    return hp


def parse_ref(value: object) -> tuple[str, str] | None:
    """``("namespace/name", "version")`` from ``"namespace/name@version"``, or None if malformed."""
    if not isinstance(value, str):
        return None
    m = _REF_RE.match(value)
    return None if m is None else (m["name"], m["version"])


def parse_lineage(raw: object) -> tuple[Lineage | None, list[Problem]]:
    """The ``[lineage]`` table, or None and every problem found (names checked as package names
    and versions as SemVer by the caller, which has those rules)."""
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        return None, [Problem("invalid_field", "lineage", "[lineage] must be a table")]
    _unknown(raw, _LINEAGE_KEYS, "lineage", problems)
    refs: dict[str, str] = {}
    for key in ("base", "dataset"):
        value = _text(raw, key, "lineage", problems, required=True, max_len=240)
        if value is not None and parse_ref(value) is None:
            _bad(problems, f"lineage.{key}", f"{key} must be 'namespace/name@version'")
        elif value is not None:
            refs[key] = value
    trainer = _text(raw, "trainer", "lineage", problems, required=True, max_len=64)
    hps = raw.get("hyperparameters", {})
    if not isinstance(hps, dict) or len(hps) > MAX_HYPERPARAMETERS or not all(
            _HP_RE.match(k) and (isinstance(v, bool) or _finite(v) or (isinstance(v, str) and len(v) <= 256))
            for k, v in hps.items()):
        _bad(problems, "lineage.hyperparameters",
                                "hyperparameters must be a table of numbers, booleans or short strings")
        hps = {}
    metric_tables: dict[str, dict[str, float]] = {}
    for key in ("metrics", "base_metrics"):
        table = raw.get(key, {})
        if not isinstance(table, dict) or len(table) > 64 or not all(
                isinstance(k, str) and _METRIC_RE.match(k) and _finite(v) for k, v in table.items()):
            _bad(problems, f"lineage.{key}", f"{key} must be a table of finite numbers")
            table = {}
        metric_tables[key] = {k: float(v) for k, v in table.items()}
    device = _text(raw, "device", "lineage", problems, max_len=64) or "cpu"
    seconds = raw.get("seconds", 0.0)
    if not _finite(seconds) or seconds < 0:
        _bad(problems, "lineage.seconds", "seconds must be a number >= 0")
        seconds = 0.0
    if problems or trainer is None or len(refs) != 2:
        return None, problems
    return Lineage(base=refs["base"], dataset=refs["dataset"], trainer=trainer, hyperparameters=dict(hps),
                   metrics=metric_tables["metrics"], base_metrics=metric_tables["base_metrics"],
                   device=device, seconds=float(seconds)), []

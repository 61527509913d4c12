'''A new package that works from the first minute: what ``cvflow init`` writes.

The scaffold passes ``cvflow validate``, publishes as it is, and ``cvflow run`` serves it.
Its solver is a real (if tiny) model that needs only Pillow: it calls an image "bright" or
"dark" from the mean of its grey levels, against a threshold kept in
``weights/threshold.json``, so the author sees where code, weights and manifest each go
before replacing them.
'''

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cvflow.errors import CVFlowError, ValidationError
from cvflow.manifest import MANIFEST_FILENAME, TASKS, parse_manifest
from cvflow.names import PackageName

__all__ = ["DEFAULT_TASK", "ScaffoldExistsError", "scaffold"]

DEFAULT_TASK = "classification"
WEIGHTS_FILE = "weights/threshold.json"

_MANIFEST = """\
# The manifest: the hub reads it, and `cvflow install` installs from it.
# Every key is explained in the cvflow client's README ("The manifest").

[package]
name = {name}
version = "0.1.0"
description = {description}
task = {task}
# license = "MIT"                 # an SPDX expression
# tags = ["example"]
requirements = ["pillow>=10"]     # Python requirements (PEP 508), installed into the package's venv

# [dependencies]                  # other packages: "namespace/name" = "range"
# "demo/face-utility" = "^1.0"

[[solvers]]
name = "predict"
class = "solver:Solver"
description = "Call an image bright or dark from the mean of its grey levels"
# What the hub shows; the runner checks the inputs against infer()'s type hints.
inputs = {{ image = "image: any photo Pillow reads" }}
outputs = {{ label = "bright or dark", mean = "mean grey level, 0-255", threshold = "the threshold used" }}

[[weights]]
path = "{weights}"
"""

_SOLVER = '''\
"""The solver of {name}: replace the body of ``infer`` with your model.

A solver is a class. Its constructor runs once and loads what the model needs (here the
threshold in weights/threshold.json); ``infer`` answers one request with data that
``json.dumps`` accepts. Its type hints are its request schema: ``cvflow run`` accepts the
image as a multipart upload or as base64 JSON and hands it over as an ``Image``.
"""

import json
from typing import TypedDict

from cvflow.solver import Context, Image


class Brightness(TypedDict):
    label: str
    mean: float
    threshold: float


class Solver:
    def __init__(self, context: Context) -> None:
        self.threshold = json.loads(context.weight("{weights}").read_text())["threshold"]

    def infer(self, image: Image) -> Brightness:
        grey = image.to_pil("L")
        histogram = grey.histogram()
        mean = sum(level * count for level, count in enumerate(histogram)) / (grey.width * grey.height)
        label = "bright" if mean >= self.threshold else "dark"
        return {{"label": label, "mean": round(mean, 3), "threshold": self.threshold}}
'''

_README = """\
# {name}

{description}

## Use it

```console
$ cvflow install {name}
$ cvflow run {name}
```

The `predict` solver takes an image and answers
`{{"label": "bright" | "dark", "mean": ..., "threshold": ...}}`:

```console
$ curl -F image=@photo.jpg http://127.0.0.1:PORT/solvers/predict/infer
```

## Make it yours

1. Put your model's code in `solver.py` and its weights in `weights/`; list each weight
   under `[[weights]]` in `cvflow.toml`.
2. `cvflow validate .` checks the manifest and files the way the hub will.
3. `cvflow publish .` uploads what the hub lacks and publishes the version. Versions are
   immutable: raise `version` in `cvflow.toml` for every release.
"""


class ScaffoldExistsError(CVFlowError):
    """The directory already holds a package (or a file the scaffold would replace)."""

    code = "scaffold_exists"


@dataclass(frozen=True)
class Scaffold:
    root: Path
    written: list[str]
    kept: list[str]


def scaffold(directory: str | Path, name: str, *, task: str = DEFAULT_TASK, description: str | None = None) -> Scaffold:
    """Write a new package named ``name`` into ``directory`` (created if missing).

    An existing ``README.md`` is kept; nothing else is ever replaced.

    Raises:
        InvalidNameError: ``name`` is not ``namespace/name``.
        ValidationError: ``task`` is not a known task.
        ScaffoldExistsError: ``cvflow.toml``, ``solver.py`` or the weights file exists.
    """
    pkg = PackageName.parse(name)
    if task not in TASKS:
        raise ValidationError(f"unknown task {task!r}; choose one of {', '.join(sorted(TASKS))}")
    root = Path(directory)
    description = description or f"{pkg.name}: a CVFlow package"
    files = {
        MANIFEST_FILENAME: _MANIFEST.format(
            name=_toml_str(str(pkg)), description=_toml_str(description), task=_toml_str(task), weights=WEIGHTS_FILE,
        ),
        "solver.py": _SOLVER.format(name=pkg, weights=WEIGHTS_FILE),
        WEIGHTS_FILE: json.dumps({"threshold": 128}, indent=2) + "\n",
        "README.md": _README.format(name=pkg, description=description),
    }
    parse_manifest(files[MANIFEST_FILENAME])  # the template and the inputs make a valid manifest
    clashes = [p for p in files if p != "README.md" and (root / p).exists()]
    if clashes:
        raise ScaffoldExistsError(
            f"{root} already has {', '.join(clashes)}; cvflow init never replaces files"
            + (" (it is a package already)" if MANIFEST_FILENAME in clashes else "")
        )
    written, kept = [], []
    for rel, text in files.items():
        target = root / rel
        if target.exists():
            kept.append(rel)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as f:
            f.write(text)
        written.append(rel)
    return Scaffold(root, written, kept)


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string

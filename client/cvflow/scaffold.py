'''A new package that works from the first minute: what ``cvflow init`` writes.

The scaffold passes ``cvflow validate``, publishes as it is, and ``cvflow run`` serves it.
Its solver is a real (if tiny) model that needs only Pillow: it calls an image "bright" or
"dark" from the mean of its grey levels, against a threshold kept in
``weights/threshold.json``, so the author sees where code, weights and manifest each go
before replacing them.

With ``trainer=True`` (``cvflow init --trainer``) it also writes ``trainer.py`` and a
``[[trainers]]`` entry: a trainer that fits that threshold to labelled images ("bright" and
"dark"), with Pillow alone, implementing ``cvflow.training.api`` (docs/training.md), so
``cvflow finetune`` works on the new package before any of it is replaced.
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

{trainers}[[weights]]
path = "{weights}"
"""

_TRAINERS = """\
# A trainer fine-tunes the model on a dataset package: `cvflow finetune` and training workers
# run it in the package's venv (docs/training.md). Its weights are the files it writes anew.
[[trainers]]
name = "finetune"
class = "trainer:Finetune"
description = "Fit the threshold to images labelled bright or dark"
task = "classification"
layout = "imagefolder"
classes = ["bright", "dark"]
metric = "accuracy"
weights = ["{weights}"]
hyperparameters = {{ step = {{ default = 1, min = 1, max = 64, description = "grey levels between tries" }} }}

"""

_TRAINER = '''\
"""The trainer of {name}: fits the solver's threshold to images labelled "bright" or "dark".

``cvflow finetune`` and ``cvflow worker --train`` build this class with a ``Context``
(``cvflow.training.api``; docs/training.md), ask ``evaluate`` how the package's own weights do
on the validation images, then call ``fit``. Replace the bodies with your model's training;
the shape stays the same:

* read the current weights from ``context.package_dir``, and read images as the solver does;
* report with ``context.progress``, ``context.epoch_end`` (one point of the curves per epoch),
  ``context.preview`` (training inputs as the model sees them) and ``context.log``;
* a run longer than a minute saves ``context.save_checkpoint(tensors, state)`` after each epoch
  and starts from ``context.load_checkpoint()`` when it returns something (for torch,
  ``cvflow.training.torch_state.flatten`` and ``restore`` turn a model and its optimiser into
  tensors and back); under torchrun, wrap the model in DistributedDataParallel and train on
  every ``context.world_size``-th batch from ``context.rank``;
* write each file of ``[[trainers]] weights`` to ``context.output_path(...)``;
* return the validation metrics, the declared ``metric`` (higher is better) among them.
"""

import json

from cvflow.solver import Image
from cvflow.training.api import Context, Sample, TrainingData
from solver import mean_grey

WEIGHTS = "{weights}"


def label_of(mean: float, threshold: float) -> str:
    """What the solver answers for an image of this mean grey level."""
    return "bright" if mean >= threshold else "dark"


class Finetune:
    def __init__(self, context: Context) -> None:
        self.context = context
        self.threshold = float(json.loads((context.package_dir / WEIGHTS).read_text())["threshold"])
        self.step = int(context.hyperparameters["step"])

    def evaluate(self, samples: list[Sample]) -> dict[str, float]:
        right = sum(label_of(mean_grey(Image.open(s.image)), self.threshold) == s.label for s in samples)
        return {{"accuracy": right / max(len(samples), 1)}}

    def fit(self, data: TrainingData) -> dict[str, float]:
        ctx = self.context
        means = [mean_grey(Image.open(s.image)) for s in data.train]
        labels = [s.label for s in data.train]
        ctx.preview([Image.open(s.image).to_pil("L") for s in data.train[:16]], labels[:16])
        # One "epoch": every threshold tried; the best ones on the training images win (their middle).
        candidates = list(range(0, 257, self.step))
        scores = []
        for i, threshold in enumerate(candidates, start=1):
            scores.append(sum(label_of(m, threshold) == label for m, label in zip(means, labels)))
            ctx.progress(i, len(candidates), epoch=1)
        best = [t for t, right in zip(candidates, scores) if right == max(scores)]
        self.threshold = float(best[len(best) // 2])
        metrics = self.evaluate(data.val)
        ctx.epoch_end(1, loss=1 - max(scores) / max(len(means), 1), metrics=metrics)
        ctx.log(f"threshold {{self.threshold:g}}: val accuracy {{metrics['accuracy']:.3f}}")
        ctx.output_path(WEIGHTS).write_text(json.dumps({{"threshold": self.threshold}}, indent=2) + "\\n")
        return metrics
'''

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


def mean_grey(image: Image) -> float:
    """The mean grey level, 0-255: what the model looks at (its trainer uses it too)."""
    grey = image.to_pil("L")
    histogram = grey.histogram()
    return sum(level * count for level, count in enumerate(histogram)) / (grey.width * grey.height)


class Solver:
    def __init__(self, context: Context) -> None:
        self.threshold = json.loads(context.weight("{weights}").read_text())["threshold"]

    def infer(self, image: Image) -> Brightness:
        mean = mean_grey(image)
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


_README_TRAINER = """
## Fine-tune it

`trainer.py` fits the threshold to a classification dataset whose classes are `bright` and
`dark` (`[[trainers]]` in `cvflow.toml`):

```console
$ cvflow finetune NS/NAME@VERSION --data NS/DATASET@VERSION --to NS/NAME-tuned
```

publishes the fitted threshold as a new package version that records where it came from.
"""


class ScaffoldExistsError(CVFlowError):
    """The directory already holds a package (or a file the scaffold would replace)."""

    code = "scaffold_exists"


@dataclass(frozen=True)
class Scaffold:
    root: Path
    written: list[str]
    kept: list[str]


def scaffold(directory: str | Path, name: str, *, task: str = DEFAULT_TASK, description: str | None = None,
             trainer: bool = False) -> Scaffold:
    """Write a new package named ``name`` into ``directory`` (created if missing); with
    ``trainer``, its ``trainer.py`` and ``[[trainers]]`` entry too.

    An existing ``README.md`` is kept; nothing else is ever replaced.

    Raises:
        InvalidNameError: ``name`` is not ``namespace/name``.
        ValidationError: ``task`` is not a known task, or ``trainer`` with a task other than
            classification (the scaffold's trainer labels images bright or dark).
        ScaffoldExistsError: ``cvflow.toml``, ``solver.py``, ``trainer.py`` or the weights file exists.
    """
    pkg = PackageName.parse(name)
    if task not in TASKS:
        raise ValidationError(f"unknown task {task!r}; choose one of {', '.join(sorted(TASKS))}")
    if trainer and task != "classification":
        raise ValidationError(f"--trainer writes a classification trainer (images labelled bright or dark);"
                              f" a {task} package writes its own trainer (docs/solvers.md, \"Trainers\")")
    root = Path(directory)
    description = description or f"{pkg.name}: a CVFlow package"
    files = {
        MANIFEST_FILENAME: _MANIFEST.format(
            name=_toml_str(str(pkg)), description=_toml_str(description), task=_toml_str(task), weights=WEIGHTS_FILE,
            trainers=_TRAINERS.format(weights=WEIGHTS_FILE) if trainer else "",
        ),
        "solver.py": _SOLVER.format(name=pkg, weights=WEIGHTS_FILE),
        WEIGHTS_FILE: json.dumps({"threshold": 128}, indent=2) + "\n",
        "README.md": _README.format(name=pkg, description=description),
    }
    if trainer:
        files["trainer.py"] = _TRAINER.format(name=pkg, weights=WEIGHTS_FILE)
        files["README.md"] += _README_TRAINER
    parse_manifest(files[MANIFEST_FILENAME])  # the template and the inputs make a valid manifest
    for rel in ("solver.py", "trainer.py"):
        if rel in files:
            compile(files[rel], rel, "exec")  # and valid Python
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

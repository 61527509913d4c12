"""What every digits classifier's ``train.py`` shares, at build time only: the data, the held-out
split its accuracy is measured on, how latency is measured, and how ``[metrics]`` is written.

    import sys; sys.path.insert(0, str(HERE.parent))   # examples/, beside the package
    from digits_common import Split, latency_ms, load_split, write_metrics

One copy, so the numbers of demo/digits-lenet, demo/digits-logreg, demo/digits-mlp,
demo/digits-knn and demo/digits-svm are measured the same way and can be put on one chart. An installed package
never imports this module: its solver needs only its own files.

Nothing is downloaded: the digits (1,797 8x8 images, 0..16 ink) ship inside scikit-learn.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0
TEST_SIZE = 0.2
#: How the held-out split is made (also written into demo/digits-lenet's eval/holdout.json).
SPLIT = f"train_test_split(test_size={TEST_SIZE}, random_state={SEED}, stratify=target): the test part"
#: Calls before timing starts, then timed calls; the median is the latency.
WARMUP, RUNS = 50, 500


@dataclass(frozen=True)
class Split:
    images: np.ndarray     # (1797, 8, 8) ink 0..16, as scikit-learn ships them
    target: np.ndarray     # (1797,) digits 0..9
    train_idx: np.ndarray  # the 80 % a model may learn from
    test_idx: np.ndarray   # the held-out 20 % its accuracy is measured on

    def inputs(self, idx: np.ndarray) -> np.ndarray:
        """The images at ``idx`` as the solvers read an upload: (N, 64) float32, ink 0..1, row-major."""
        return (self.images[idx].reshape(len(idx), -1) / 16.0).astype(np.float32)


def load_split() -> Split:
    """scikit-learn's digits and the stratified 80/20 split with seed 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = np.arange(len(digits.target))
    train_idx, test_idx = train_test_split(index, test_size=TEST_SIZE, random_state=SEED, stratify=digits.target)
    return Split(digits.images, digits.target, train_idx, test_idx)


def latency_ms(forward: Callable[[Any], object], one: Any) -> float:
    """The median time of ``forward(one)`` in milliseconds: one image's forward pass on this CPU."""
    for _ in range(WARMUP):
        forward(one)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        forward(one)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def select(estimator: Any, grid: dict[str, list[Any]], split: Split) -> Any:
    """``estimator`` with the hyperparameters of ``grid`` that 5-fold cross-validation on the
    training part likes best, refitted on all of it: the held-out part never picks a setting."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    folds = StratifiedKFold(5, shuffle=True, random_state=SEED)
    search = GridSearchCV(estimator, grid, cv=folds).fit(split.inputs(split.train_idx), split.target[split.train_idx])
    print(f"cross-validation picked {search.best_params_} (accuracy {search.best_score_:.4f} over 5 folds)")
    return search.best_estimator_


def save_weights(path: Path, weights: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write ``weights`` as safetensors at ``path``, each array in C order (safetensors writes an
    array's buffer as it lies, and scikit-learn's fitted arrays may be Fortran-ordered)."""
    from safetensors.numpy import save_file

    path.parent.mkdir(exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(path), metadata=metadata)


def measure(model: Callable[[np.ndarray], np.ndarray], split: Split) -> dict[str, float]:
    """``model`` (N x 64 inputs -> N x 10 probabilities) on the held-out part: accuracy, and the
    latency of one image."""
    inputs = split.inputs(split.test_idx)
    accuracy = float(np.mean(model(inputs).argmax(axis=1) == split.target[split.test_idx]))
    return {"accuracy": accuracy, "latency_ms": latency_ms(model, inputs[:1])}


def holdout(split: Split) -> dict[str, Any]:
    """The held-out split as JSON can hold it (``eval/holdout.json``): anyone can check a number through a runner."""
    return {
        "source": "sklearn.datasets.load_digits",
        "split": SPLIT,
        "pixels": "8x8 row-major ink intensities, 0 (paper) .. 16 (ink)",
        "indices": [int(i) for i in split.test_idx],
        "labels": [int(split.target[i]) for i in split.test_idx],
        "images": [[int(v) for v in split.images[i].ravel()] for i in split.test_idx],
    }


def format_metric(name: str, value: float) -> str:
    if name == "accuracy":
        return f"{value:.4f}"
    if name == "latency_ms":
        return f"{value:.3f}"
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def write_metrics(manifest: Path, metrics: dict[str, float]) -> None:
    """Replace the ``[metrics]`` table of ``manifest`` (a cvflow.toml), keeping the rest of the file as written."""
    text = manifest.read_text()
    table = "[metrics]\n" + "".join(f"{k} = {format_metric(k, v)}\n" for k, v in metrics.items())
    text, found = re.subn(r"(?ms)^\[metrics\]\n.*?(?=^\[|\Z)", table, text)
    if not found:
        text = text.rstrip("\n") + "\n\n" + table
    manifest.write_text(text)

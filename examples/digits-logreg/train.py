"""Train the logistic regression on scikit-learn's bundled digits and write what the package ships.

    python train.py            # needs scikit-learn, safetensors, numpy; run from a source checkout

Writes, next to this file:

* ``weights/model.safetensors`` - ``coef`` (10, 64) and ``intercept`` (10,), float32;
* ``[metrics]`` of ``cvflow.toml`` - accuracy on the held-out split, latency and parameter count,
  measured by the package's own numpy model (``digits_logreg.model``) on the file as written.

The data, the held-out split (demo/digits-lenet's: 20 %, stratified, seed 0) and the latency
measurement are ``examples/digits_common.py``'s, so the digits classifiers' numbers compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from digits_logreg.model import LogisticRegression
from sklearn import linear_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/digits_common.py: build time only
from digits_common import load_split, measure, save_weights, select, write_metrics  # noqa: E402

WEIGHTS = HERE / "weights" / "model.safetensors"


def main() -> None:
    split = load_split()
    fitted = select(linear_model.LogisticRegression(max_iter=5000), {"C": [0.1, 0.3, 1.0, 3.0, 10.0]}, split)
    weights = {"coef": fitted.coef_.astype(np.float32), "intercept": fitted.intercept_.astype(np.float32)}
    save_weights(WEIGHTS, weights, {"architecture": "multinomial logistic regression, 64 -> 10", "C": str(fitted.C)})
    metrics = measure(LogisticRegression.load(WEIGHTS), split)
    write_metrics(HERE / "cvflow.toml", {**metrics, "params": sum(w.size for w in weights.values())})
    print(f"held-out accuracy {metrics['accuracy']:.4f} on {len(split.test_idx)} images;"
          f" forward pass p50 {metrics['latency_ms']:.3f} ms; {WEIGHTS.stat().st_size} bytes of weights")


if __name__ == "__main__":
    main()

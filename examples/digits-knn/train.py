"""Pick k for the nearest-neighbour vote on scikit-learn's bundled digits and write what the package ships.

    python train.py            # needs scikit-learn, safetensors, numpy; run from a source checkout

Writes, next to this file:

* ``weights/model.safetensors`` - the training images (``images``, uint8 0..16), their ``labels``
  and ``k``: a nearest-neighbour model is its training set;
* ``[metrics]`` of ``cvflow.toml`` - accuracy on the held-out split, latency and the count of
  numbers stored, measured by the package's own numpy model (``digits_knn.model``) on the file
  as written.

The data, the held-out split (demo/digits-lenet's: 20 %, stratified, seed 0) and the latency
measurement are ``examples/digits_common.py``'s, so the digits classifiers' numbers compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from digits_knn.model import NearestNeighbours
from sklearn.neighbors import KNeighborsClassifier

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/digits_common.py: build time only
from digits_common import load_split, measure, save_weights, select, write_metrics  # noqa: E402

WEIGHTS = HERE / "weights" / "model.safetensors"
GRID = {"n_neighbors": [3, 5, 7]}  # k >= 3, so that the probabilities say more than yes or no


def main() -> None:
    split = load_split()
    fitted = select(KNeighborsClassifier(weights="distance"), GRID, split)
    k = fitted.n_neighbors
    weights = {"images": split.images[split.train_idx].reshape(len(split.train_idx), -1).astype(np.uint8),
               "labels": split.target[split.train_idx].astype(np.uint8),
               "k": np.array([k], dtype=np.int64)}
    save_weights(WEIGHTS, weights, {"architecture": f"{k}-nearest neighbours, Euclidean, votes weighted 1/distance"})
    metrics = measure(NearestNeighbours.load(WEIGHTS), split)
    stored = weights["images"].size + weights["labels"].size
    write_metrics(HERE / "cvflow.toml", {**metrics, "params": stored})
    print(f"held-out accuracy {metrics['accuracy']:.4f} on {len(split.test_idx)} images;"
          f" forward pass p50 {metrics['latency_ms']:.3f} ms; {WEIGHTS.stat().st_size} bytes of weights")


if __name__ == "__main__":
    main()

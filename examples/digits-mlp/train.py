"""Train the multilayer perceptron on scikit-learn's bundled digits and write what the package ships.

    python train.py            # needs scikit-learn, safetensors, numpy; run from a source checkout

Writes, next to this file:

* ``weights/model.safetensors`` - ``w0`` (64, H), ``b0``, ``w1`` (H, 10), ``b1``, float32;
* ``[metrics]`` of ``cvflow.toml`` - accuracy on the held-out split, latency and parameter count,
  measured by the package's own numpy model (``digits_mlp.model``) on the file as written.

The data, the held-out split (demo/digits-lenet's: 20 %, stratified, seed 0) and the latency
measurement are ``examples/digits_common.py``'s, so the digits classifiers' numbers compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from digits_mlp.model import MLP
from sklearn.neural_network import MLPClassifier

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/digits_common.py: build time only
from digits_common import SEED, load_split, measure, save_weights, select, write_metrics  # noqa: E402

WEIGHTS = HERE / "weights" / "model.safetensors"
GRID = {"hidden_layer_sizes": [(32,), (64,), (128,)], "alpha": [1e-4, 1e-3, 1e-2]}


def main() -> None:
    split = load_split()
    fitted = select(MLPClassifier(max_iter=2000, random_state=SEED), GRID, split)  # ReLU, Adam, softmax out
    weights: dict[str, np.ndarray] = {}
    for i, (w, b) in enumerate(zip(fitted.coefs_, fitted.intercepts_, strict=True)):
        weights[f"w{i}"], weights[f"b{i}"] = w.astype(np.float32), b.astype(np.float32)
    sizes = " -> ".join(str(n) for n in [64, *fitted.hidden_layer_sizes, 10])
    save_weights(WEIGHTS, weights, {"architecture": f"MLP {sizes}, ReLU", "alpha": str(fitted.alpha)})
    metrics = measure(MLP.load(WEIGHTS), split)
    write_metrics(HERE / "cvflow.toml", {**metrics, "params": sum(w.size for w in weights.values())})
    print(f"held-out accuracy {metrics['accuracy']:.4f} on {len(split.test_idx)} images;"
          f" forward pass p50 {metrics['latency_ms']:.3f} ms; {WEIGHTS.stat().st_size} bytes of weights")


if __name__ == "__main__":
    main()

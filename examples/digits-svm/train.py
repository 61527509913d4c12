"""Fit the RBF-kernel support-vector machine on scikit-learn's bundled digits and write what the package ships.

    python train.py            # needs scikit-learn (< 1.11: SVC's probability), safetensors, numpy;
                               # run from a source checkout

Writes, next to this file:

* ``weights/model.safetensors`` - the support vectors (uint8 0..16: training digits as
  scikit-learn ships them), their dual coefficients, the 45 pairs' intercepts and sigmoids, gamma;
* ``[metrics]`` of ``cvflow.toml`` - accuracy on the held-out split, latency and the count of
  numbers stored, measured by the package's own numpy model (``digits_svm.model``) on the file
  as written.

The data, the held-out split (demo/digits-lenet's: 20 %, stratified, seed 0) and the latency
measurement are ``examples/digits_common.py``'s, so the digits classifiers' numbers compare.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from digits_svm.model import SupportVectorMachine
from sklearn.svm import SVC

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/digits_common.py: build time only
from digits_common import SEED, load_split, measure, save_weights, select, write_metrics  # noqa: E402

WEIGHTS = HERE / "weights" / "model.safetensors"
GRID = {"C": [1.0, 3.0, 10.0]}  # gamma: scikit-learn's "scale", 1 / (64 x the pixels' variance)


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)  # SVC(probability=True) is deprecated from 1.9
    split = load_split()
    fitted = select(SVC(kernel="rbf", gamma="scale", probability=True, random_state=SEED), GRID, split)
    vectors = np.rint(fitted.support_vectors_ * 16)
    assert np.allclose(vectors / 16, fitted.support_vectors_)  # support vectors are training digits
    weights = {"support_vectors": vectors.astype(np.uint8), "n_support": fitted.n_support_.astype(np.int64),
               "dual_coef": fitted.dual_coef_.astype(np.float32), "intercept": fitted.intercept_.astype(np.float32),
               "prob_a": fitted.probA_.astype(np.float32), "prob_b": fitted.probB_.astype(np.float32),
               "gamma": np.array([fitted._gamma], dtype=np.float32)}
    save_weights(WEIGHTS, weights, {"architecture": f"RBF-kernel SVM, one against one, {len(vectors)} support vectors",
                                    "C": str(fitted.C)})
    metrics = measure(SupportVectorMachine.load(WEIGHTS), split)
    stored = sum(w.size for k, w in weights.items() if k != "gamma")
    write_metrics(HERE / "cvflow.toml", {**metrics, "params": stored})
    print(f"held-out accuracy {metrics['accuracy']:.4f} on {len(split.test_idx)} images;"
          f" forward pass p50 {metrics['latency_ms']:.3f} ms; {WEIGHTS.stat().st_size} bytes of weights")


if __name__ == "__main__":
    main()

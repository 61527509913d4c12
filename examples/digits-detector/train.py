"""Train the digit detector on base-style canvases and write what the package ships.

    python train.py            # needs torch==2.13.0, scikit-learn, safetensors, numpy, pillow

Writes, next to this file:

* ``weights/model.safetensors`` - the trained weights (safetensors: loading them runs no code);
* ``eval/holdout.json``        - precision, recall and mAP@0.5 on held-out canvases of the base
  style (what it was trained on) and of the shifted style (the demo annotation project's), and
  a fine-tune probe: the same numbers after a short fine-tune on 50 shifted canvases;
* ``[metrics]`` of ``cvflow.toml`` - those numbers and the forward-pass latency on a demo image,
  measured by ``measure.py`` (which also measures it alone, for the shipped weights).

Nothing is downloaded: the digits (1,797 8x8 images) ship inside scikit-learn. Training and
evaluation canvases use disjoint digits (``data.digit_split``). About two minutes on two CPU cores.
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

import torch
from digits_detector.data import BASE, SHIFTED, canvases
from digits_detector.metrics import evaluate
from digits_detector.model import DigitDetector
from digits_detector.train import train
from measure import forward_latency
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
SEED = 0
TRAIN = {"style": "base", "seed": 1, "canvases": 3000, "epochs": 6, "lr": 3e-3}
EVAL = {"base": (BASE, 2), "shifted": (SHIFTED, 3)}  # style, seed; 300 canvases of held-out digits each
PROBE = {"style": "shifted", "seed": 100, "canvases": 50, "epochs": 30, "lr": 1e-3}
THRESHOLD = 0.3  # the solver's default score threshold: precision and recall are of what it returns


def main() -> None:
    torch.manual_seed(SEED)
    started = time.perf_counter()
    model = DigitDetector()
    train(model, canvases(BASE, TRAIN["seed"], TRAIN["canvases"]), epochs=TRAIN["epochs"], lr=TRAIN["lr"],
          log=print)
    held_out = {name: canvases(style, seed, 300, digits="test") for name, (style, seed) in EVAL.items()}
    results = {name: evaluate(model, samples, threshold=THRESHOLD) for name, samples in held_out.items()}

    tuned = copy.deepcopy(model)
    train(tuned, canvases(SHIFTED, PROBE["seed"], PROBE["canvases"]), epochs=PROBE["epochs"], lr=PROBE["lr"])
    probe = {name: evaluate(tuned, samples, threshold=THRESHOLD) for name, samples in held_out.items()}

    latency_ms = forward_latency(model)
    (HERE / "weights").mkdir(exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(HERE / "weights" / "model.safetensors"), metadata={"architecture": "CenterNet-digits-s4"})
    (HERE / "eval").mkdir(exist_ok=True)
    report = {
        "source": "sklearn.datasets.load_digits, drawn on canvases by digits_detector.data",
        "split": "train_test_split(test_size=0.2, random_state=0, stratify=target): training canvases use the"
                 " training part, evaluation canvases only the test part",
        "iou": 0.5, "threshold": THRESHOLD,
        "training": TRAIN,
        "sets": {name: {"style": style.name, "seed": seed, "canvases": 300, "digits": "test"}
                 for name, (style, seed) in EVAL.items()},
        "results": results,
        "finetune_probe": {**PROBE, "results": probe},
    }
    (HERE / "eval" / "holdout.json").write_text(json.dumps(report, indent=1) + "\n")
    write_metrics({"map50": results["base"]["map50"], "precision": results["base"]["precision"],
                   "recall": results["base"]["recall"], "map50_shifted": results["shifted"]["map50"],
                   "precision_shifted": results["shifted"]["precision"],
                   "recall_shifted": results["shifted"]["recall"], "latency_ms": round(latency_ms, 3)})
    for name in held_out:
        print(f"{name}: {results[name]} -> after the fine-tune probe: {probe[name]}")
    print(f"forward pass p50 {latency_ms:.3f} ms; {time.perf_counter() - started:.0f} s in all")


def write_metrics(metrics: dict[str, float]) -> None:
    """Replace the ``[metrics]`` table of cvflow.toml, keeping the rest of the file as written."""
    path = HERE / "cvflow.toml"
    text = path.read_text()
    table = "[metrics]\n" + "".join(f"{k} = {v}\n" for k, v in metrics.items())
    text, found = re.subn(r"(?ms)^\[metrics\]\n.*?(?=^\[|\Z)", table, text)
    if not found:
        text = text.rstrip("\n") + "\n\n" + table
    path.write_text(text)


if __name__ == "__main__":
    main()

"""Train the LeNet on scikit-learn's bundled digits and write what the package ships.

    python train.py            # needs torch==2.13.0, scikit-learn, safetensors, numpy

Writes, next to this file:

* ``weights/model.safetensors`` - the trained weights (safetensors: loading them runs no code);
* ``eval/holdout.json``        - the held-out split (20 %, stratified, seed 0) the accuracy is
  measured on, so anyone can check the number through the REST runner;
* ``[metrics]`` of ``cvflow.toml`` - accuracy on that split and the forward-pass latency.

Nothing is downloaded: the digits (1,797 8x8 images, 0..16 ink) ship inside scikit-learn.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from digits_lenet.model import SIDE, LeNet
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 0
EPOCHS = 60


def shifted(x: torch.Tensor) -> torch.Tensor:
    """Each image moved by up to one pixel in each direction (zeros come in): cheap augmentation."""
    out = torch.zeros_like(x)
    dy, dx = np.random.randint(-1, 2, size=2)
    ys, yd = (slice(0, SIDE - dy), slice(dy, SIDE)) if dy >= 0 else (slice(-dy, SIDE), slice(0, SIDE + dy))
    xs, xd = (slice(0, SIDE - dx), slice(dx, SIDE)) if dx >= 0 else (slice(-dx, SIDE), slice(0, SIDE + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def main() -> None:
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    digits = load_digits()
    index = np.arange(len(digits.target))
    train_idx, test_idx = train_test_split(index, test_size=0.2, random_state=SEED, stratify=digits.target)
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    labels = torch.tensor(digits.target, dtype=torch.long)

    model = LeNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(EPOCHS):
        model.train()
        for batch in torch.randperm(len(train_idx)).split(64):
            rows = torch.as_tensor(train_idx)[batch]
            optimiser.zero_grad()
            loss = loss_fn(model(shifted(images[rows])), labels[rows])
            loss.backward()
            optimiser.step()

    model.eval()
    with torch.inference_mode():
        predicted = model(images[test_idx]).argmax(dim=1)
    accuracy = float((predicted == labels[test_idx]).float().mean())
    one = images[test_idx[:1]]
    with torch.inference_mode():
        for _ in range(50):
            model(one)
        times = []
        for _ in range(500):
            start = time.perf_counter()
            model(one)
            times.append(time.perf_counter() - start)
    latency_ms = statistics.median(times) * 1000

    (HERE / "weights").mkdir(exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(HERE / "weights" / "model.safetensors"), metadata={"architecture": "LeNet-8x8"})
    (HERE / "eval").mkdir(exist_ok=True)
    holdout = {
        "source": "sklearn.datasets.load_digits",
        "split": f"train_test_split(test_size=0.2, random_state={SEED}, stratify=target): the test part",
        "pixels": "8x8 row-major ink intensities, 0 (paper) .. 16 (ink)",
        "indices": [int(i) for i in test_idx],
        "labels": [int(digits.target[i]) for i in test_idx],
        "images": [[int(v) for v in digits.images[i].ravel()] for i in test_idx],
    }
    (HERE / "eval" / "holdout.json").write_text(json.dumps(holdout, separators=(",", ":")) + "\n")
    write_metrics(accuracy, latency_ms)
    print(f"held-out accuracy {accuracy:.4f} on {len(test_idx)} images; forward pass p50 {latency_ms:.3f} ms")


def write_metrics(accuracy: float, latency_ms: float) -> None:
    """Replace the ``[metrics]`` table of cvflow.toml, keeping the rest of the file as written."""
    path = HERE / "cvflow.toml"
    text = path.read_text()
    table = f"[metrics]\naccuracy = {accuracy:.4f}\nlatency_ms = {latency_ms:.3f}\n"
    text, found = re.subn(r"(?ms)^\[metrics\]\n.*?(?=^\[|\Z)", table, text)
    if not found:
        text = text.rstrip("\n") + "\n\n" + table
    path.write_text(text)


if __name__ == "__main__":
    main()

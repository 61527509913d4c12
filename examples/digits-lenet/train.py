"""Train the LeNet on scikit-learn's bundled digits and write what the package ships.

    python train.py            # needs torch==2.13.0, scikit-learn, safetensors, numpy

Writes, next to this file:

* ``weights/model.safetensors`` - the trained weights (safetensors: loading them runs no code);
* ``eval/holdout.json``        - the held-out split (20 %, stratified, seed 0) the accuracy is
  measured on, so anyone can check the number through the REST runner;
* ``[metrics]`` of ``cvflow.toml`` - accuracy on that split and the forward-pass latency.

The data, the split and the latency measurement are ``examples/digits_common.py``'s, shared with
the other digits classifiers so that their numbers compare. Nothing is downloaded: the digits
(1,797 8x8 images, 0..16 ink) ship inside scikit-learn.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from digits_lenet.model import SIDE, LeNet
from safetensors.torch import save_file
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/digits_common.py: build time only
from digits_common import SEED, holdout, latency_ms, load_split, write_metrics  # noqa: E402

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
    split = load_split()
    train_idx, test_idx = split.train_idx, split.test_idx
    images = torch.tensor(split.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    labels = torch.tensor(split.target, dtype=torch.long)

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
    with torch.inference_mode():
        latency = latency_ms(model, images[test_idx[:1]])

    (HERE / "weights").mkdir(exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(HERE / "weights" / "model.safetensors"), metadata={"architecture": "LeNet-8x8"})
    (HERE / "eval").mkdir(exist_ok=True)
    (HERE / "eval" / "holdout.json").write_text(json.dumps(holdout(split), separators=(",", ":")) + "\n")
    write_metrics(HERE / "cvflow.toml", {"accuracy": accuracy, "latency_ms": latency})
    print(f"held-out accuracy {accuracy:.4f} on {len(test_idx)} images; forward pass p50 {latency:.3f} ms")


if __name__ == "__main__":
    main()

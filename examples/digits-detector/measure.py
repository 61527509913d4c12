"""Measure the detector's latency and write it into ``[metrics]`` of ``cvflow.toml``.

    python measure.py          # needs torch==2.13.0, numpy, pillow, safetensors

``latency_ms`` is the median time of the solver's forward pass (``DigitDetector`` on the shipped
weights, under ``torch.inference_mode``) for one typical demo image, ``demo/images/shifted-000.png``
(96x96), read as the solver reads an upload: grey, 0..1, padded to the stride. It is measured as
every digits package's latency is, by ``examples/digits_common.py``'s ``latency_ms`` (warm-up
calls, then the median of many), on this machine's CPU with torch's default threads. Decoding the
boxes is left out, as the classifiers leave out their argmax. Only the ``latency_ms`` line of
``[metrics]`` changes; ``train.py`` measures the same way when it retrains.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import torch
from digits_detector.model import DigitDetector, pad_to_stride
from PIL import Image
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/digits_common.py: build time only
from digits_common import latency_ms  # noqa: E402

#: The image the latency is measured on: a demo annotation project's item, the size of them all.
IMAGE = HERE / "demo" / "images" / "shifted-000.png"


def one_image(path: Path = IMAGE) -> torch.Tensor:
    """``path`` as the solver's batch of one: (1, 1, H, W) float32, grey 0..1, padded to the stride."""
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    return pad_to_stride(torch.from_numpy(grey)[None, None])


def forward_latency(model: DigitDetector, one: torch.Tensor | None = None) -> float:
    """The median forward pass of ``model`` on one demo image (``one``), in milliseconds."""
    batch = one_image() if one is None else one
    model.eval()
    with torch.inference_mode():
        return latency_ms(model, batch)


def write_latency(value: float, manifest: Path = HERE / "cvflow.toml") -> None:
    """Set ``latency_ms`` in the ``[metrics]`` table of ``manifest``, the rest kept as written."""
    text = manifest.read_text()
    table = re.search(r"(?ms)^\[metrics\]\n.*?(?=^\[|\Z)", text)
    if table is None:
        raise SystemExit(f"{manifest} has no [metrics] table: run train.py first")
    line = f"latency_ms = {value:.3f}\n"
    body, found = re.subn(r"(?m)^latency_ms = .*\n", line, table[0])
    if not found:  # after the table's last line, before any blank lines that end it
        kept = body.rstrip("\n")
        body = kept + "\n" + line + body[len(kept) + 1:]
    manifest.write_text(text[:table.start()] + body + text[table.end():])


def main() -> None:
    model = DigitDetector()
    model.load_state_dict(load_file(str(HERE / "weights" / "model.safetensors")))
    value = forward_latency(model)
    write_latency(value)
    print(f"forward pass p50 {value:.3f} ms on {IMAGE.relative_to(HERE)} ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()

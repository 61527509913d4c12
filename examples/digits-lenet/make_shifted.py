"""Write the shifted digits (``digits_lenet.shifted``) as an ImageFolder tree, to fine-tune on.

    python make_shifted.py OUT [--train 200]     # needs numpy, pillow, scikit-learn

* ``OUT/train/<digit>/shifted-0000.png`` ... - ``--train`` images drawn from the digits the base
  model was trained on (seed 1);
* ``OUT/val/<digit>/...`` - 100 images of the held-out digits (seed 2): the validation split a
  fine-tune is judged on;
* ``OUT/test/<digit>/...`` - 500 more of the held-out digits (seed 3), for a person's own check
  (a fine-tune never trains or validates on ``test``).

Then make it a dataset package and fine-tune on it (README, "Fine-tuning")::

    cvflow dataset import imagefolder OUT ./shifted-data --name alice/digits-shifted --version 1.0.0

The same arguments always write the same images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from digits_lenet.shifted import digit_split, png, shifted

SPLITS = {"val": ("test", 2, 100), "test": ("test", 3, 500)}  # split: (digits, seed, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="a new or empty directory")
    parser.add_argument("--train", type=int, default=200, help="training images (default 200)")
    args = parser.parse_args()
    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        parser.error(f"{out} is not empty")
    digits = digit_split()
    for split, (part, seed, count) in {"train": ("train", 1, args.train), **SPLITS}.items():
        for i, (image, label) in enumerate(shifted(*digits[part], seed=seed, count=count)):
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{split}-{i:04d}.png").write_bytes(png(image))
        print(f"{split}: {count} images")


if __name__ == "__main__":
    main()

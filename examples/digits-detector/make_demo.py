"""Write the demo annotation project's images and their ground truth.

    python make_demo.py        # needs numpy, pillow, scikit-learn

* ``demo/images/shifted-000.png`` ... - ``COUNT`` canvases of the shifted style (grey, unevenly lit
  boards, digits of more sizes, stray strokes), drawn from held-out digits only;
* ``demo/truth.json`` - their boxes as COCO ground truth (categories 1..10 are "0".."9").

`cvflow-hub serve --demo` makes them the items of the project ``demo/digits-shifted``, whose
suggestions come from this package; the ground truth lets a test or a person score what the
annotators and the fine-tuned model did. A larger set for fine-tuning is never written here:
``digits_detector.data.canvases(SHIFTED, seed, count)`` draws it (from the training digits).
"""

from __future__ import annotations

import json
from pathlib import Path

from digits_detector.data import SHIFTED, canvases, coco

HERE = Path(__file__).resolve().parent
COUNT = 40
SEED = 4


def main() -> None:
    samples = canvases(SHIFTED, SEED, COUNT, digits="test")
    names = [f"shifted-{i:03d}.png" for i in range(COUNT)]
    images = HERE / "demo" / "images"
    images.mkdir(parents=True, exist_ok=True)
    for old in images.glob("*.png"):
        old.unlink()
    for sample, name in zip(samples, names, strict=True):
        (images / name).write_bytes(sample.png())
    truth = {"info": {"description": f"{COUNT} canvases of style {SHIFTED.name!r}, seed {SEED}, held-out digits"},
             **coco(samples, names)}
    (HERE / "demo" / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    print(f"wrote {COUNT} images with {len(truth['annotations'])} digits to {images}")


if __name__ == "__main__":
    main()

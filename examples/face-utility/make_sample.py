"""Write ``samples/astronaut.jpg`` from the astronaut photo that scikit-image ships.

    python make_sample.py      # needs scikit-image and pillow

The photo (Eileen Collins, NASA, public domain) is the package's sample input: the README's
``curl`` line posts it, and the tests check that the solver finds her face in it.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from skimage import data

HERE = Path(__file__).resolve().parent


def main() -> None:
    out = HERE / "samples" / "astronaut.jpg"
    out.parent.mkdir(exist_ok=True)
    Image.fromarray(data.astronaut()).save(out, quality=90, optimize=True)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

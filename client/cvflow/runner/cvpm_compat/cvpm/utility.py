"""``cvpm.utility``: the helpers 2019 solvers import.

``load_image_file`` reads an image file into a ``numpy`` array (RGB by default), as the 2019
utility and ``face_recognition`` did; ``save_image`` writes an image (a file, a Pillow image or
an array) to a path and returns that path. Both need numpy and Pillow in the package's venv, and
say so when either is missing.
"""

from __future__ import annotations

import importlib
import os
import shutil
from typing import Any


def _need(module: str, package: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"cvpm.utility.{what} needs {package}, and this package's virtual environment has no"
                          f" {package}: add it to the package's requirements.txt") from None


def load_image_file(file: Any, mode: str | None = "RGB") -> Any:
    """The image in ``file`` (a path or a binary file object) as a ``numpy`` array, converted to
    ``mode`` (``"RGB"``: height x width x 3 ``uint8``; ``"L"``: grey; None: as stored)."""
    np = _need("numpy", "numpy", "load_image_file")
    pil = _need("PIL.Image", "Pillow", "load_image_file")
    image = pil.open(file)
    if mode:
        image = image.convert(mode)
    return np.array(image)


def save_image(image: Any, path: str | os.PathLike[str]) -> str:
    """Write ``image`` to ``path`` and return ``path`` as a string.

    ``image`` is the path of an image file (copied; nothing is done when it is ``path`` itself),
    a Pillow image, or an array (``uint8``, height x width [x channels]). The format follows
    ``path``'s suffix.
    """
    target = os.fspath(path)
    if isinstance(image, str | os.PathLike):
        source = os.fspath(image)
        if not (os.path.exists(target) and os.path.samefile(source, target)):
            shutil.copyfile(source, target)
        return target
    pil = _need("PIL.Image", "Pillow", "save_image")
    if not isinstance(image, pil.Image):
        _need("numpy", "numpy", "save_image")
        image = pil.fromarray(image)
    image.save(target)
    return target

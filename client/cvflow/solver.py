"""The solver contract: what a package's solver class receives, and the types its inputs may have.

A solver is a class named in ``cvflow.toml`` (``class = "module:Class"``)::

    from typing import Annotated, Literal
    from cvflow.solver import Context, Image, Input

    class Classifier:
        def __init__(self, context: Context) -> None:      # loads the model, once
            self.weights = context.load_weights("weights/model.safetensors")

        def infer(self, image: Image, top_k: Annotated[int, Input(ge=1, le=10)] = 3,
                  mode: Literal["fast", "exact"] = "fast") -> dict:
            ...                                             # JSON-serialisable result

The runner reads ``infer``'s type hints to build the request schema and the OpenAPI
document (see ``docs/solvers.md``): ``Image``, ``list[Image]``, ``int``, ``float``, ``str``,
``bool``, ``Literal[...]`` and ``Enum`` choices, each optional with a default or ``| None``.
A solver whose manifest entry has ``batch = {...}`` may also define
``infer_batch(self, calls: list[dict]) -> list``: one result per call, in order.

This module imports only the standard library; Pillow (and numpy) are imported when an
image is decoded or converted, inside the package's own virtual environment.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Context",
    "Image",
    "ImageTooLargeError",
    "Input",
    "InputError",
    "NotAnImageError",
    "PickleNotAllowedError",
    "WeightsError",
    "load_safetensors",
    "load_weights",
]

#: Suffixes whose files are pickles (loading one runs code), as the manifest guesses formats.
def declared_input(text: str) -> tuple[str, str]:
    """An input as a manifest declares it, ``"kind"`` or ``"kind: meaning"``: (kind, meaning)."""
    kind, _, meaning = text.partition(":")
    return kind.strip(), meaning.strip()


PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib"})


class InputError(ValueError):
    """A solver raises this for input it cannot use; the runner answers 422 ``invalid_input``
    with the message (and ``field``, when given) instead of a 500."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotAnImageError(InputError):
    """Bytes that no image decoder reads: 400 ``not_an_image``."""

    code = "not_an_image"


class ImageTooLargeError(InputError):
    """An image over the runner's byte or pixel limit: 413 ``image_too_large``."""

    code = "image_too_large"


class WeightsError(Exception):
    """A weight file is missing, unreadable, or its format needs a library the venv lacks."""

    code = "weights_error"


class PickleNotAllowedError(WeightsError, PermissionError):
    """A pickle weight, while the package's manifest does not set ``allow_pickle = true``."""

    code = "pickle_not_allowed"


# -- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """Extra facts about an input, given with ``Annotated``; they go into the schema and are checked.

    ``Annotated[int, Input(ge=1, le=100, description="how many")]``. ``ge``/``gt``/``le``/``lt``
    bound numbers; ``min_length``/``max_length`` bound strings and lists of images.
    """

    description: str | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    min_length: int | None = None
    max_length: int | None = None


class Image:
    """A decoded image input. The runner decodes uploads before the solver runs, so a solver
    never sees bytes that are not an image.

    ``to_pil(mode)`` gives a Pillow image, ``to_numpy(mode)`` an ``(H, W, C)`` (or ``(H, W)``
    for ``"L"``) ``uint8`` array; ``width``, ``height``, ``format`` (``"PNG"``, ``"JPEG"``...)
    and ``data`` (the bytes as received) describe it. Build one yourself with
    ``Image.from_bytes(data)`` or ``Image.open(path)``, e.g. to call a solver in-process.
    """

    __slots__ = ("_pil", "data", "filename", "format")

    def __init__(self, pil_image: Any, *, data: bytes = b"", filename: str | None = None) -> None:
        self._pil = pil_image
        self.data = data
        self.filename = filename
        self.format: str | None = getattr(pil_image, "format", None)

    @classmethod
    def from_bytes(cls, data: bytes, *, filename: str | None = None, max_pixels: int | None = None) -> Image:
        """Decode ``data`` (any format Pillow reads), turning it upright by its EXIF orientation.

        Raises:
            NotAnImageError: the bytes are not an image Pillow can decode.
            ImageTooLargeError: it has more than ``max_pixels`` pixels (checked before decoding).
        """
        try:
            from PIL import Image as PILImage
            from PIL import ImageOps, UnidentifiedImageError
        except ImportError as exc:  # pragma: no cover - the runner checks Pillow at start-up
            raise RuntimeError("image inputs need Pillow in the package's requirements ('pillow>=10')") from exc
        try:
            img: PILImage.Image = PILImage.open(io.BytesIO(data))
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {img.width}x{img.height} = {img.width * img.height} pixels; the limit is"
                    f" {max_pixels}")
            img.load()
        except PILImage.DecompressionBombError as exc:
            raise ImageTooLargeError(f"the image is too large to decode safely ({exc})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
            if isinstance(exc, InputError):
                raise
            what = "not an image" if isinstance(exc, UnidentifiedImageError) else f"a damaged image ({exc})"
            raise NotAnImageError(f"{filename or 'the upload'} is {what}") from None
        if img.format in ("JPEG", "TIFF", "WEBP", "MPO") and img.getexif().get(0x0112, 1) != 1:
            fmt = img.format
            img = ImageOps.exif_transpose(img)
            img.format = fmt
        return cls(img, data=data, filename=filename)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, max_pixels: int | None = None) -> Image:
        """``from_bytes`` of a file's contents."""
        return cls.from_bytes(Path(path).read_bytes(), filename=Path(path).name, max_pixels=max_pixels)

    @property
    def width(self) -> int:
        return int(self._pil.width)

    @property
    def height(self) -> int:
        return int(self._pil.height)

    def to_pil(self, mode: str | None = "RGB") -> Any:
        """The Pillow image, converted to ``mode`` (``None``: as decoded). A copy when converted."""
        if mode is None or self._pil.mode == mode:
            return self._pil
        if mode in ("RGB", "L") and self._pil.mode in ("RGBA", "LA", "P", "PA"):
            # Transparent pixels are composited on white, not left as whatever colour they hide.
            rgba = self._pil.convert("RGBA")
            from PIL import Image as PILImage

            background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
            return PILImage.alpha_composite(background, rgba).convert(mode)
        return self._pil.convert(mode)

    def to_numpy(self, mode: str | None = "RGB") -> Any:
        """The pixels as a ``numpy.ndarray`` of ``uint8`` (needs numpy in the venv)."""
        import numpy as np

        return np.asarray(self.to_pil(mode))

    def __repr__(self) -> str:
        return f"Image({self.width}x{self.height}, {self.format or '?'}, mode={self._pil.mode})"


# -- context and weights ----------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a solver's constructor receives.

    ``weights`` maps each weight's path in the manifest to the file on disk; ``device`` is
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``settings`` holds the ``--env K=V`` pairs the runner
    was started with (they are in ``os.environ`` too).
    """

    package: str
    version: str
    solver: str
    package_dir: Path
    device: str = "cpu"
    weights: Mapping[str, Path] = field(default_factory=dict)
    weight_formats: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)
    allow_pickle: bool = False

    def weight(self, path: str | None = None) -> Path:
        """The file of the weight at ``path`` (as the manifest names it); without a path, the
        package's only weight.

        Raises:
            WeightsError: no such weight, or ``path`` omitted while there is not exactly one.
        """
        if path is None:
            if len(self.weights) != 1:
                raise WeightsError(f"{self.package} has {len(self.weights)} weights; name the one to load")
            return next(iter(self.weights.values()))
        try:
            return self.weights[path]
        except KeyError:
            known = ", ".join(sorted(self.weights)) or "none"
            raise WeightsError(f"{self.package} has no weight {path!r} in its manifest (it has: {known})") from None

    def load_weights(self, path: str | None = None, *, device: str | None = None) -> dict[str, Any]:
        """Load a weight file as a dict of torch tensors on ``device`` (default: the context's).

        safetensors by default; a pickle only when the manifest says ``allow_pickle = true``.

        Raises:
            WeightsError: as ``weight``, or the file cannot be read.
            PickleNotAllowedError: the weight is a pickle and the manifest does not allow it.
        """
        file = self.weight(path)
        fmt = self.weight_formats.get(path or "") or _format_of(file)
        return load_weights(file, allow_pickle=self.allow_pickle, device=device or self.device, format=fmt)


def _format_of(path: Path) -> str:
    if path.suffix == ".safetensors":
        return "safetensors"
    return "pickle" if path.suffix in PICKLE_SUFFIXES else "other"


def load_safetensors(path: str | os.PathLike[str], *, device: str = "cpu", framework: str = "pt") -> dict[str, Any]:
    """Tensors from a ``.safetensors`` file (``framework="pt"``: torch, ``"np"``: numpy).

    Raises:
        WeightsError: the file is missing or damaged, or the ``safetensors`` package is not installed.
    """
    try:
        if framework == "np":
            from safetensors.numpy import load_file as load_np

            return dict(load_np(str(path)))
        from safetensors.torch import load_file
    except ImportError as exc:
        raise WeightsError("loading safetensors weights needs the 'safetensors' package (and torch for"
                           " framework='pt'): add them to the package's requirements") from exc
    try:
        return dict(load_file(str(path), device=device))
    except FileNotFoundError:
        raise WeightsError(f"weight file {path} is missing") from None
    except Exception as exc:  # safetensors raises its own SafetensorError for damaged files
        raise WeightsError(f"cannot read {path} as safetensors: {exc}") from exc


def load_weights(path: str | os.PathLike[str], *, allow_pickle: bool, device: str = "cpu",
                 format: str | None = None) -> dict[str, Any]:
    """Load weights by format: safetensors always; a pickle only with ``allow_pickle=True``,
    because unpickling runs whatever code the file holds. ``allow_pickle`` has no default on
    purpose: every caller decides.

    Raises:
        PickleNotAllowedError: a pickle and ``allow_pickle`` is false.
        WeightsError: the file is missing or unreadable, or its format is not one of these.
    """
    path = Path(path)
    fmt = format or _format_of(path)
    if fmt == "safetensors":
        return load_safetensors(path, device=device)
    if fmt == "pickle":
        if not allow_pickle:
            raise PickleNotAllowedError(
                f"{path.name} is a pickle, and loading a pickle runs code from it; the package must set"
                " allow_pickle = true in cvflow.toml to load it (or ship safetensors instead)")
        try:
            import torch
        except ImportError as exc:
            raise WeightsError(f"loading {path.name} needs torch in the package's requirements") from exc
        if not path.exists():
            raise WeightsError(f"weight file {path} is missing")
        state: dict[str, Any] = torch.load(path, map_location=device, weights_only=False)
        return state
    raise WeightsError(f"{path.name}: cannot load {fmt!r} weights with load_weights; open the file yourself"
                       " with Context.weight(path)")

"""Image sizes from PNG and JPEG headers, without decoding a pixel.

The client stays thin (no Pillow), and a header read cannot be made to allocate a
decompression bomb's pixels: a file is refused on its declared size before anyone decodes it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cvflow.errors import Problem

#: Pillow's own bomb threshold (``Image.MAX_IMAGE_PIXELS``): larger images are refused.
MAX_PIXELS = 89_478_485
MAX_IMAGE_BYTES = 64 * 1024 * 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageHeader:
    format: str  # "png" or "jpeg"
    width: int
    height: int


class ImageProblem(Exception):
    """A file that cannot be a dataset image; ``problem`` says why, with a stable code."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _bad(code: str, where: str, message: str) -> ImageProblem:
    return ImageProblem(Problem(code, where, f"{where}: {message}"))


class Readable(Protocol):
    """What a header read needs: an open binary file, or any reader that seeks forward."""

    def read(self, n: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


def _jpeg(f: Readable, where: str) -> tuple[int, int]:
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":  # skip to the next marker
            byte = f.read(1)
        while byte == b"\xff":  # markers may be padded with fill bytes
            byte = f.read(1)
        if not byte:
            raise _bad("not_an_image", where, "JPEG without a frame header")
        marker = byte[0]
        if marker in (0x01, *range(0xD0, 0xD9)):  # TEM, RSTn, SOI: no length field
            continue
        if marker == 0xD9:
            raise _bad("not_an_image", where, "JPEG ends before its frame header")
        raw = f.read(2)
        if len(raw) < 2:
            raise _bad("not_an_image", where, "truncated JPEG")
        (length,) = struct.unpack(">H", raw)
        if length < 2:
            raise _bad("not_an_image", where, "corrupt JPEG segment length")
        if marker in _SOF:
            body = f.read(5)
            if len(body) < 5:
                raise _bad("not_an_image", where, "truncated JPEG frame header")
            height, width = struct.unpack(">HH", body[1:5])
            return width, height
        f.seek(length - 2, 1)


def read_header(path: Path, *, where: str | None = None) -> ImageHeader:
    """The format and size of a PNG or JPEG file, read from its header.

    Raises:
        ImageProblem: ``not_an_image`` (neither PNG nor JPEG, or a broken header),
            ``image_too_large`` (over :data:`MAX_IMAGE_BYTES`, or over :data:`MAX_PIXELS`
            pixels: a decompression bomb is refused on its declared size), ``empty_image``
            (zero width or height).
    """
    where = where or path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            return read_header_from(f, size, where=where)
    except OSError as exc:
        raise _bad("unreadable_file", where, exc.strerror or str(exc)) from exc


def read_header_from(f: Readable, size: int, *, where: str) -> ImageHeader:
    """:func:`read_header` for bytes that are not a local file (a blob in a store): ``f``
    reads them from the start, ``size`` is their length. Raises ImageProblem as
    :func:`read_header` does, and lets ``f``'s own errors through."""
    if size > MAX_IMAGE_BYTES:
        raise _bad("image_too_large", where, f"{size} bytes, over the {MAX_IMAGE_BYTES} byte limit")
    head = f.read(8)
    if head == _PNG_SIGNATURE:
        fmt = "png"
        chunk = f.read(16)
        if len(chunk) < 16 or chunk[4:8] != b"IHDR":
            raise _bad("not_an_image", where, "PNG without an IHDR header")
        width, height = struct.unpack(">II", chunk[8:16])
    elif head[:3] == b"\xff\xd8\xff":
        fmt = "jpeg"
        f.seek(2)
        width, height = _jpeg(f, where)
    else:
        raise _bad("not_an_image", where, "not a PNG or JPEG file")
    if width == 0 or height == 0:
        raise _bad("empty_image", where, f"the header says {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        raise _bad("image_too_large", where,
                   f"{width}x{height} pixels, over the {MAX_PIXELS} pixel limit (a decompression bomb?)")
    return ImageHeader(fmt, width, height)

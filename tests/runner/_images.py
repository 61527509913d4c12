"""Real PNG files made with the standard library alone (the test venv has no Pillow), and their sizes."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def png(width: int, height: int, pixel: bytes = b"\x80", *, color: bool = False) -> bytes:
    """A ``width`` x ``height`` PNG filled with ``pixel`` (1 byte grey, or 3 bytes RGB with ``color``)."""
    row = b"\x00" + pixel * width
    return _png(width, height, row * height, 2 if color else 0)


def grey_png(pixels: list[list[int]]) -> bytes:
    """A grey PNG from rows of 0..255 values."""
    rows = b"".join(b"\x00" + bytes(r) for r in pixels)
    return _png(len(pixels[0]), len(pixels), rows, 0)


def _png(width: int, height: int, raw: bytes, colour_type: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def digit_png(pixels: list[int], scale: int = 4) -> bytes:
    """One of scikit-learn's 8x8 digits (0..16 ink) as dark ink on light paper, each cell ``scale`` pixels wide."""
    side = 8 * scale
    return grey_png([[255 - round(pixels[(y // scale) * 8 + x // scale] * 255 / 16) for x in range(side)]
                     for y in range(side)])


def holdout() -> tuple[list[list[int]], list[int]]:
    """The held-out split that demo/digits-lenet's train.py measured its accuracy on."""
    data = json.loads((EXAMPLES / "digits-lenet" / "eval" / "holdout.json").read_text())
    return data["images"], data["labels"]

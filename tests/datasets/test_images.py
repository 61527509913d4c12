"""Image sizes from headers agree with Pillow's, for the PNG and JPEG variants cameras write."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from cvflow.datasets.images import ImageProblem, read_header


@pytest.mark.parametrize(("fmt", "options", "mode"), [
    ("PNG", {}, "RGB"),
    ("PNG", {}, "L"),
    ("PNG", {"optimize": True}, "RGBA"),
    ("JPEG", {}, "RGB"),
    ("JPEG", {"progressive": True}, "RGB"),
    ("JPEG", {"exif": b"Exif\x00\x00" + b"\x00" * 64}, "RGB"),
    ("JPEG", {"icc_profile": b"\x00" * 3000, "subsampling": 0}, "L"),
])
@pytest.mark.parametrize("size", [(1, 1), (37, 211), (640, 480)])
def test_header_sizes_match_pillow(tmp_path: Path, fmt: str, options: dict, mode: str,  # type: ignore[type-arg]
                                   size: tuple[int, int]) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new(mode, size, 128).save(path, fmt, **options)
    header = read_header(path)
    with Image.open(path) as im:
        assert (header.width, header.height) == im.size == size
    assert header.format == fmt.lower()


def test_a_jpeg_with_fill_bytes_before_its_frame_marker(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (50, 30)).save(buf, "JPEG")
    data = buf.getvalue()
    sof = data.index(b"\xff\xc0")
    path = tmp_path / "fill.jpg"
    path.write_bytes(data[:sof] + b"\xff\xff\xff" + data[sof:])
    assert (read_header(path).width, read_header(path).height) == (50, 30)


def test_a_truncated_png_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ImageProblem) as err:
        read_header(path)
    assert err.value.problem.code == "not_an_image"

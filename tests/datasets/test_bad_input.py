"""Bad input, format by format: each is refused with a stable code, and nothing is written."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from cvflow.datasets import Dataset, export_dataset, import_dataset, read_package
from cvflow.errors import DatasetError
from tests.datasets.synth import build_imagefolder


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height``: a decompression bomb needs no more."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _codes(fmt: str, src: Path, out: Path) -> list[str]:
    with pytest.raises(DatasetError) as err:
        import_dataset(fmt, src, out, name="alice/bad", version="1.0.0")
    assert not out.exists()
    return [p.code for p in err.value.problems]


@pytest.fixture
def coco_src(detection: tuple[Dataset, Path], tmp_path: Path) -> Path:
    export_dataset("coco", detection[1], tmp_path / "coco")
    return tmp_path / "coco"


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _first_ann(doc: dict, **values: object) -> None:  # type: ignore[type-arg]
    doc["annotations"][0].update(values)


@pytest.mark.parametrize(("change", "code"), [
    (lambda d: _first_ann(d, bbox=[-5, 0, 10, 10]), "coordinates_out_of_range"),
    (lambda d: _first_ann(d, bbox=[0, 0, 1000, 10]), "coordinates_out_of_range"),
    (lambda d: _first_ann(d, bbox=[1, 1, -4, 10]), "invalid_box"),
    (lambda d: _first_ann(d, bbox=[1, 1, 0, 10]), "invalid_box"),
    (lambda d: _first_ann(d, bbox=[1, 1, "2", 10]), "invalid_box"),
    (lambda d: _first_ann(d, bbox=[10**400, 1, 2, 10]), "invalid_box"),  # float() of it overflows
    (lambda d: _first_ann(d, category_id=99), "unknown_class"),
    (lambda d: _first_ann(d, image_id=12345), "missing_image"),
    (lambda d: d["images"][0].update(width=d["images"][0]["width"] + 1), "image_size_mismatch"),
    (lambda d: d["images"][0].update(file_name="../../etc/passwd"), "invalid_path"),
    (lambda d: d["images"][0].update(file_name="nowhere.png"), "missing_image"),
    (lambda d: d.update(images="nope"), "bad_coco"),
    (lambda d: d["categories"][0].update(name="<script>x</script>"), "invalid_class_name"),
])
def test_coco(coco_src: Path, tmp_path: Path, change: Callable[[dict], None], code: str) -> None:  # type: ignore[type-arg]
    _edit_json(coco_src / "annotations" / "instances_train.json", change)
    assert code in _codes("coco", coco_src, tmp_path / "pkg")


def test_coco_bad_json_and_deep_json(coco_src: Path, tmp_path: Path) -> None:
    ann = coco_src / "annotations" / "instances_train.json"
    ann.write_text('{"images": [')
    assert _codes("coco", coco_src, tmp_path / "pkg") == ["bad_json"]
    ann.write_text("[" * 100_000 + "]" * 100_000)
    assert _codes("coco", coco_src, tmp_path / "pkg") == ["bad_json"]


@pytest.mark.parametrize(("content", "code"), [
    (b"GIF89a not what it says", "not_an_image"),
    (b"", "not_an_image"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "not_an_image"),  # a JPEG cut before its frame header
    (_png_header(100_000, 100_000), "image_too_large"),  # a decompression bomb, refused on its header
    (_png_header(0, 10), "empty_image"),
])
def test_images_that_are_not_images(coco_src: Path, tmp_path: Path, content: bytes, code: str) -> None:
    doc = json.loads((coco_src / "annotations" / "instances_train.json").read_text())
    (coco_src / "images" / "train" / doc["images"][0]["file_name"]).write_bytes(content)
    assert code in _codes("coco", coco_src, tmp_path / "pkg")


# --- Pascal VOC -----------------------------------------------------------------------------

_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<annotation><filename>&lol2;</filename></annotation>"""
_EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>"""


@pytest.fixture
def voc_src(detection: tuple[Dataset, Path], tmp_path: Path) -> Path:
    export_dataset("voc", detection[1], tmp_path / "voc")
    return tmp_path / "voc"


@pytest.mark.parametrize(("change", "code"), [
    (lambda x: _LAUGHS, "xml_forbidden"),
    (lambda x: _EXTERNAL, "xml_forbidden"),
    (lambda x: x[:40], "bad_xml"),
    (lambda x: x.replace(b"<xmax>", b"<xmax>9999", 1), "coordinates_out_of_range"),
    (lambda x: x.replace(b"<xmin>", b"<xmin>abc", 1), "bad_xml"),
    (lambda x: x.replace(b"<name>zero</name>", b"<name>ghost</name>", 1).replace(b"<name>one</name>",
                                                                               b"<name>ghost</name>", 1),
     "unknown_class"),
])
def test_voc(voc_src: Path, tmp_path: Path, change: Callable[[bytes], bytes], code: str) -> None:
    xml = voc_src / "Annotations" / "train_001.xml"
    xml.write_bytes(change(xml.read_bytes()))
    assert code in _codes("voc", voc_src, tmp_path / "pkg")


def test_voc_annotation_for_a_missing_image(voc_src: Path, tmp_path: Path) -> None:
    (voc_src / "JPEGImages" / "train_001.jpg").unlink()
    assert "missing_image" in _codes("voc", voc_src, tmp_path / "pkg")


# --- YOLO -----------------------------------------------------------------------------------


@pytest.fixture
def yolo_src(detection: tuple[Dataset, Path], tmp_path: Path) -> Path:
    export_dataset("yolo", detection[1], tmp_path / "yolo")
    return tmp_path / "yolo"


@pytest.mark.parametrize(("line", "code"), [
    ("0 0.5 0.5 0.2", "bad_label_line"),
    ("zero 0.5 0.5 0.2 0.2", "bad_label_line"),
    ("7 0.5 0.5 0.2 0.2", "unknown_class"),
    ("-1 0.5 0.5 0.2 0.2", "unknown_class"),
    ("0 1.5 0.5 0.2 0.2", "coordinates_out_of_range"),
    ("0 0.95 0.5 0.2 0.2", "coordinates_out_of_range"),
    ("0 0.5 0.5 0 0.2", "invalid_box"),
    ("0 nan 0.5 0.2 0.2", "coordinates_out_of_range"),
])
def test_yolo(yolo_src: Path, tmp_path: Path, line: str, code: str) -> None:
    (yolo_src / "labels" / "train" / "train_000.txt").write_text(line + "\n")
    assert code in _codes("yolo", yolo_src, tmp_path / "pkg")


def test_yolo_labels_for_a_missing_image(yolo_src: Path, tmp_path: Path) -> None:
    (yolo_src / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert _codes("yolo", yolo_src, tmp_path / "pkg") == ["missing_image"]


def test_yolo_without_class_names(yolo_src: Path, tmp_path: Path) -> None:
    (yolo_src / "obj.names").unlink()
    assert _codes("yolo", yolo_src, tmp_path / "pkg") == ["missing_file"]


# --- ImageFolder ----------------------------------------------------------------------------


def test_imagefolder_non_image_and_html_class(tmp_path: Path) -> None:
    src = build_imagefolder(tmp_path / "src")
    (src / "train" / "zero" / "notes.txt").write_text("not an image")
    (src / "train" / "zero" / "fake.png").write_text("not a png either")
    (src / "train" / "<b>bold").mkdir()
    codes = _codes("imagefolder", src, tmp_path / "pkg")
    assert codes.count("not_an_image") == 2 and "invalid_class_name" in codes


# --- the canonical layout -------------------------------------------------------------------


def test_a_package_whose_json_disagrees_with_its_manifest(detection: tuple[Dataset, Path], tmp_path: Path) -> None:
    package = shutil.copytree(detection[1], tmp_path / "pkg")
    _edit_json(package / "annotations" / "val.json", lambda d: d["annotations"].pop())
    _edit_json(package / "annotations" / "train.json", lambda d: d["categories"][0].update(name="nil"))
    (package / "images" / "val" / "stray.png").write_bytes(_png_header(10, 10))
    with pytest.raises(DatasetError) as err:
        read_package(package)
    assert {p.code for p in err.value.problems} == {"count_mismatch", "class_mismatch", "unlisted_image"}

"""Every export, read by the tools people use: pycocotools for COCO, datumaro (CVAT's dataset
library) for COCO, Pascal VOC, YOLO and ImageFolder. Counts, classes and boxes must match the
source dataset, boxes within 1 px."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import pytest

from cvflow.datasets import Dataset, export_dataset, import_dataset
from tests.datasets.synth import CLASSES, assert_boxes_close, boxes_of, build_imagefolder

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # datumaro's own imports warn about optional plugins
    import datumaro as dm
    from pycocotools.coco import COCO


def _datumaro_boxes(path: Path, fmt: str) -> tuple[list[str], dict]:  # type: ignore[type-arg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imported = dm.Dataset.import_from(str(path), fmt)
    names = [c.name for c in imported.categories()[dm.AnnotationType.label]]
    got: dict[str, dict[str, list[tuple[str, float, float, float, float]]]] = {}
    for item in imported:
        boxes = [(names[a.label], *a.get_bbox()) for a in item.annotations if a.type == dm.AnnotationType.bbox]
        got.setdefault(item.subset, {})[Path(item.id).name] = sorted(boxes)
    return names, got


def test_pycocotools_reads_the_coco_export(detection: tuple[Dataset, Path], tmp_path: Path) -> None:
    ds, package = detection
    export_dataset("coco", package, tmp_path / "coco")
    want = boxes_of(ds)
    for split, items in ds.splits.items():
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its timings
            coco = COCO(str(tmp_path / "coco" / "annotations" / f"instances_{split}.json"))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
        assert len(coco.getImgIds()) == len(items)
        assert len(coco.getAnnIds()) == sum(len(i.boxes) for i in items)
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        for image in coco.loadImgs(coco.getImgIds()):
            assert (tmp_path / "coco" / "images" / split / image["file_name"]).is_file()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
            got = sorted((names[a["category_id"]], *a["bbox"]) for a in anns)
            assert_boxes_close({split: {Path(image["file_name"]).stem: got}},
                               {split: {Path(image["file_name"]).stem: want[split][Path(image["file_name"]).stem]}})


@pytest.mark.parametrize(("fmt", "datumaro_format"), [("coco", "coco_instances"), ("voc", "voc_detection"),
                                                      ("yolo", "yolo")])
def test_datumaro_imports_each_detection_export(detection: tuple[Dataset, Path], tmp_path: Path, fmt: str,
                                                datumaro_format: str) -> None:
    ds, package = detection
    export_dataset(fmt, package, tmp_path / fmt)
    names, got = _datumaro_boxes(tmp_path / fmt, datumaro_format)
    assert names == CLASSES
    assert {split: len(items) for split, items in got.items()} == ds.image_count()
    assert sum(len(b) for split in got.values() for b in split.values()) == sum(ds.box_count().values())
    assert_boxes_close(got, boxes_of(ds))


def test_datumaro_imports_the_imagefolder_export(tmp_path: Path) -> None:
    src = build_imagefolder(tmp_path / "src")
    import_dataset("imagefolder", src, tmp_path / "pkg", name="alice/digit-classes", version="1.0.0")
    ds = export_dataset("imagefolder", tmp_path / "pkg", tmp_path / "out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imported = dm.Dataset.import_from(str(tmp_path / "out"), "imagenet_with_subset_dirs")
    names = [c.name for c in imported.categories()[dm.AnnotationType.label]]
    assert sorted(names) == sorted(CLASSES)
    got = {(item.subset, names[a.label], Path(item.id.split(":")[-1]).name) for item in imported for a in item.annotations}
    want = {(split, ds.classes[i.label], Path(i.file_name).stem) for split, items in ds.splits.items() for i in items
            if i.label is not None}
    assert got == want
    assert {s: len(imported.get_subset(s)) for s in imported.subsets()} == {"train": 9, "val": 3}

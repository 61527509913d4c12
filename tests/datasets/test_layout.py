"""The canonical layout on disk, round trips through every format, and the CLI."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from cvflow.cli import main
from cvflow.datasets import Dataset, export_dataset, import_dataset, read_package
from cvflow.errors import DatasetError, ValidationError
from cvflow.publish import check_package_dir
from tests.datasets.synth import CLASSES, assert_boxes_close, boxes_of, build_imagefolder


def test_the_package_is_in_the_documented_layout(detection: tuple[Dataset, Path]) -> None:
    ds, package = detection
    files = sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file())
    assert files == sorted(["cvflow.toml", "README.md", "annotations/train.json", "annotations/val.json",
                            *(f"images/{s}/{i.file_name}" for s, items in ds.splits.items() for i in items)])
    manifest = tomllib.loads((package / "cvflow.toml").read_text())
    assert manifest["package"]["kind"] == "dataset"
    assert manifest["dataset"] == {"task": "detection", "classes": CLASSES, "splits": {"train": 6, "val": 3},
                                   "annotations": ds.box_count()}
    doc = json.loads((package / "annotations" / "train.json").read_text())
    assert doc["categories"] == [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(CLASSES)]
    first = ds.splits["train"][0]
    assert doc["images"][0] == {"id": 1, "file_name": first.file_name, "width": first.width, "height": first.height}
    b = first.boxes[0]
    assert doc["annotations"][0]["bbox"] == [b.x, b.y, b.w, b.h]
    assert doc["annotations"][0]["category_id"] == b.category + 1


def test_cvflow_validate_takes_the_package_unchanged(detection: tuple[Dataset, Path]) -> None:
    ds, package = detection
    checked = check_package_dir(package)
    assert checked.manifest.kind == "dataset" and checked.manifest.task == "detection"
    assert len(checked.files) == 2 + 2 + sum(ds.image_count().values())
    result = CliRunner().invoke(main, ["validate", str(package)])
    assert result.exit_code == 0, result.output


def test_validate_refuses_a_split_whose_file_count_disagrees(detection: tuple[Dataset, Path], tmp_path: Path) -> None:
    package = shutil.copytree(detection[1], tmp_path / "pkg")
    next((package / "images" / "val").iterdir()).unlink()
    with pytest.raises(ValidationError) as err:
        check_package_dir(package)
    assert [p.code for p in err.value.problems] == ["count_mismatch"]


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_each_detection_format_round_trips(detection: tuple[Dataset, Path], tmp_path: Path, fmt: str) -> None:
    ds, package = detection
    export_dataset(fmt, package, tmp_path / "out")
    manifest = import_dataset(fmt, tmp_path / "out", tmp_path / "back", name="alice/digits", version="1.0.1")
    assert manifest.dataset is not None and list(manifest.dataset.classes) == CLASSES
    _, back = read_package(tmp_path / "back")
    assert back.image_count() == ds.image_count() and back.box_count() == ds.box_count()
    assert_boxes_close(boxes_of(back), boxes_of(ds), tol=0.01)
    for split, items in ds.splits.items():  # the bytes are the source's, untouched
        for item in items:
            assert (tmp_path / "back" / "images" / split / item.file_name).read_bytes() == item.source.read_bytes()


def test_imagefolder_round_trips(tmp_path: Path) -> None:
    src = build_imagefolder(tmp_path / "src")
    manifest = import_dataset("imagefolder", src, tmp_path / "pkg", name="alice/digit-classes", version="1.0.0")
    assert manifest.dataset is not None
    assert manifest.dataset.classes == tuple(sorted(CLASSES)) and manifest.dataset.splits == {"train": 9, "val": 3}
    check_package_dir(tmp_path / "pkg")
    export_dataset("imagefolder", tmp_path / "pkg", tmp_path / "out")
    # Same split, class and bytes for every image; names were made unique across classes ("img0-2.png").
    assert _tree(tmp_path / "out") == _tree(src) and len(_tree(src)) == 12


def _tree(root: Path) -> set[tuple[str, str, bytes]]:
    return {(p.parts[-3], p.parts[-2], p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def test_a_format_for_the_other_task_is_refused(detection: tuple[Dataset, Path], tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        export_dataset("imagefolder", detection[1], tmp_path / "out")
    assert err.value.problems[0].code == "format_task_mismatch"
    assert not (tmp_path / "out").exists()


def test_export_never_writes_into_a_non_empty_directory(detection: tuple[Dataset, Path], tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError) as err:
        export_dataset("coco", detection[1], tmp_path / "out")
    assert err.value.problems[0].code == "out_exists"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_cli_import_check_and_export(detection: tuple[Dataset, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["dataset", "export", "yolo", str(detection[1]), str(tmp_path / "yolo")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["dataset", "import", "yolo", str(tmp_path / "yolo"), str(tmp_path / "pkg"),
                                  "--name", "alice/digits", "--version", "2.0.0", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"] == {"train": 6, "val": 3}
    result = runner.invoke(main, ["dataset", "check", str(tmp_path / "pkg")])
    assert result.exit_code == 0 and "ok: alice/digits 2.0.0: 9 images, 3 classes" in result.output


def test_cli_bad_input_is_one_clear_error_with_its_code(tmp_path: Path) -> None:
    (tmp_path / "src" / "annotations").mkdir(parents=True)
    (tmp_path / "src" / "annotations" / "instances_train.json").write_text("{not json")
    result = CliRunner().invoke(main, ["dataset", "import", "coco", str(tmp_path / "src"), str(tmp_path / "pkg"),
                                       "--name", "alice/bad"])
    assert result.exit_code == 1
    assert "instances_train.json is not valid JSON" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "pkg").exists()


def test_imported_names_are_portable_and_unique(tmp_path: Path) -> None:
    src = build_imagefolder(tmp_path / "src")
    shutil.copy(src / "train" / "zero" / "img0.png", src / "train" / "zero" / "CON.png")
    shutil.copy(src / "train" / "zero" / "img0.png", src / "train" / "one" / "a b (1).png")
    import_dataset("imagefolder", src, tmp_path / "pkg", name="alice/names", version="1.0.0")
    check_package_dir(tmp_path / "pkg")  # the hub's portable-name rules hold: no CON.png, no spaces
    names = sorted(p.name for p in (tmp_path / "pkg" / "images" / "train").iterdir())
    assert "CON_.png" in names and "a_b_1.png" in names
    assert len({Path(n).stem.lower() for n in names}) == len(names) == 11

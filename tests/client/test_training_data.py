"""cvflow.training.data.prepare: a dataset package mapped, split and written for a trainer.

Real dataset packages written with cvflow.datasets.write_package; no torch needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvflow.datasets import Dataset, write_package
from cvflow.errors import TrainingError
from cvflow.manifest.training import Trainer
from cvflow.training.data import VAL_SHARE, prepare, split, val_fraction
from tests.datasets.synth import CLASSES as DIGIT_CLASSES
from tests.datasets.synth import build_detection
from tests.training.colors import build_colors, colors_package


def _trainer(**kw: object) -> Trainer:
    fields: dict[str, object] = {"name": "finetune", "class_path": "tiny_trainer.trainer:Finetune",
                                 "task": "classification", "layout": "imagefolder",
                                 "classes": ("red", "green", "blue"), "metric": "accuracy"}
    fields.update(kw)
    return Trainer(**fields)  # type: ignore[arg-type]


def test_imagefolder_with_the_datasets_val_split(tmp_path: Path) -> None:
    # The dataset orders its classes otherwise and lacks one: labels are the model's names.
    pkg = colors_package(tmp_path / "pkg", {"train": 6, "val": 2}, classes=["blue", "red"])
    prepared = prepare(pkg, _trainer(), tmp_path / "work")
    assert (prepared.train_images, prepared.val_images, prepared.val_source) == (6, 2, "val")
    assert prepared.classes == ("red", "green", "blue") and prepared.dataset_classes == ("blue", "red")
    data = json.loads(prepared.data_json.read_text())
    assert data["format"] == 1 and data["layout"] == "imagefolder" and data["task"] == "classification"
    assert data["classes"] == ["red", "green", "blue"] and data["root"] == str(prepared.root)
    assert [s["label"] for s in data["train"]] == ["blue"] * 3 + ["red"] * 3  # sorted by file name
    for sample in data["train"] + data["val"]:
        image = Path(sample["image"])
        assert image.is_absolute() and image.parent.name == sample["label"]
        # Linked, not copied: the package's file and the layout's are one inode here.
        original = pkg / "images" / ("train" if sample in data["train"] else "val") / image.name
        assert image.stat().st_ino == original.stat().st_ino
        assert (sample["width"], sample["height"]) == (16, 16)
    # Every model class has its directory, even one without images (as torchvision reads it).
    assert sorted(p.name for p in (prepared.root / "train").iterdir()) == ["blue", "green", "red"]
    assert not list((prepared.root / "train" / "green").iterdir())
    assert not (tmp_path / "work" / ".data.incomplete").exists() and not (tmp_path / "work" / ".empty-image").exists()


def test_split_by_file_name_hash_is_stable_and_per_image(tmp_path: Path) -> None:
    ds = build_colors(tmp_path / "src", {"train": 40})
    train, val, source = split(ds)
    assert source == "hash" and len(train) + len(val) == 40 and 2 <= len(val) <= 16
    assert all(val_fraction(i.file_name) < VAL_SHARE for i in val)
    # A larger dataset keeps every earlier image on its side (an image never moves from train to val).
    bigger = build_colors(tmp_path / "src2", {"train": 60})
    _, val2, _ = split(bigger)
    assert {i.file_name for i in val} == {i.file_name for i in val2 if i.file_name in {x.file_name for x in ds.splits["train"]}}
    # Test splits are held out; the same dataset gives the same split.
    ds.splits["test"] = build_colors(tmp_path / "src3", {"test": 5}, seed=3).splits["test"]
    again = split(ds)
    assert [i.file_name for i in again[0]] == [i.file_name for i in train]
    assert [i.file_name for i in again[1]] == [i.file_name for i in val]


def test_three_images_make_a_run_by_moving_one(tmp_path: Path) -> None:
    pkg = colors_package(tmp_path / "pkg", {"train": 3})
    prepared = prepare(pkg, _trainer(classes=()), tmp_path / "work")
    assert (prepared.train_images, prepared.val_images, prepared.val_source) == (2, 1, "hash")
    assert prepared.classes == ("red", "green", "blue")  # trainer.classes empty: the dataset's


@pytest.mark.parametrize("splits", [{"train": 2}, {"train": 1, "val": 3}, {"test": 6}, {"train": 5, "val": 0}])
def test_too_small(tmp_path: Path, splits: dict[str, int]) -> None:
    if splits.get("val") == 0:  # an empty val split falls back to the hash split: 5 images are enough
        prepared = prepare(colors_package(tmp_path / "pkg", splits), _trainer(), tmp_path / "work")
        assert prepared.val_source == "hash" and prepared.train_images + prepared.val_images == 5
        return
    with pytest.raises(TrainingError) as err:
        prepare(colors_package(tmp_path / "pkg", splits), _trainer(), tmp_path / "work")
    assert err.value.code == "dataset_too_small" and "too small" in err.value.message


def test_empty_dataset_is_too_small(tmp_path: Path) -> None:
    ds = Dataset("classification", ["red"], {"train": []})
    write_package(ds, tmp_path / "pkg", name="qa/empty", version="1.0.0")
    with pytest.raises(TrainingError) as err:
        prepare(tmp_path / "pkg", _trainer(), tmp_path / "work")
    assert err.value.code == "dataset_too_small"


def test_class_mismatch_lists_every_missing_class(tmp_path: Path) -> None:
    pkg = colors_package(tmp_path / "pkg", {"train": 6}, classes=["red", "purple", "teal"])
    with pytest.raises(TrainingError) as err:
        prepare(pkg, _trainer(), tmp_path / "work")
    assert err.value.code == "class_mismatch"
    assert "'purple'" in err.value.message and "'teal'" in err.value.message and "'red', 'green'" in err.value.message
    assert not (tmp_path / "work" / "data.json").exists()


def test_task_mismatch_is_no_trainer(tmp_path: Path) -> None:
    pkg = colors_package(tmp_path / "pkg", {"train": 6})
    with pytest.raises(TrainingError) as err:
        prepare(pkg, _trainer(task="detection", layout="yolo"), tmp_path / "work")
    assert err.value.code == "no_trainer" and "detection" in err.value.message
    with pytest.raises(TrainingError) as err:  # a layout that cannot hold the task
        prepare(pkg, _trainer(layout="voc"), tmp_path / "work")
    assert err.value.code == "no_trainer"


@pytest.mark.parametrize("layout", ["yolo", "coco", "voc"])
def test_detection_layouts_remap_classes(tmp_path: Path, layout: str) -> None:
    ds = build_detection(tmp_path, splits={"train": 6, "val": 2})
    write_package(ds, tmp_path / "pkg", name="qa/digits", version="1.0.0")
    model_classes = ("background", *reversed(DIGIT_CLASSES))
    prepared = prepare(tmp_path / "pkg", _trainer(task="detection", layout=layout, classes=model_classes,
                                                  metric="map50"), tmp_path / "work")
    data = json.loads(prepared.data_json.read_text())
    assert data["classes"] == list(model_classes)
    first = ds.splits["train"][0]
    sample = next(s for s in data["train"] if Path(s["image"]).name == first.file_name)
    assert [b["label"] for b in sample["boxes"]] == [DIGIT_CLASSES[b.category] for b in first.boxes]
    assert all(Path(s["image"]).is_file() and Path(s["image"]).stat().st_size > 0 for s in data["train"] + data["val"])
    if layout == "yolo":  # class indexes are the model's: "two digit" is 1, "zero" 3
        names = (prepared.root / "obj.names").read_text().split("\n")[:4]
        assert names == list(model_classes)
        lines = (prepared.root / "labels" / "train" / f"{Path(first.file_name).stem}.txt").read_text().splitlines()
        assert [int(line.split()[0]) for line in lines] == [model_classes.index(DIGIT_CLASSES[b.category])
                                                            for b in first.boxes]
    if layout == "coco":
        doc = json.loads((prepared.root / "annotations" / "instances_val.json").read_text())
        assert [c["name"] for c in doc["categories"]] == list(model_classes)


def test_prepare_again_replaces_the_layout(tmp_path: Path) -> None:
    work = tmp_path / "work"
    prepare(colors_package(tmp_path / "a", {"train": 8, "val": 2}), _trainer(), work)
    prepared = prepare(colors_package(tmp_path / "b", {"train": 4, "val": 1}, seed=1), _trainer(), work)
    images = [p for p in prepared.root.rglob("*.png")]
    assert len(images) == 5 and prepared.train_images == 4

"""``kind = "dataset"`` in cvflow.toml: the [dataset] table's rules, shared with the hub."""

from __future__ import annotations

import json

import pytest

from cvflow.errors import ManifestError
from cvflow.manifest import Manifest, parse_manifest

HEAD = '[package]\nname = "alice/digits"\nversion = "1.0.0"\ndescription = "digits"\nkind = "dataset"\n'
GOOD = HEAD + '[dataset]\ntask = "detection"\nclasses = ["zero", "one"]\nsplits = { train = 4, val = 2 }\n' \
              'annotations = { train = 7, val = 0 }\n'


def _codes(text: str) -> dict[str, str]:
    with pytest.raises(ManifestError) as err:
        parse_manifest(text)
    return {p.field: p.code for p in err.value.problems}


def test_a_dataset_manifest_reads_and_round_trips() -> None:
    m = parse_manifest(GOOD)
    assert m.kind == "dataset" and m.task == "detection" and m.solvers == []
    assert m.dataset is not None and m.dataset.classes == ("zero", "one") and m.dataset.annotations == {"train": 7, "val": 0}
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert parse_manifest(m.to_toml()) == m


def test_a_model_manifest_is_unchanged() -> None:
    m = parse_manifest('[package]\nname = "alice/m"\nversion = "1.0.0"\ndescription = "m"\n')
    assert m.kind == "model" and m.dataset is None and "kind" not in m.to_toml()
    assert Manifest.from_dict(m.to_dict()) == m


@pytest.mark.parametrize(("classes", "code"), [
    ('["a", "a"]', "duplicate_class"),
    ('["Car", "car"]', "duplicate_class"),
    ('["a", ""]', "invalid_class_name"),
    ('["a", "  "]', "invalid_class_name"),
    ('["<img src=x onerror=alert(1)>"]', "invalid_class_name"),
    ('["a&amp;b"]', "invalid_class_name"),
    ('["tab\\there"]', "invalid_class_name"),
    ('["bidi\\u202eevil"]', "invalid_class_name"),
    ('["a/b"]', "invalid_class_name"),
    ('[".."]', "invalid_class_name"),
    ('[" padded"]', "invalid_class_name"),
    ('["' + "x" * 129 + '"]', "invalid_class_name"),
    ('[1]', "invalid_class_name"),
])
def test_class_names(classes: str, code: str) -> None:
    text = GOOD.replace('classes = ["zero", "one"]', f"classes = {classes}")
    assert code in _codes(text).values()


def test_class_count_is_bounded() -> None:
    many = "[" + ", ".join(f'"c{i}"' for i in range(10_001)) + "]"
    assert _codes(GOOD.replace('["zero", "one"]', many)) == {"dataset.classes": "invalid_field"}
    assert _codes(GOOD.replace('["zero", "one"]', "[]")) == {"dataset.classes": "invalid_field"}


@pytest.mark.parametrize(("splits", "where"), [
    ("{ train = -1, val = 2 }", "dataset.splits.train"),
    ("{ train = true, val = 2 }", "dataset.splits.train"),
    ("{ train = 1.5, val = 2 }", "dataset.splits.train"),
    ('{ train = "4", val = 2 }', "dataset.splits.train"),
    ("{ Train = 4, val = 2 }", "dataset.splits.Train"),
    ("{}", "dataset.splits"),
])
def test_counts_are_non_negative_integers(splits: str, where: str) -> None:
    assert where in _codes(GOOD.replace("splits = { train = 4, val = 2 }", f"splits = {splits}"))


def test_rules_between_kind_task_and_tables() -> None:
    assert _codes(HEAD) == {"dataset": "missing_field"}
    assert _codes(GOOD.replace('kind = "dataset"\n', "")) == {"dataset": "invalid_field"}
    assert _codes(GOOD.replace('"dataset"\n', '"dataframe"\n', 1)) == {"package.kind": "invalid_field"}
    assert _codes(GOOD.replace('task = "detection"', 'task = "ocr"')) == {"dataset.task": "invalid_field"}
    assert "package.task" in _codes(GOOD.replace('kind = "dataset"', 'kind = "dataset"\ntask = "classification"'))
    assert _codes(GOOD.replace("annotations = { train = 7, val = 0 }\n", "")) == {"dataset.annotations": "missing_field"}
    assert _codes(GOOD.replace("val = 0 }", "test = 0 }")) == {"dataset.annotations": "invalid_field"}
    assert _codes(GOOD + '[[solvers]]\nname = "s"\nclass = "m:C"\n') == {"solvers": "invalid_field"}
    assert _codes(GOOD.replace("annotations", "anotations")) == {"dataset.anotations": "unknown_key",
                                                                 "dataset.annotations": "missing_field"}


def test_classification_needs_no_box_counts() -> None:
    text = HEAD + '[dataset]\ntask = "classification"\nclasses = ["cat", "dog"]\nsplits = { train = 10 }\n'
    m = parse_manifest(text)
    assert m.task == "classification" and m.dataset is not None and m.dataset.annotations is None
    assert _codes(text + "annotations = { train = 9 }\n") == {"dataset.annotations": "invalid_field"}

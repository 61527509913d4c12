"""Items taken from a dataset version over a live hub on both backends: a dataset package built with
``cvflow.datasets`` and published, taken into a project with and without its labels, corrected,
and published again as the next version; and what may not be taken, by whom."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from cvflow.datasets.coco import coco_document
from cvflow.datasets.layout import write_package
from cvflow.datasets.model import Box, Dataset, Item
from hub.db import session_scope
from hub.models import AnnotationItem
from tests.annotation import Team, _token, make_team
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.helpers import LiveHub, error_code, publish, upload
from tests.runner._images import png

DATASET = "alice/street-data"
#: (split, file_name, width, height, boxes as (class index, x, y, w, h)); boxes to 0.01 px, as labels are kept.
IMAGES: list[tuple[str, str, int, int, list[tuple[int, float, float, float, float]]]] = [
    ("train", "a.png", 64, 48, [(0, 1.5, 2, 10.25, 20), (1, 30, 0, 34, 48)]),
    ("train", "b.png", 40, 30, []),  # nothing in it: a negative image
    ("val", "c.png", 32, 32, [(1, 0, 0, 5, 5)]),
]


@pytest.fixture
def team(hub: LiveHub) -> Team:
    return make_team(hub)


@pytest.fixture
def owner(team: Team) -> httpx.Client:
    """alice with a token that reads her private packages and publishes (a snapshot is a publish)."""
    return team.hub.client(_token(team.hub, "alice", "read publish"))


def build(tmp_path: Path, name: str, *, task: str = "detection", classes: tuple[str, ...] = ("car", "person"),
          images: list[Any] = IMAGES, version: str = "1.0.0") -> Path:
    """The canonical layout of a dataset package, written by the client's own code."""
    src = tmp_path / f"src-{name.replace('/', '-')}-{version}"
    src.mkdir()
    splits: dict[str, list[Item]] = {}
    for i, (split, file_name, w, h, boxes) in enumerate(images):
        path = src / file_name
        path.write_bytes(png(w, h, bytes([20 + i])))
        item = Item(file_name, path, w, h)
        if task == "classification":
            item.label = boxes[0][0]
        else:
            item.boxes = [Box(c, x, y, bw, bh) for c, x, y, bw, bh in boxes]
        splits.setdefault(split, []).append(item)
    out = tmp_path / f"pkg-{name.replace('/', '-')}-{version}"
    write_package(Dataset(task, list(classes), splits), out, name=name, version=version)
    return out


def publish_dir(client: httpx.Client, root: Path, name: str, version: str = "1.0.0", *,
                private: bool = True, edit: dict[str, bytes] | None = None) -> None:
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    text = files.pop("cvflow.toml").decode().replace('version = "1.0.0"', f'version = "{version}"')
    files.update(edit or {})
    r = publish(client, name, version, files=files, manifest_text=text, private=private)
    assert r.status_code == 201, r.text


def take(team: Team, client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post(team.url("/items/from-dataset"), json={"package": DATASET, "version": "1.0.0", **body})


def items(client: httpx.Client, team: Team) -> dict[str, dict[str, Any]]:
    r = client.get(team.url("/items"), params={"per_page": 100})
    assert r.status_code == 200, r.text
    return {i["file_name"]: i for i in r.json()["items"]}


def version_files(client: httpx.Client, package: str, version: str) -> dict[str, str]:
    r = client.get(f"/api/v1/packages/{package}/versions/{version}")
    assert r.status_code == 200, r.text
    return {f["path"]: f["sha256"] for f in r.json()["files"]}


def coco(client: httpx.Client, package: str, version: str, split: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/packages/{package}/versions/{version}/files/annotations/{split}.json",
                   follow_redirects=True)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_images_without_labels_reference_the_datasets_blobs(team: Team, owner: httpx.Client, tmp_path: Path):
    publish_dir(owner, build(tmp_path, DATASET), DATASET)
    r = take(team, owner)
    assert r.status_code == 201, r.text
    assert (r.json()["added"], r.json()["existing"]) == (3, 0)
    assert [i["file_name"] for i in r.json()["items"]] == ["a.png", "b.png", "c.png"]
    got = items(owner, team)
    blobs = version_files(owner, DATASET, "1.0.0")
    for split, name, w, h, _ in IMAGES:
        item = got[name]
        assert (item["split"], item["width"], item["height"]) == (split, w, h)
        assert (item["status"], item["labels"], item["revision"]) == ("todo", [], 0)
        assert item["sha256"] == blobs[f"images/{split}/{name}"]  # referenced, not copied
    history = owner.get(team.url(f"/items/{got['a.png']['id']}/history")).json()["events"]
    assert [(e["action"], e["model_version"], e["labels"]) for e in history] == [
        ("add", f"dataset {DATASET}@1.0.0", None)]
    # Again: nothing new; and labels asked for later do not touch the items already there.
    again = take(team, owner, labels=True)
    assert again.status_code == 201, again.text
    assert (again.json()["added"], again.json()["existing"]) == (0, 3)
    assert [i["id"] for i in again.json()["items"]] == [i["id"] for i in r.json()["items"]]
    assert all(i["status"] == "todo" for i in items(owner, team).values())


def test_one_split(team: Team, owner: httpx.Client, tmp_path: Path):
    publish_dir(owner, build(tmp_path, DATASET), DATASET)
    r = take(team, owner, splits=["val"], labels=True)
    assert r.status_code == 201, r.text
    assert [i["file_name"] for i in r.json()["items"]] == ["c.png"]
    r = take(team, owner, splits=["test"])
    assert r.status_code == 422 and error_code(r) == "invalid_field", r.text
    assert "test" in r.json()["error"]["message"] and r.json()["error"]["details"]["splits"] == ["train", "val"]


def test_labels_then_a_correction_round_trips_through_a_snapshot(team: Team, owner: httpx.Client, tmp_path: Path):
    publish_dir(owner, build(tmp_path, DATASET), DATASET)
    r = take(team, owner, labels=True)
    assert r.status_code == 201, r.text
    got = items(owner, team)
    classes = ["car", "person"]
    for _, name, _, _, boxes in IMAGES:
        assert got[name]["status"] == "done"
        assert got[name]["labels"] == [{"class": classes[c], "bbox": [x, y, w, h], "from": None}
                                       for c, x, y, w, h in boxes]
    history = owner.get(team.url(f"/items/{got['a.png']['id']}/history")).json()["events"]
    assert [(e["action"], e["model_version"], e["labels"]) for e in history] == [
        ("add", f"dataset {DATASET}@1.0.0", got["a.png"]["labels"])]
    # The project continues the dataset: an annotator corrects a.png (its car was too narrow).
    fixed = [{"class": "car", "bbox": [1.5, 2, 12, 20], "from": None}, got["a.png"]["labels"][1]]
    saved = team.ann.put(team.url(f"/items/{got['a.png']['id']}/labels"), json={"revision": 0, "labels": fixed})
    assert saved.status_code == 200, saved.text
    snap = owner.post(team.url("/snapshots"), json={})
    assert snap.status_code == 201, snap.text
    assert (snap.json()["package"], snap.json()["version"], snap.json()["items"]) == (DATASET, "1.1.0", 3)
    # 1.1.0 is 1.0.0 with the correction: the same images (the same blobs) and the same COCO but for a.png's car.
    old, new = version_files(owner, DATASET, "1.0.0"), version_files(owner, DATASET, "1.1.0")
    assert {p: d for p, d in new.items() if p.startswith("images/")} == {
        p: d for p, d in old.items() if p.startswith("images/")}
    corrected = [(s, n, w, h, [(0, 1.5, 2, 12, 20), boxes[1]] if n == "a.png" else boxes)
                 for s, n, w, h, boxes in IMAGES]
    expected = Dataset("detection", classes, {})
    for split, name, w, h, boxes in corrected:
        expected.splits.setdefault(split, []).append(
            Item(name, Path(name), w, h, [Box(c, x, y, bw, bh) for c, x, y, bw, bh in boxes]))
    for split in ("train", "val"):
        before, after = coco(owner, DATASET, "1.0.0", split), coco(owner, DATASET, "1.1.0", split)
        assert after == json.loads(json.dumps(coco_document(expected, split)))
        assert after["images"] == before["images"] and after["categories"] == before["categories"]
        assert (after == before) == (split == "val")  # only train holds the correction


def test_classification_labels(hub: LiveHub, tmp_path: Path):
    team = make_team(hub, task="classification", classes=("cat", "dog", "bird"))
    owner = hub.client(_token(hub, "alice", "read publish"))
    images = [("train", "x.png", 16, 16, [(1, 0, 0, 0, 0)]), ("train", "y.png", 16, 16, [(0, 0, 0, 0, 0)])]
    publish_dir(owner, build(tmp_path, DATASET, task="classification", classes=("cat", "dog"), images=images),
                DATASET)
    r = take(team, owner, labels=True)
    assert r.status_code == 201, r.text
    got = items(owner, team)
    assert got["x.png"]["labels"] == [{"class": "dog", "from": None}]
    assert got["y.png"]["labels"] == [{"class": "cat", "from": None}]
    assert {i["status"] for i in got.values()} == {"done"}


def test_what_cannot_be_taken(team: Team, owner: httpx.Client, tmp_path: Path):
    # A model package is no dataset.
    assert publish(owner, "alice/model", "1.0.0").status_code == 201
    r = owner.post(team.url("/items/from-dataset"), json={"package": "alice/model", "version": "1.0.0"})
    assert r.status_code == 422 and error_code(r) == "invalid_project", r.text
    assert "not a dataset" in r.json()["error"]["message"]
    # Another task.
    cls = [("train", "x.png", 16, 16, [(0, 0, 0, 0, 0)])]
    publish_dir(owner, build(tmp_path, "alice/pets", task="classification", classes=("car",), images=cls), "alice/pets")
    r = owner.post(team.url("/items/from-dataset"), json={"package": "alice/pets", "version": "1.0.0"})
    assert r.status_code == 422 and error_code(r) == "invalid_project", r.text
    assert "classification" in r.json()["error"]["message"]
    # Classes the project lacks, named.
    publish_dir(owner, build(tmp_path, "alice/bikes", classes=("car", "bike", "bus")), "alice/bikes")
    r = owner.post(team.url("/items/from-dataset"), json={"package": "alice/bikes", "version": "1.0.0"})
    assert r.status_code == 422 and error_code(r) == "invalid_project", r.text
    assert r.json()["error"]["details"]["missing"] == ["bike", "bus"]
    assert "bike, bus" in r.json()["error"]["message"]
    # No such version, no such package.
    publish_dir(owner, build(tmp_path, DATASET), DATASET)
    assert error_code(take(team, owner, version="9.9.9")) == "version_not_found"
    assert error_code(take(team, owner, package="alice/nothing")) == "package_not_found"
    r = take(team, owner, package="api/data")  # a reserved namespace: the name's own rules
    assert r.status_code == 422 and error_code(r) == "invalid_package_name", r.text
    assert items(owner, team) == {}


def test_who_may_take_a_dataset(team: Team, owner: httpx.Client, hub: LiveHub, tmp_path: Path):
    publish_dir(owner, build(tmp_path, DATASET), DATASET)
    r = take(team, team.ann)  # an annotator: not an owner
    assert r.status_code == 403 and error_code(r) == "forbidden", r.text
    r = take(team, team.eve)  # a stranger to the private project
    assert r.status_code == 404 and error_code(r) == "project_not_found", r.text
    # eve's own project, and alice's private dataset: exactly as a package that does not exist.
    eve = hub.client(_token(hub, "eve", "read publish annotate"))
    assert eve.post("/api/v1/projects", json={"namespace": "eve", "name": "mine", "task": "detection",
                                              "classes": ["car", "person"]}).status_code == 201
    hidden = eve.post("/api/v1/projects/eve/mine/items/from-dataset", json={"package": DATASET, "version": "1.0.0"})
    absent = eve.post("/api/v1/projects/eve/mine/items/from-dataset", json={"package": "alice/none", "version": "1.0.0"})
    assert hidden.status_code == absent.status_code == 404
    assert error_code(hidden) == error_code(absent) == "package_not_found"
    assert hidden.json()["error"]["message"].replace(DATASET, "X") == absent.json()["error"]["message"].replace(
        "alice/none", "X")
    # alice's token without the read scope may not read her private dataset either.
    r = take(team, team.alice)
    assert r.status_code == 404 and error_code(r) == "package_not_found", r.text


def test_a_stranger_still_cannot_reach_the_blobs(team: Team, owner: httpx.Client, hub: LiveHub, tmp_path: Path):
    publish_dir(owner, build(tmp_path, DATASET), DATASET)
    assert take(team, owner, labels=True).status_code == 201
    digest = version_files(owner, DATASET, "1.0.0")["images/train/a.png"]
    manifest = '[package]\nname = "{ns}/copy"\nversion = "1.0.0"\ndescription = "a copy"\n'

    def publish_digest(client: httpx.Client, ns: str) -> httpx.Response:
        text = manifest.format(ns=ns)
        files = [{"path": "cvflow.toml", "size": len(text.encode()), "sha256": upload(client, text.encode())},
                 {"path": "a.png", "size": len(png(64, 48, bytes([20]))), "sha256": digest}]
        return client.post(f"/api/v1/packages/{ns}/copy/versions", json={"manifest": text, "files": files})

    eve = hub.client(_token(hub, "eve", "read publish"))
    r = publish_digest(eve, "eve")
    assert r.status_code == 422 and error_code(r) == "missing_blobs", r.text
    assert r.json()["error"]["details"]["missing"] == [digest]
    assert eve.get(team.url(f"/items/{items(owner, team)['a.png']['id']}/image")).status_code == 404
    # A member of the project may (docs/annotation.md: the project's members reference its images).
    ann = hub.client(_token(hub, "ann", "read publish"))
    r = publish_digest(ann, "ann")
    assert r.status_code == 201, r.text


def test_annotation_files_are_input(team: Team, owner: httpx.Client, tmp_path: Path):
    root = build(tmp_path, DATASET)
    doc = json.loads((root / "annotations/train.json").read_text())
    cases: list[tuple[str, bytes, str, bool]] = [
        ("1.0.1", b"{not json", "invalid_labels", False),
        ("1.0.2", b"[" * 5000 + b"]" * 5000, "invalid_labels", False),
        ("1.0.3", json.dumps({**doc, "images": [{**doc["images"][0], "width": 65}, *doc["images"][1:]]}).encode(),
         "invalid_image", False),
        ("1.0.4", json.dumps({**doc, "images": [*doc["images"], {"id": 9, "file_name": "../val/c.png", "width": 32,
                                                                 "height": 32}]}).encode(), "invalid_labels", False),
        ("1.0.5", json.dumps({**doc, "annotations": [{**doc["annotations"][0], "bbox": [60, 0, 10, 10]}]}).encode(),
         "invalid_labels", True),
        ("1.0.6", json.dumps({**doc, "annotations": [{**doc["annotations"][0], "category_id": 7}]}).encode(),
         "invalid_labels", True),
    ]
    for version, data, code, labels in cases:
        publish_dir(owner, root, DATASET, version, edit={"annotations/train.json": data})
        r = take(team, owner, version=version, labels=labels)
        assert r.status_code == 422 and error_code(r) == code, (version, r.text)
    with session_scope(team.hub.context.engine) as session:
        assert session.exec(select(AnnotationItem)).all() == []
    # The box outside its image is only read when the labels are taken.
    r = take(team, owner, version="1.0.5")
    assert r.status_code == 201, r.text


def test_cli_push_from_dataset(team: Team, owner: httpx.Client, hub: LiveHub, tmp_path: Path):
    publish_dir(owner, build(tmp_path, DATASET), DATASET)
    env = cli_env(tmp_path / "home", hub.url, _token(hub, "alice", "read publish"))
    result = run_cli(env, "annotate", "push", "alice/street", "--from-dataset", f"{DATASET}@1.0.0", "--labels",
                     "--split", "train", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 2
    result = run_cli(env, "annotate", "push", "alice/street", "--from-dataset", f"{DATASET}@1.0.0")
    assert result.exit_code == 0, result.output
    assert "1 images added" in result.stdout and "2 there already" in result.stdout
    assert {i["file_name"]: i["status"] for i in items(owner, team).values()} == {
        "a.png": "done", "b.png": "done", "c.png": "todo"}
    bad = run_cli(env, "annotate", "push", "alice/street", "--labels", str(tmp_path))
    assert bad.exit_code != 0 and "--from-dataset" in bad.output

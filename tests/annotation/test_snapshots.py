"""Snapshots over a live hub on both backends: accepted labels published as a dataset version that
``cvflow dataset check`` accepts and pycocotools reads, with every publish rule applied."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycocotools.coco import COCO
from sqlmodel import select

from cvflow.datasets.layout import validate_package
from hub.db import session_scope
from hub.models import AnnotationSnapshot
from tests.annotation import Team, _token, make_team
from tests.helpers import LiveHub, error_code, publish, upload
from tests.runner._images import png

#: The labels an annotator saves, per image: (file_name, split, labels).
SAVED: list[tuple[str, str, list[dict[str, Any]]]] = [
    ("a.png", "train", [{"class": "car", "bbox": [1.5, 2, 10.25, 20], "from": None},
                        {"class": "person", "bbox": [30, 0, 34, 48], "from": None}]),
    ("b.png", "train", []),  # nothing in it: a negative image
    ("c.png", "val", [{"class": "person", "bbox": [0, 0, 5, 5], "from": None}]),
]


@pytest.fixture
def team(hub: LiveHub) -> Team:
    return make_team(hub)


@pytest.fixture
def owner(team: Team) -> httpx.Client:
    """alice with a token that may publish (a snapshot is a publish)."""
    return team.hub.client(_token(team.hub, "alice", "read publish"))


def add_images(team: Team, owner: httpx.Client, names: list[tuple[str, str]]) -> dict[str, int]:
    items = [{"sha256": upload(owner, png(64, 48, bytes([10 + i]))), "file_name": name, "split": split}
             for i, (name, split) in enumerate(names)]
    r = owner.post(team.url("/items"), json={"items": items})
    assert r.status_code == 201, r.text
    return {i["file_name"]: i["id"] for i in r.json()["items"]}


def save(team: Team, item: int, labels: list[dict[str, Any]], revision: int = 0) -> None:
    r = team.ann.put(team.url(f"/items/{item}/labels"), json={"revision": revision, "labels": labels})
    assert r.status_code == 200, r.text


def labelled(team: Team, owner: httpx.Client) -> dict[str, int]:
    ids = add_images(team, owner, [(n, s) for n, s, _ in SAVED] + [("todo.png", "train")])
    for name, _, labels in SAVED:
        save(team, ids[name], labels)
    r = team.rev.post(team.url(f"/items/{ids['c.png']}/review"), json={"revision": 1, "verdict": "approve"})
    assert r.status_code == 200, r.text
    return ids


def download(client: httpx.Client, package: str, version: str, into: Path) -> None:
    doc = client.get(f"/api/v1/packages/{package}/versions/{version}")
    assert doc.status_code == 200, doc.text
    for f in doc.json()["files"]:
        r = client.get(f"/api/v1/packages/{package}/versions/{version}/files/{f['path']}", follow_redirects=True)
        assert r.status_code == 200, r.text
        target = into / f["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(r.content)


def snapshot(team: Team, client: httpx.Client, **body: Any) -> httpx.Response:
    return client.post(team.url("/snapshots"), json=body)


def test_a_snapshot_is_a_dataset_that_checks_and_loads_in_pycocotools(team: Team, owner: httpx.Client, tmp_path: Path):
    labelled(team, owner)
    r = snapshot(team, owner)
    assert r.status_code == 201, r.text
    assert r.json() == {"package": "alice/street-data", "version": "1.0.0", "items": 3, "labels": 3}
    assert r.headers["location"] == "/api/v1/packages/alice/street-data/versions/1.0.0"
    # The project is private, so the new package is too.
    assert team.anonymous.get("/api/v1/packages/alice/street-data").status_code == 404
    meta = owner.get("/api/v1/packages/alice/street-data/versions/1.0.0").json()
    assert meta["manifest"]["kind"] == "dataset"
    assert meta["manifest"]["dataset"]["splits"] == {"train": 2, "val": 1}
    assert sorted(f["path"] for f in meta["files"]) == [
        "README.md", "annotations/train.json", "annotations/val.json", "cvflow.toml",
        "images/train/a.png", "images/train/b.png", "images/val/c.png"]
    download(owner, "alice/street-data", "1.0.0", tmp_path)
    manifest = validate_package(tmp_path)  # what `cvflow dataset check` runs
    assert manifest.dataset is not None and manifest.dataset.classes == ("car", "person")
    assert (tmp_path / "images/train/a.png").read_bytes() == png(64, 48, bytes([10]))
    for split in ("train", "val"):
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(tmp_path / f"annotations/{split}.json"))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        got = {}
        for image in coco.loadImgs(coco.getImgIds()):
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
            got[image["file_name"]] = [(names[a["category_id"]], a["bbox"]) for a in anns]
            assert (image["width"], image["height"]) == (64, 48)
        want = {n: [(lab["class"], [float(v) for v in lab["bbox"]]) for lab in labels]
                for n, s, labels in SAVED if s == split}
        assert got == want
    with session_scope(team.hub.context.engine) as session:
        rows = session.exec(select(AnnotationSnapshot)).all()
    assert [(s.package, s.version, s.items, s.labels) for s in rows] == [("alice/street-data", "1.0.0", 3, 3)]
    project = owner.get(team.url()).json()
    assert [s["version"] for s in project["snapshots"]] == ["1.0.0"]


def test_version_numbers(team: Team, owner: httpx.Client):
    labelled(team, owner)
    versions = []
    for body in ({}, {}, {"version": "3.0.0"}, {}, {"package": "alice/other"}):
        r = snapshot(team, owner, **body)
        assert r.status_code == 201, r.text
        versions.append((r.json()["package"], r.json()["version"]))
    assert versions == [("alice/street-data", "1.0.0"), ("alice/street-data", "1.1.0"),
                        ("alice/street-data", "3.0.0"), ("alice/street-data", "3.1.0"), ("alice/other", "1.0.0")]
    r = snapshot(team, owner, version="1.1.0")
    assert r.status_code == 409 and error_code(r) == "version_exists"
    for body, code in (({"version": "1.2"}, "invalid_version"), ({"package": "Alice/x"}, "invalid_package_name"),
                       ({"package": "alice"}, "invalid_package_name")):
        r = snapshot(team, owner, **body)
        assert r.status_code == 422 and error_code(r) == code, r.text


def test_nothing_to_snapshot(team: Team, owner: httpx.Client):
    r = snapshot(team, owner)
    assert r.status_code == 409 and error_code(r) == "nothing_to_snapshot"
    ids = add_images(team, owner, [("a.png", "train")])  # in the queue, never saved
    r = snapshot(team, owner)
    assert r.status_code == 409 and error_code(r) == "nothing_to_snapshot"
    save(team, ids["a.png"], [])
    assert snapshot(team, owner).status_code == 201


def test_classification(hub: LiveHub, tmp_path: Path):
    team = make_team(hub, task="classification", classes=("cat", "dog"))
    owner = hub.client(_token(hub, "alice", "read publish"))
    ids = add_images(team, owner, [("cat1.png", "train"), ("dog1.png", "train"), ("unsure.png", "val")])
    save(team, ids["cat1.png"], [{"class": "cat", "from": None}])
    save(team, ids["dog1.png"], [{"class": "dog", "from": None}])
    save(team, ids["unsure.png"], [])  # saved without a class: not in the dataset
    r = snapshot(team, owner)
    assert r.status_code == 201, r.text
    assert r.json()["items"] == 2 and r.json()["labels"] == 2
    download(owner, "alice/street-data", "1.0.0", tmp_path)
    manifest = validate_package(tmp_path)
    assert manifest.dataset is not None and manifest.dataset.splits == {"train": 2}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "annotations/train.json"))
    got = {coco.loadImgs(a["image_id"])[0]["file_name"]: coco.loadCats(a["category_id"])[0]["name"]
           for a in coco.loadAnns(coco.getAnnIds())}
    assert got == {"cat1.png": "cat", "dog1.png": "dog"}


def test_who_may_snapshot(team: Team, owner: httpx.Client):
    labelled(team, owner)
    hub = team.hub
    publishers = {name: hub.client(_token(hub, name, "read publish")) for name in ("ann", "rev", "eve")}
    for client, status, code in ((publishers["ann"], 403, "forbidden"), (publishers["rev"], 403, "forbidden"),
                                 (publishers["eve"], 404, "project_not_found"),
                                 (team.anonymous, 401, "unauthenticated"),
                                 # A snapshot is a publish: an annotate token may not, even the owner's.
                                 (team.alice, 403, "insufficient_scope"), (team.ann, 403, "insufficient_scope"),
                                 (hub.client(_token(hub, "alice", "publish:alice/other")), 403, "insufficient_scope")):
        r = snapshot(team, client)
        assert r.status_code == status and error_code(r) == code, r.text
    # Another namespace's package: alice may not publish there.
    team.hub.create_user("bob")
    r = snapshot(team, owner, package="bob/street")
    assert r.status_code == 403 and error_code(r) == "forbidden"
    with session_scope(team.hub.context.engine) as session:
        assert session.exec(select(AnnotationSnapshot)).all() == []
    # A publish scope covering the package is enough, without annotate.
    r = snapshot(team, hub.client(_token(hub, "alice", "publish:alice/street-data")))
    assert r.status_code == 201, r.text


def test_a_project_image_is_referable_only_by_its_members(team: Team, owner: httpx.Client):
    """Knowing the digest of a project's image never lets a stranger publish (and then read) its bytes."""
    ids = labelled(team, owner)
    image = owner.get(team.url(f"/items/{ids['a.png']}")).json()["sha256"]
    files = {"img.png": png(64, 48, bytes([10]))}  # the same bytes: the same digest, never uploaded by them

    def publish_reference(client: httpx.Client, name: str) -> httpx.Response:
        text = f'[package]\nname = "{name}"\nversion = "1.0.0"\ndescription = "x"\n'
        manifest = {"path": "cvflow.toml", "size": len(text.encode()), "sha256": upload(client, text.encode())}
        ns, pkg = name.split("/")
        return client.post(f"/api/v1/packages/{ns}/{pkg}/versions", json={
            "manifest": text, "private": True,
            "files": [manifest, {"path": "img.png", "size": len(files["img.png"]), "sha256": image}]})

    eve = team.hub.client(_token(team.hub, "eve", "read publish"))
    for private in (True, False):  # a public project's readers without a role do not count either
        r = team.alice.patch(team.url(), json={"private": private})
        assert r.status_code == 200, r.text
        r = publish_reference(eve, "eve/stolen")
        assert r.status_code == 422 and error_code(r) == "missing_blobs", r.text
        assert r.json()["error"]["details"]["missing"] == [image]
        # Nor can a stranger's own project take the image in.
        r = eve.post("/api/v1/projects", json={"namespace": "eve", "name": f"p{int(private)}", "task": "detection",
                                               "classes": ["car"]})
        assert r.status_code == 201, r.text
        r = eve.post(f"/api/v1/projects/eve/p{int(private)}/items",
                     json={"items": [{"sha256": image, "file_name": "a.png"}]})
        assert r.status_code == 422 and error_code(r) == "missing_blobs", r.text
    # A member who may read the project's items may reference them, as the snapshot does ...
    ann = team.hub.client(_token(team.hub, "ann", "read publish"))
    r = publish_reference(ann, "ann/mine")
    assert r.status_code == 201, r.text
    assert publish_reference(eve, "eve/stolen").status_code == 422  # (a private package: still not eve's)
    # ... and once removed from the project, no longer.
    ann2 = team.hub.client(_token(team.hub, "ann2", "read publish"))
    assert team.alice.delete(team.url("/members/ann2")).status_code == 204
    r = publish_reference(ann2, "ann2/again")
    assert r.status_code == 422 and error_code(r) == "missing_blobs"
    assert publish(eve, "eve/fine").status_code == 201  # eve's own files publish as ever

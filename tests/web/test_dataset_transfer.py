"""Datasets in and out through the website: each export zip, downloaded from a live hub (SQLite and
files, PostgreSQL and S3), is read by the tools people use (pycocotools; datumaro for COCO, VOC,
YOLO and ImageFolder) and matches the source within a pixel; a zip uploaded on the import form
is published as the signed-in user; unsafe zips (paths out of the folder, links, zip bombs, XML
entity expansion) are refused with their codes, and nothing is published or written."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import stat
import tempfile
import threading
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect
from sqlmodel import col, select

from cvflow.datasets import Dataset, import_dataset, write_package
from cvflow.errors import DatasetError
from hub.db import session_scope
from hub.models import Package, User, Version
from hub.services import accounts
from tests.conftest import running_hub
from tests.datasets.synth import CLASSES, assert_boxes_close, boxes_of, build_detection, build_imagefolder
from tests.helpers import PASSWORD, LiveHub
from tests.web.support import browser, csrf, publish_direct, sign_in, text
from web import archives
from web.views import dataset_files

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # datumaro's own imports warn about optional plugins
    import datumaro as dm
    from pycocotools.coco import COCO


# --- helpers ---------------------------------------------------------------------------------


def package_files(root: Path) -> dict[str, bytes]:
    """A package directory's files (the manifest apart), as publish_direct takes them."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "cvflow.toml"}


def publish_package(hub: LiveHub, token: str, root: Path, *, private: bool | None = None) -> None:
    manifest = (root / "cvflow.toml").read_text()
    name = next(line.split('"')[1] for line in manifest.splitlines() if line.startswith("name"))
    version = next(line.split('"')[1] for line in manifest.splitlines() if line.startswith("version"))
    publish_direct(hub, token, name, version, files=package_files(root), manifest_text=manifest, private=private)


def fetch_zip(client: httpx.Client, url: str, into: Path) -> Path:
    """Download a zip as a stream, unpack it, return the one folder it holds."""
    with client.stream("GET", url) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "application/zip"
        assert "attachment" in r.headers["content-disposition"]
        data = b"".join(r.iter_bytes())
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        zf.extractall(into)
    (top,) = list(into.iterdir())
    return top


def datumaro_boxes(path: Path, fmt: str) -> tuple[list[str], dict[str, dict[str, list[Any]]]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imported = dm.Dataset.import_from(str(path), fmt)
    names = [c.name for c in imported.categories()[dm.AnnotationType.label]]
    got: dict[str, dict[str, list[Any]]] = {}
    for item in imported:
        boxes = [(names[a.label], *a.get_bbox()) for a in item.annotations if a.type == dm.AnnotationType.bbox]
        got.setdefault(item.subset, {})[Path(item.id).name] = sorted(boxes)
    return names, got


def png(size: tuple[int, int], shade: int = 60, *, noise: bool = False) -> bytes:
    out = io.BytesIO()
    if noise:
        rng = np.random.default_rng(shade)
        Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(out, format="PNG")
    else:
        Image.new("RGB", size, (shade, 255 - shade, 128)).save(out, format="PNG")
    return out.getvalue()


def make_zip(entries: dict[str, bytes], *, top: str = "") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(top + name, data)
    return out.getvalue()


SHAPES = ["circle", "square"]
# (split, file, (width, height), [(category id, [x, y, w, h])])
IMAGES = [("train", "a.png", (64, 48), [(1, [4.0, 6.0, 20.0, 10.0]), (2, [30.5, 2.0, 12.25, 40.0])]),
          ("train", "b.png", (40, 40), []),
          ("val", "c.png", (50, 30), [(2, [10.0, 5.0, 8.0, 8.0])])]


def coco_entries(classes: list[str] | None = None, *, big: bool = False) -> dict[str, bytes]:
    """A COCO folder's files, the images drawn with Pillow; ``big`` makes the first image noise
    large enough that the zip is past what a plain form may carry."""
    entries: dict[str, bytes] = {}
    for split in ("train", "val"):
        images, annotations = [], []
        for i, (s, name, (w, h), boxes) in enumerate(IMAGES):
            if s != split:
                continue
            size = (700, 700) if big and i == 0 else (w, h)
            entries[f"images/{split}/{name}"] = png(size, 40 * i, noise=big and i == 0)
            images.append({"id": i + 1, "file_name": name, "width": size[0], "height": size[1]})
            for cat, bbox in boxes:
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cat, "bbox": bbox,
                                    "area": bbox[2] * bbox[3], "iscrowd": 0})
        doc = {"images": images, "annotations": annotations,
               "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes or SHAPES)]}
        entries[f"annotations/instances_{split}.json"] = json.dumps(doc).encode()
    return entries


def signed_in(hub: LiveHub, name: str) -> httpx.Client:
    hub.create_user(name)
    client = browser(hub)
    assert sign_in(client, name).status_code == 303
    return client


def post_import(client: httpx.Client, archive: bytes, *, token: str | None = None, header: bool = False,
                **fields: str) -> httpx.Response:
    if token is None:
        token = csrf(client.get("/publish/dataset").text)
    data = {"format": "detect", "namespace": "alice", "name": "shapes", "version": "1.0.0", **fields}
    headers = {}
    if header:
        headers = {"x-csrf-token": token, "accept": "application/json"}
    else:
        data["csrf_token"] = token
    return client.post("/publish/dataset", data=data, files={"archive": ("data.zip", archive, "application/zip")},
                       headers=headers)


def api_version(hub: LiveHub, name: str, version: str = "1.0.0") -> httpx.Response:
    return hub.client().get(f"/api/v1/packages/{name}/versions/{version}")


# --- export ----------------------------------------------------------------------------------


@pytest.fixture
def digits(hub: LiveHub, tmp_path: Path) -> Dataset:
    """alice/digits 1.0.0: the synthetic detection dataset (PNG and JPEG, half-pixel boxes), published."""
    ds = build_detection(tmp_path / "build")
    write_package(ds, tmp_path / "pkg", name="alice/digits", version="1.0.0", license="CC0-1.0")
    publish_package(hub, hub.create_user("alice"), tmp_path / "pkg")
    return ds


def test_coco_export_is_read_by_pycocotools_and_datumaro(hub: LiveHub, digits: Dataset, tmp_path: Path) -> None:
    top = fetch_zip(hub.client(), "/alice/digits/v/1.0.0/export/coco.zip", tmp_path / "unzipped")
    assert top.name == "digits-1.0.0-coco"
    want = boxes_of(digits)
    for split, items in digits.splits.items():
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its timings
            coco = COCO(str(top / "annotations" / f"instances_{split}.json"))
        names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
        assert list(names.values()) == CLASSES
        assert len(coco.getImgIds()) == len(items)
        assert len(coco.getAnnIds()) == sum(len(i.boxes) for i in items)
        got = {}
        for image in coco.loadImgs(coco.getImgIds()):
            assert (top / "images" / split / image["file_name"]).is_file()
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
            got[Path(image["file_name"]).stem] = sorted((names[a["category_id"]], *a["bbox"]) for a in anns)
        assert_boxes_close({split: got}, {split: want[split]})
    names_dm, got_dm = datumaro_boxes(top, "coco_instances")
    assert names_dm == CLASSES
    assert_boxes_close(got_dm, want)


@pytest.mark.parametrize(("fmt", "reader"), [("voc", "voc_detection"), ("yolo", "yolo")])
def test_voc_and_yolo_exports_are_read_by_datumaro(hub: LiveHub, digits: Dataset, tmp_path: Path, fmt: str,
                                                   reader: str) -> None:
    top = fetch_zip(hub.client(), f"/alice/digits/v/1.0.0/export/{fmt}.zip", tmp_path / "unzipped")
    names, got = datumaro_boxes(top, reader)
    assert names == CLASSES
    assert {split: len(items) for split, items in got.items()} == digits.image_count()
    assert sum(len(b) for split in got.values() for b in split.values()) == sum(digits.box_count().values())
    assert_boxes_close(got, boxes_of(digits))


def test_imagefolder_export_is_read_by_datumaro(hub: LiveHub, tmp_path: Path) -> None:
    src = build_imagefolder(tmp_path / "src")
    import_dataset("imagefolder", src, tmp_path / "pkg", name="alice/digit-classes", version="1.0.0")
    publish_package(hub, hub.create_user("alice"), tmp_path / "pkg")
    top = fetch_zip(hub.client(), "/alice/digit-classes/v/1.0.0/export/imagefolder.zip", tmp_path / "unzipped")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imported = dm.Dataset.import_from(str(top), "imagenet_with_subset_dirs")
    names = [c.name for c in imported.categories()[dm.AnnotationType.label]]
    assert sorted(names) == sorted(CLASSES)
    got = Counter((item.subset, names[a.label]) for item in imported for a in item.annotations)
    want = Counter((split, d.name) for split in ("train", "val") for d in (src / split).iterdir() for _ in d.iterdir())
    assert got == want
    assert {s: len(imported.get_subset(s)) for s in imported.subsets()} == {"train": 9, "val": 3}


def test_the_dataset_page_links_the_formats_of_its_task(hub: LiveHub, digits: Dataset) -> None:
    page = browser(hub).get("/alice/digits/v/1.0.0").text
    for fmt in ("coco", "voc", "yolo"):
        assert f'href="/alice/digits/v/1.0.0/export/{fmt}.zip"' in page
    assert "export/imagefolder.zip" not in page


def test_formats_that_do_not_fit_are_a_clear_404(hub: LiveHub, digits: Dataset) -> None:
    visitor = browser(hub)
    r = visitor.get("/alice/digits/v/1.0.0/export/imagefolder.zip")
    assert r.status_code == 404
    assert "detection dataset, which exports as coco, voc, yolo" in text(r.text)
    assert visitor.get("/alice/digits/v/1.0.0/export/tar.zip").status_code == 404
    assert visitor.get("/alice/digits/v/9.9.9/export/coco.zip").status_code == 404
    publish_direct(hub, hub.create_user("bob"), "bob/model")
    r = visitor.get("/bob/model/v/1.0.0/export/coco.zip")
    assert r.status_code == 404 and "not a dataset" in text(r.text)


def test_a_private_dataset_exports_only_to_who_may_read_it(hub: LiveHub, tmp_path: Path) -> None:
    ds = build_detection(tmp_path / "build", splits={"train": 2})
    write_package(ds, tmp_path / "pkg", name="alice/secret", version="1.0.0")
    publish_package(hub, hub.create_user("alice"), tmp_path / "pkg", private=True)
    assert browser(hub).get("/alice/secret/v/1.0.0/export/coco.zip").status_code == 404
    owner = browser(hub)
    assert sign_in(owner, "alice").status_code == 303
    r = owner.get("/alice/secret/v/1.0.0/export/yolo.zip")
    assert r.status_code == 200 and r.headers["cache-control"] == "private, no-store"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert "secret-1.0.0-yolo/obj.names" in zf.namelist()


def test_a_dataset_over_the_limit_is_sent_to_the_cli(hub: LiveHub, digits: Dataset,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_files, "MAX_EXPORT_BYTES", 1000)
    r = browser(hub).get("/alice/digits/v/1.0.0/export/voc.zip")
    assert r.status_code == 413
    assert 'cvflow dataset export voc "$(cvflow pull -q alice/digits@1.0.0)"' in text(r.text)


def test_a_version_whose_labels_break_the_layout_is_a_page_not_a_zip(hub: LiveHub, tmp_path: Path) -> None:
    ds = build_detection(tmp_path / "build", splits={"train": 2})
    write_package(ds, tmp_path / "pkg", name="alice/broken", version="1.0.0")
    doc = json.loads((tmp_path / "pkg" / "annotations" / "train.json").read_text())
    doc["images"][0]["width"] += 5  # the file list is what publish checks; the page must not trust the JSON
    (tmp_path / "pkg" / "annotations" / "train.json").write_text(json.dumps(doc))
    publish_package(hub, hub.create_user("alice"), tmp_path / "pkg")
    r = browser(hub).get("/alice/broken/v/1.0.0/export/coco.zip")
    assert r.status_code == 422
    assert "the JSON says" in text(r.text) and "/tmp" not in r.text


# --- import ----------------------------------------------------------------------------------


def test_the_import_form_needs_a_signed_in_user(hub: LiveHub) -> None:
    r = browser(hub).get("/publish/dataset", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/publish/dataset"


def test_a_post_without_the_csrf_token_is_refused(hub: LiveHub) -> None:
    alice = signed_in(hub, "alice")
    r = alice.post("/publish/dataset", data={"namespace": "alice", "name": "shapes", "version": "1.0.0"},
                   files={"archive": ("data.zip", make_zip(coco_entries()), "application/zip")})
    assert r.status_code == 403
    assert api_version(hub, "alice/shapes").status_code == 404


def test_the_form_offers_the_users_namespace_and_organisations(hub: LiveHub) -> None:
    alice = signed_in(hub, "alice")
    with session_scope(hub.context.engine, write=True) as session:
        owner = session.exec(select(User).where(User.name == "alice")).one()
        accounts.create_org(session, owner, "vision-lab")
    page = alice.get("/publish/dataset").text
    assert '<option value="alice" selected>alice</option>' in page
    assert '<option value="vision-lab">vision-lab</option>' in page


def test_a_coco_zip_is_published_as_the_signed_in_user(hub: LiveHub) -> None:
    alice = signed_in(hub, "alice")
    # A folder zipped with its name, and the macOS archiver's extras beside it.
    entries = {**{f"shapes/{k}": v for k, v in coco_entries().items()}, "__MACOSX/shapes/._a.png": b"\0\1"}
    r = post_import(alice, make_zip(entries), description="Shapes <b>on</b> boards")
    assert r.status_code == 303, text(r.text)
    assert r.headers["location"] == "/alice/shapes/v/1.0.0"
    page = alice.get(r.headers["location"])
    assert page.status_code == 200
    words = text(page.text)
    assert "detection, 2 classes" in words and "Shapes <b>on</b> boards" in words
    assert 'alt="a.png"' in page.text and "/alice/shapes/v/1.0.0/images/train/a.png" in page.text
    doc = api_version(hub, "alice/shapes").json()
    assert doc["dataset"]["classes"] == SHAPES
    assert doc["dataset"]["splits"] == {"train": 2, "val": 1}
    assert doc["dataset"]["annotations"] == {"train": 2, "val": 1}
    with session_scope(hub.context.engine) as session:  # published as alice, through the hub's own publish
        row = session.exec(select(Version).join(Package, col(Package.id) == Version.package_id)
                           .where(Package.full_name == "alice/shapes")).one()
        assert session.get(User, row.published_by).name == "alice"  # type: ignore[union-attr]
    # The same version again is the hub's own refusal, shown on the form.
    again = post_import(alice, make_zip(coco_entries()))
    assert again.status_code == 409 and "version_exists" in again.text


def test_a_zip_larger_than_a_form_goes_with_the_token_in_a_header(hub: LiveHub) -> None:
    alice = signed_in(hub, "alice")
    archive = make_zip(coco_entries(big=True))
    assert len(archive) > 1 << 20  # past what the CSRF check reads from a form
    token = csrf(alice.get("/publish/dataset").text)
    r = post_import(alice, archive, token=token, header=True, format="coco", name="big-shapes")
    assert r.status_code == 200, r.text
    assert r.json() == {"url": "/alice/big-shapes/v/1.0.0"}
    assert api_version(hub, "alice/big-shapes").json()["dataset"]["splits"] == {"train": 2, "val": 1}


def test_an_imagefolder_zip_is_detected_and_private_when_asked(hub: LiveHub, tmp_path: Path) -> None:
    src = build_imagefolder(tmp_path / "src")
    entries = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    alice = signed_in(hub, "alice")
    r = post_import(alice, make_zip(entries, top="digits/"), name="digit-classes", private="on")
    assert r.status_code == 303, text(r.text)
    assert api_version(hub, "alice/digit-classes").status_code == 404  # private: not for anonymous callers
    assert "classification, 3 classes" in text(alice.get(r.headers["location"]).text)


def test_publish_rules_apply_to_the_form(hub: LiveHub) -> None:
    hub.create_user("bob")
    alice = signed_in(hub, "alice")
    r = post_import(alice, make_zip(coco_entries()), namespace="bob")
    assert r.status_code == 403 and "forbidden" in r.text
    r = post_import(alice, make_zip(coco_entries()), name="Bad<Name>")
    assert r.status_code == 422
    assert "Bad<Name>" not in r.text and "Bad&lt;Name&gt;" in r.text
    assert api_version(hub, "bob/shapes").status_code == 404


def test_dataset_errors_are_listed_with_their_codes_and_escaped(hub: LiveHub) -> None:
    alice = signed_in(hub, "alice")
    r = post_import(alice, make_zip(coco_entries(["<script>alert(1)</script>", "square"])))
    assert r.status_code == 422
    assert "invalid_class_name" in r.text and "invalid_dataset" in r.text
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;" in r.text
    assert "cvflow-import-" not in r.text  # the hub's temporary directory is not shown
    assert api_version(hub, "alice/shapes").status_code == 404


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>a.png</filename><size><width>40</width><height>40</height></size>
<object><name>&lol3;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>
</annotation>"""


def test_a_voc_zip_with_xml_entities_is_refused(hub: LiveHub) -> None:
    alice = signed_in(hub, "alice")
    archive = make_zip({"Annotations/a.xml": BILLION_LAUGHS, "JPEGImages/a.png": png((40, 40))})
    r = post_import(alice, archive, name="laughs")
    assert r.status_code == 422
    assert "xml_forbidden" in r.text
    assert api_version(hub, "alice/laughs").status_code == 404


def test_names_outside_the_folder_are_refused(hub: LiveHub) -> None:
    alice = signed_in(hub, "alice")
    escaped = Path(tempfile.gettempdir()) / "cvflow-escaped.txt"
    escaped.unlink(missing_ok=True)
    for name in ("../cvflow-escaped.txt", "/tmp/cvflow-escaped.txt", "a/../../cvflow-escaped.txt"):
        r = post_import(alice, make_zip({**coco_entries(), name: b"out"}))
        assert r.status_code == 422, name
        assert "invalid_path" in r.text
    assert not escaped.exists()
    assert api_version(hub, "alice/shapes").status_code == 404


def test_links_are_refused(hub: LiveHub) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in coco_entries().items():
            zf.writestr(name, data)
        link = zipfile.ZipInfo("images/train/c.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    r = post_import(signed_in(hub, "alice"), out.getvalue())
    assert r.status_code == 422 and "symbolic link" in r.text


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(hub: LiveHub, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def recording_open(self: zipfile.ZipFile, name: Any, *args: Any, **kw: Any) -> Any:
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)  # a spy: counts entries read, reads them
    alice = signed_in(hub, "alice")
    archive = make_zip({**coco_entries(), "annotations/instances_test.json": b"\0" * (64 << 20)})
    assert len(archive) < 200_000
    opened.clear()
    r = post_import(alice, archive)
    assert r.status_code == 422
    assert "too_large" in r.text and "zip bomb" in r.text
    assert opened == []  # refused on the zip's directory: not one entry was decompressed
    assert api_version(hub, "alice/shapes").status_code == 404
    assert post_import(alice, make_zip(coco_entries())).status_code == 303
    assert set(coco_entries()) <= set(opened)  # the spy sees what a good zip unpacks


def test_an_archive_past_the_size_or_entry_limits_is_refused(hub: LiveHub, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = signed_in(hub, "alice")
    monkeypatch.setattr(archives, "MAX_UNPACKED_BYTES", 1000)
    r = post_import(alice, make_zip(coco_entries()))
    assert r.status_code == 422 and "too_large" in r.text and "unpacks to" in r.text
    monkeypatch.setattr(archives, "MAX_UNPACKED_BYTES", 1 << 30)
    monkeypatch.setattr(archives, "MAX_ENTRIES", 3)
    r = post_import(alice, make_zip(coco_entries()))
    assert r.status_code == 422 and "entries" in r.text


def test_what_is_not_a_zip_is_refused(hub: LiveHub) -> None:
    r = post_import(signed_in(hub, "alice"), b"PK\3\4 not really a zip")
    assert r.status_code == 422 and "bad_archive" in r.text


def test_a_layout_of_no_format_asks_for_one(hub: LiveHub) -> None:
    r = post_import(signed_in(hub, "alice"), make_zip({"notes.txt": b"hello"}))
    assert r.status_code == 422 and "unknown_format" in r.text


def test_unpack_checks_every_entry_before_writing_one(tmp_path: Path) -> None:
    archive = make_zip({"ok.txt": b"fine", "../bad.txt": b"no"})
    with pytest.raises(DatasetError) as caught:
        archives.unpack(io.BytesIO(archive), tmp_path)
    assert [p.code for p in caught.value.problems] == ["invalid_path"]
    assert list(tmp_path.iterdir()) == []


def test_an_anonymous_form_goes_to_sign_in(hub: LiveHub) -> None:
    visitor = browser(hub)
    token = csrf(visitor.get("/login").text)  # a session of its own, with a token, but nobody signed in
    r = post_import(visitor, make_zip(coco_entries()), token=token)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/publish/dataset"
    r = post_import(visitor, make_zip(coco_entries()), token=token, header=True)
    assert r.status_code == 401


def test_exports_and_imports_past_the_concurrency_limit_wait(hub: LiveHub, digits: Dataset,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataset_files, "_EXPORTS", threading.BoundedSemaphore(1))
    assert dataset_files._EXPORTS.acquire(blocking=False)  # the one slot, taken
    r = browser(hub).get("/alice/digits/v/1.0.0/export/coco.zip")
    assert r.status_code == 503 and r.headers["retry-after"] == "60"
    dataset_files._EXPORTS.release()
    assert browser(hub).get("/alice/digits/v/1.0.0/export/coco.zip").status_code == 200
    assert dataset_files._EXPORTS.acquire(blocking=False)  # the export gave its slot back
    monkeypatch.setattr(dataset_files, "_IMPORTS", threading.BoundedSemaphore(1))
    assert dataset_files._IMPORTS.acquire(blocking=False)
    r = post_import(signed_in(hub, "carol"), make_zip(coco_entries()), namespace="carol")
    assert r.status_code == 503 and "busy" in r.text


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "out" / "train" / "empty-class").mkdir(parents=True)
    (tmp_path / "out" / "train" / "cat").mkdir()
    (tmp_path / "out" / "train" / "cat" / "a.png").write_bytes(png((8, 8)))
    (tmp_path / "out" / "notes.json").write_text("{}" * 1000)
    return tmp_path / "out"


def test_zip_stream_keeps_empty_directories_and_closes_once(tmp_path: Path) -> None:
    closed: list[int] = []
    data = b"".join(archives.zip_stream(_tree(tmp_path), "top", on_close=lambda: closed.append(1)))
    assert closed == [1]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == ["top/", "top/notes.json", "top/train/", "top/train/cat/",
                                         "top/train/cat/a.png", "top/train/empty-class/"]
        assert zf.getinfo("top/train/cat/a.png").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("top/notes.json").compress_type == zipfile.ZIP_DEFLATED


def test_zip_stream_closes_when_dropped_or_cut_off(tmp_path: Path) -> None:
    closed: list[str] = []
    root = _tree(tmp_path)
    unstarted = archives.zip_stream(root, "top", on_close=lambda: closed.append("unstarted"))
    del unstarted  # the server dropped the response before its first piece
    gc.collect()
    started = archives.zip_stream(root, "top", on_close=lambda: closed.append("started"))
    next(started)
    started.close()  # the client went away mid-stream
    del started
    gc.collect()
    assert closed == ["unstarted", "started"]


def published_boxes(hub: LiveHub, name: str, splits: list[str]) -> dict[str, dict[str, list[Any]]]:
    """split -> image stem -> sorted (class, x, y, w, h), read from the version's annotation files."""
    client = hub.client()
    classes = api_version(hub, name).json()["dataset"]["classes"]
    out: dict[str, dict[str, list[Any]]] = {}
    for split in splits:
        doc = client.get(f"/api/v1/packages/{name}/versions/1.0.0/files/annotations/{split}.json").json()
        boxes: dict[int, list[Any]] = {im["id"]: [] for im in doc["images"]}
        for a in doc["annotations"]:
            boxes[a["image_id"]].append((classes[a["category_id"] - 1], *a["bbox"]))
        out[split] = {Path(im["file_name"]).stem: sorted(boxes[im["id"]]) for im in doc["images"]}
    return out


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_an_exported_zip_imports_back_unchanged(hub: LiveHub, digits: Dataset, fmt: str) -> None:
    alice = signed_in(hub, "alice-two")
    archive = alice.get(f"/alice/digits/v/1.0.0/export/{fmt}.zip")
    assert archive.status_code == 200
    r = post_import(alice, archive.content, token=csrf(alice.get("/publish/dataset").text), header=True,
                    namespace="alice-two", name=f"digits-{fmt}")
    assert r.status_code == 200, r.text
    doc = api_version(hub, f"alice-two/digits-{fmt}").json()["dataset"]
    assert doc["classes"] == CLASSES
    assert doc["splits"] == digits.image_count()
    assert_boxes_close(published_boxes(hub, f"alice-two/digits-{fmt}", list(digits.splits)), boxes_of(digits))


def test_an_exported_imagefolder_zip_imports_back_unchanged(hub: LiveHub, tmp_path: Path) -> None:
    src = build_imagefolder(tmp_path / "src")
    import_dataset("imagefolder", src, tmp_path / "pkg", name="alice/digit-classes", version="1.0.0")
    publish_package(hub, hub.create_user("alice"), tmp_path / "pkg")
    bob = signed_in(hub, "bob")
    archive = bob.get("/alice/digit-classes/v/1.0.0/export/imagefolder.zip").content
    assert post_import(bob, archive, namespace="bob", name="digit-classes").status_code == 303
    want = api_version(hub, "alice/digit-classes").json()["dataset"]
    got = api_version(hub, "bob/digit-classes").json()["dataset"]
    assert got["classes"] == want["classes"] and got["splits"] == want["splits"] == {"train": 9, "val": 3}
    for split in ("train", "val"):
        labels = []
        for owner in ("alice", "bob"):
            doc = hub.client().get(f"/api/v1/packages/{owner}/digit-classes/versions/1.0.0/files/annotations/"
                                   f"{split}.json").json()
            names = {im["id"]: Path(im["file_name"]).stem for im in doc["images"]}
            labels.append(sorted((names[a["image_id"]], a["category_id"]) for a in doc["annotations"]))
        assert labels[0] == labels[1]


@pytest.fixture
def browser_site(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    """A hub of its own on SQLite for the browser test (one backend: the page is the same on both)."""
    with running_hub(make_settings("sqlite-file")) as live:
        yield live


def test_import_and_export_in_a_browser(chromium: Any, browser_site: LiveHub, screenshots: Path) -> None:
    site = browser_site
    site.create_user("alice")
    big = make_zip(coco_entries(big=True))
    assert len(big) > 1 << 20  # only the page's script can send this (the CSRF check reads forms up to 1 MiB)
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning")
                and not m.text.startswith("Failed to load resource") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", lambda d: problems.append(f"dialog {d.message}"))
        page.goto(site.url + "/login?next=/publish/dataset")
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/publish/dataset")
        # Refused: the problems are listed as text, a class name with markup included.
        bad = make_zip(coco_entries(['<img src=x onerror=alert(1)>', "square"]))
        page.set_input_files("#d-archive", files=[{"name": "bad.zip", "mimeType": "application/zip", "buffer": bad}])
        page.get_by_label("Name", exact=True).fill("shapes")
        page.get_by_role("button", name="Import and publish").click()
        alert = page.locator("#import-error .alert")
        expect(alert).to_contain_text("invalid_class_name")
        expect(alert).to_contain_text("<img src=x onerror=alert(1)>")
        assert page.locator("#import-error img").count() == 0
        page.screenshot(path=str(screenshots / "dataset-import-refused.png"), full_page=True)
        # Published: the page opens the new version.
        page.set_input_files("#d-archive", files=[{"name": "shapes.zip", "mimeType": "application/zip",
                                                   "buffer": big}])
        page.get_by_label("Description (optional)").fill("Shapes, imported in a browser")
        page.get_by_role("button", name="Import and publish").click()
        page.wait_for_url("**/alice/shapes/v/1.0.0")
        expect(page.locator("ul.thumbs img").first).to_have_js_property("complete", True)
        page.screenshot(path=str(screenshots / "dataset-imported.png"), full_page=True)
        with page.expect_download() as download:
            page.locator("p.downloads").get_by_role("link", name="yolo").click()
        assert download.value.suggested_filename == "shapes-1.0.0-yolo.zip"
        with zipfile.ZipFile(download.value.path()) as zf:
            assert zf.read("shapes-1.0.0-yolo/obj.names").decode().split() == SHAPES
            assert sorted(n for n in zf.namelist() if n.endswith(".txt") and "/labels/" in n) == [
                "shapes-1.0.0-yolo/labels/train/a.txt", "shapes-1.0.0-yolo/labels/train/b.txt",
                "shapes-1.0.0-yolo/labels/val/c.txt"]
    finally:
        context.close()
    assert problems == []

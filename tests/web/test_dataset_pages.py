"""A dataset version's package page: thumbnails with their boxes, the class histogram, the splits,
the pull and export lines; the image route behind the thumbnails; and pages of datasets whose
annotation files are broken, too large or missing from storage (a note, never an error).

The dataset is real: PNGs drawn with Pillow into a COCO folder, imported with
``cvflow dataset import coco`` and published with ``cvflow publish`` to a live hub (SQLite and
files, PostgreSQL and S3)."""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.helpers import LiveHub, publish
from tests.web.support import browser, sign_in, text

CLASSES = ["cat", "dog", "red panda"]
XSS = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
# (split, file, (width, height), [(category id, [x, y, w, h])])
IMAGES = [
    ("train", "a.png", (64, 48), [(1, [4.0, 6.0, 20.0, 10.0]), (3, [30.5, 2.0, 12.25, 40.0])]),
    ("train", "b.png", (40, 40), [(2, [0.0, 0.0, 40.0, 40.0])]),
    ("train", "c.png", (32, 64), []),
    ("val", "d.png", (50, 30), [(2, [10.0, 5.0, 8.0, 8.0]), (2, [20.0, 5.0, 8.0, 8.0])]),
]


def png(size: tuple[int, int], shade: int) -> bytes:
    out = BytesIO()
    Image.new("RGB", size, (shade, 255 - shade, 128)).save(out, format="PNG")
    return out.getvalue()


def write_coco(src: Path) -> None:
    for n, split in enumerate(("train", "val")):
        images, annotations = [], []
        for i, (s, name, (w, h), boxes) in enumerate(IMAGES):
            if s != split:
                continue
            (src / "images" / split).mkdir(parents=True, exist_ok=True)
            (src / "images" / split / name).write_bytes(png((w, h), 40 * i + n))
            images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
            for cat, bbox in boxes:
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cat, "bbox": bbox,
                                    "area": bbox[2] * bbox[3], "iscrowd": 0, "segmentation": []})
        doc = {"images": images, "annotations": annotations,
               "categories": [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)]}
        (src / "annotations").mkdir(exist_ok=True)
        (src / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))


@pytest.fixture
def shapes(hub: LiveHub, tmp_path: Path) -> Path:
    """alice/shapes 1.0.0, imported from a COCO folder and published with the CLI; its package directory."""
    write_coco(tmp_path / "coco")
    env = cli_env(tmp_path / "home", hub.url, hub.create_user("alice"))
    package = tmp_path / "shapes"
    result = run_cli(env, "dataset", "import", "coco", str(tmp_path / "coco"), str(package), "--name", "alice/shapes",
                     "--description", XSS, "-q")
    assert result.exit_code == 0, result.output
    result = run_cli(env, "publish", str(package))
    assert result.exit_code == 0, result.output
    return package


class Page(HTMLParser):
    """The thumbnails (image URL, alt, view box, boxes with their class) and histogram bars of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.thumbs: list[dict[str, Any]] = []
        self.bars: list[int] = []
        self._in_rect = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "figure" and "thumb" in classes:
            self.thumbs.append({"boxes": []})
        elif tag == "img" and self.thumbs and "src" not in self.thumbs[-1]:
            self.thumbs[-1].update(src=a["src"], alt=a["alt"], size=(int(a["width"] or 0), int(a["height"] or 0)))
        elif tag == "svg" and "boxes" in classes:
            self.thumbs[-1]["viewbox"] = a["viewbox"]
        elif tag == "rect" and "box" in classes:
            self.thumbs[-1]["boxes"].append({"xywh": [float(a[k] or "nan") for k in ("x", "y", "width", "height")]})
            self._in_rect = True
        elif tag == "rect" and "bar" in classes:
            self.bars.append(int(a["data-count"] or -1))

    def handle_data(self, data: str) -> None:
        if self._in_rect:
            self.thumbs[-1]["boxes"][-1]["class"] = data

    def handle_endtag(self, tag: str) -> None:
        if tag == "rect":
            self._in_rect = False


def coco_boxes(package: Path, split: str) -> dict[str, list[tuple[str, list[float]]]]:
    """Each image's boxes as the published ``annotations/<split>.json`` states them, by file name."""
    doc = json.loads((package / "annotations" / f"{split}.json").read_text())
    names = {im["id"]: im["file_name"] for im in doc["images"]}
    classes = {c["id"]: c["name"] for c in doc["categories"]}
    out: dict[str, list[tuple[str, list[float]]]] = {n: [] for n in names.values()}
    for a in doc["annotations"]:
        out[names[a["image_id"]]].append((classes[a["category_id"]], a["bbox"]))
    return out


def test_a_dataset_page_shows_thumbnails_with_their_boxes_and_a_class_histogram(hub: LiveHub, shapes: Path) -> None:
    client = browser(hub)
    r = client.get("/alice/shapes")
    assert r.status_code == 200, r.text
    page = Page(r.text)
    expected = coco_boxes(shapes, "train")
    assert sorted(t["alt"] for t in page.thumbs) == sorted(expected) == ["a.png", "b.png", "c.png"]
    for thumb in page.thumbs:
        name = thumb["alt"]
        width, height = thumb["size"]
        source = Image.open(shapes / "images" / "train" / name)
        assert (width, height) == source.size
        drawn = sorted((b["class"], b["xywh"]) for b in thumb["boxes"])
        assert drawn == sorted((c, [float(v) for v in bbox]) for c, bbox in expected[name])
        if drawn:
            assert thumb["viewbox"] == f"0 0 {width} {height}"
        # the thumbnail is the version's own image file, served as an image
        image = client.get(thumb["src"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content == (shapes / "images" / "train" / name).read_bytes()
    assert page.bars == [1, 1, 1]  # cat, dog, red panda in train
    assert "red panda" in text(r.text)

    seen = text(r.text)
    assert "cvflow pull -q alice/shapes@1.0.0" in unescape(r.text)
    for fmt in ("coco", "voc", "yolo"):
        assert f'cvflow dataset export {fmt} "$(cvflow pull -q alice/shapes@1.0.0)" ./shapes-{fmt}' in unescape(r.text)
    assert "imagefolder" not in r.text.split('id="dataset-h"')[0]  # a detection dataset: no classification export
    assert "cvflow install" not in r.text and 'id="solvers-h"' not in r.text
    assert "Splits Split Images Boxes Annotations train 3 3 train.json val 1 2 val.json" in seen, seen

    val = Page(client.get("/alice/shapes", params={"split": "val"}).text)
    assert [t["alt"] for t in val.thumbs] == ["d.png"] and val.bars == [0, 2, 0]
    unknown = Page(client.get("/alice/shapes", params={"split": "<nope>"}).text)  # falls back to the first split
    assert len(unknown.thumbs) == 3


def test_the_page_escapes_what_the_publisher_wrote(hub: LiveHub, shapes: Path) -> None:
    r = browser(hub).get("/alice/shapes/v/1.0.0")
    assert r.status_code == 200
    assert "<script>alert" not in r.text and "<img src=x" not in r.text
    assert "&lt;script&gt;alert(" in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'self'")


def test_the_image_route_serves_dataset_images_only(hub: LiveHub, shapes: Path) -> None:
    client = browser(hub)
    base = "/alice/shapes/v/1.0.0/images/"
    assert client.get(base + "train/a.png").status_code == 200
    for bad in ("train/missing.png", "../cvflow.toml", "train/../../cvflow.toml", "%2e%2e/cvflow.toml"):
        assert client.get(base + bad).status_code == 404, bad
    assert client.get("/alice/shapes/v/9.9.9/images/train/a.png").status_code == 404
    token = hub.create_user("bob")
    assert publish(hub.client(token), "bob/model", files={"solver.py": b"", "images/x.png": b"\x89PNG"}
                   ).status_code == 201
    assert client.get("/bob/model/v/1.0.0/images/x.png").status_code == 404  # a model's files are not previewed


def dataset_toml(name: str, splits: str = "{ train = 1 }", boxes: str = "{ train = 1 }") -> str:
    return (f'[package]\nname = "{name}"\nversion = "1.0.0"\ndescription = "broken"\nkind = "dataset"\n'
            f'[dataset]\ntask = "detection"\nclasses = ["cat", "dog"]\nsplits = {splits}\nannotations = {boxes}\n')


@pytest.mark.parametrize(("annotations", "note"), [
    (b"{not json", "is not a JSON document"),
    (b"\xff\xfe\x00garbage", "is not a JSON document"),
    (b"[" * 10_000 + b"]" * 10_000, "is not a JSON document"),  # nested past the parser's bound
    (b'{"images": {"a": 1}}', "is not a COCO document"),
    (json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10},
                            {"id": True, "file_name": "b.png", "width": 10, "height": 10},
                            {"id": 2, "file_name": "../../cvflow.toml", "width": 10, "height": 10},
                            {"id": 3, "file_name": "a.png", "width": -1, "height": 10}, "text", None],
                 "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
                                 {"image_id": 1, "category_id": 2, "bbox": [1, 2, "3", 4]},
                                 {"image_id": 1, "category_id": 9, "bbox": [1, 2, 3, 4]},
                                 {"image_id": 1, "category_id": 1, "bbox": [1, 2, 0, 4]},
                                 {"image_id": 1, "category_id": 2, "bbox": [1e400, 2, 3, 4]}, 7],
                 "categories": []}).encode(), "10 entries in annotations/train.json could not be read"),
])
def test_a_broken_annotation_file_is_a_note_on_the_page(hub: LiveHub, annotations: bytes, note: str) -> None:
    # The hub checks a dataset's file list at publish, not what its JSON says: these publish.
    client = hub.client(hub.create_user("alice"))
    r = publish(client, "alice/broken", manifest_text=dataset_toml("alice/broken"),
                files={"annotations/train.json": annotations, "images/train/a.png": png((10, 10), 1)})
    assert r.status_code == 201, r.text
    page = browser(hub).get("/alice/broken")
    assert page.status_code == 200, page.text
    assert note in text(page.text)
    if note.startswith("10 entries"):  # what could be read is shown: the one good image, its one good box
        thumbs = Page(page.text).thumbs
        assert [(t["alt"], [b["xywh"] for b in t["boxes"]]) for t in thumbs] == [("a.png", [[1.0, 2.0, 3.0, 4.0]])]


def test_an_annotation_file_over_the_limit_or_missing_from_storage_is_a_note(
        hub: LiveHub, monkeypatch: pytest.MonkeyPatch) -> None:
    client = hub.client(hub.create_user("alice"))
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}], "annotations": [],
           "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    files = {"annotations/train.json": json.dumps(doc).encode() + b" " * 4096, "images/train/a.png": png((10, 10), 2)}
    r = publish(client, "alice/big", manifest_text=dataset_toml("alice/big", boxes="{ train = 0 }"), files=files)
    assert r.status_code == 201, r.text
    import web.datasets

    monkeypatch.setattr(web.datasets, "MAX_ANNOTATION_BYTES", 4096)  # a 64 MiB file costs a test seconds
    page = browser(hub).get("/alice/big")
    assert page.status_code == 200 and "more than the 0 MiB this page reads" in text(page.text)
    monkeypatch.undo()

    files["annotations/train.json"] = json.dumps(doc).encode() + b"\n"  # bytes no other test stores
    r = publish(client, "alice/lost", manifest_text=dataset_toml("alice/lost", boxes="{ train = 0 }"), files=files)
    assert r.status_code == 201, r.text
    version = client.get("/api/v1/packages/alice/lost/versions/1.0.0").json()
    digest = next(f["sha256"] for f in version["files"] if f["path"] == "annotations/train.json")
    hub.context.store.delete(digest)
    page = browser(hub).get("/alice/lost")
    assert page.status_code == 200 and "could not be read from storage" in text(page.text)


def test_a_private_dataset_is_shown_to_who_may_read_it(hub: LiveHub, tmp_path: Path) -> None:
    write_coco(tmp_path / "coco")
    env = cli_env(tmp_path / "home", hub.url, hub.create_user("alice"))
    package = tmp_path / "secret"
    assert run_cli(env, "dataset", "import", "coco", str(tmp_path / "coco"), str(package), "--name", "alice/secret",
                   "-q").exit_code == 0
    result = run_cli(env, "publish", str(package), "--private")
    assert result.exit_code == 0, result.output
    stranger = browser(hub)
    assert stranger.get("/alice/secret").status_code == 404
    assert stranger.get("/alice/secret/v/1.0.0/images/train/a.png").status_code == 404
    owner = browser(hub)
    assert sign_in(owner, "alice").status_code == 303
    page = owner.get("/alice/secret")
    assert page.status_code == 200
    thumbs = Page(page.text).thumbs
    assert len(thumbs) == 3
    image = owner.get(thumbs[0]["src"])
    assert image.status_code == 200 and image.headers["cache-control"].startswith("private")
    assert re.search(r"<title>(cat|dog|red panda)</title>", page.text)


def test_in_a_browser_the_boxes_lie_on_their_images_and_nothing_is_blocked(
        chromium: Any, hub: LiveHub, shapes: Path, screenshots: Path) -> None:
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        problems: list[str] = []
        # CSP refusals and script errors; failed loads are in ``failed`` (Chromium also asks for a favicon)
        page.on("console", lambda m: problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        failed: list[str] = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        page.goto(hub.url + "/alice/shapes")
        page.wait_for_load_state("networkidle")
        loaded = page.eval_on_selector_all(
            "figure.thumb img", "imgs => imgs.map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        assert sorted(loaded) == [["a.png", True], ["b.png", True], ["c.png", True]]
        # Each box, where the browser draws it, is its COCO box scaled to the displayed image.
        placed = page.evaluate("""() => [...document.querySelectorAll('figure.thumb')].flatMap(f => {
            const img = f.querySelector('img').getBoundingClientRect();
            const scale = img.width / f.querySelector('img').naturalWidth;
            return [...f.querySelectorAll('rect.box')].map(r => {
                const b = r.getBoundingClientRect();
                return [(b.x - img.x) / scale, (b.y - img.y) / scale, b.width / scale, b.height / scale,
                        r.x.baseVal.value, r.y.baseVal.value, r.width.baseVal.value, r.height.baseVal.value,
                        getComputedStyle(r).stroke];
            });
        })""")
        assert len(placed) == 3
        for *seen, x, y, w, h, stroke in placed:
            # the stroke (2 px, not scaled) widens the drawn box by about a pixel on each side
            assert all(abs(a - b) <= 3 for a, b in zip(seen, (x, y, w, h), strict=True)), (seen, x, y, w, h)
            assert stroke not in ("none", "")
        assert failed == [] and problems == []
        page.screenshot(path=str(screenshots / "dataset-page.png"), full_page=True)
    finally:
        context.close()


def test_a_split_shows_its_first_images_and_draws_a_bounded_number_of_boxes() -> None:
    from web.datasets import MAX_BOXES_PER_IMAGE, THUMBNAILS, parse_split

    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 80} for i in range(1, 31)]
    boxes = [{"image_id": 1, "category_id": 1 + k % 2, "bbox": [k % 90, 1, 5, 5]} for k in range(250)]
    boxes.append({"image_id": 30, "category_id": 2, "bbox": [1.5, 2.25, 3, 4]})  # not among the first 24
    paths = {f"images/train/{i}.png" for i in range(1, 31)}
    preview = parse_split(json.dumps({"images": images, "annotations": boxes}).encode(), "train", paths, 2)
    assert preview.images == 30 and len(preview.thumbs) == THUMBNAILS
    assert [t.file_name for t in preview.thumbs] == [f"{i}.png" for i in range(1, 25)]
    first = preview.thumbs[0]
    assert len(first.boxes) == MAX_BOXES_PER_IMAGE and first.more_boxes == 250 - MAX_BOXES_PER_IMAGE
    assert preview.counts == {0: 125, 1: 126} and preview.note is None

    labels = {"images": images[:2], "annotations": [{"image_id": 1, "category_id": 2}, {"image_id": 2, "category_id": 1}]}
    preview = parse_split(json.dumps(labels).encode(), "train", paths, 2)
    assert [(t.file_name, t.label, t.boxes) for t in preview.thumbs] == [("1.png", 1, ()), ("2.png", 0, ())]
    assert preview.counts == {1: 1, 0: 1}

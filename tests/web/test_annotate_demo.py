"""The demo project annotated in Chromium, end to end, on both backends.

`cvflow-hub serve --demo`'s loader creates demo/digits-shifted (40 canvases of digits in a style
demo/digits-detector was not trained on). A real suggestion worker (`cvflow annotate suggest`, a
child process with an annotator's token) installs the detector into its own venv (torch), serves
it with the runner and posts its suggestions. The annotator then signs in through the website's
form and annotates 10 images with the keyboard and the mouse: accepting all suggestions
(Shift+A) or one (Tab, A), fixing a class with a number key, rejecting a wrong suggestion (X),
drawing the boxes the model missed, saving with Enter. The owner publishes a snapshot with the
project page's button. The snapshot's COCO file, loaded with pycocotools, must hold exactly what
the test drew and accepted, which it works out from its own actions and the suggestions it read
from the item documents before acting; the project's statistics must count those actions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from pycocotools.coco import COCO

from hub.demo import EXAMPLES, PROJECT, PROJECT_IMAGES, load_demo
from tests.client_e2e._publish_helpers import cli_env, run_script
from tests.helpers import PASSWORD, LiveHub

TRUTH = json.loads((EXAMPLES / PROJECT_IMAGES.parent / "truth.json").read_text())
CLASSES = [str(d) for d in range(10)]
SAME_PX = 1.0  # the hub's "kept as it was" rule, and the tolerance of every box compared here
ITEMS = f"/api/v1/projects/{PROJECT}/items"
#: What the annotator does on the n-th item it is given (the queue's order is the hub's).
PLAN = ["accept-all", "accept-one", "draw", "fix-class", "reject-wrong",
        "accept-all", "reject-wrong", "draw", "fix-class", "accept-one"]

Box = list[float]


def truth_of(file_name: str) -> list[tuple[str, Box]]:
    (image,) = [im for im in TRUTH["images"] if im["file_name"] == file_name]
    names = {c["id"]: c["name"] for c in TRUTH["categories"]}
    return [(names[a["category_id"]], [float(v) for v in a["bbox"]]) for a in TRUTH["annotations"]
            if a["image_id"] == image["id"]]


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def key_of(name: str) -> str:
    """The key that picks a class: 1-9 for the first nine, 0 for the tenth."""
    return str((CLASSES.index(name) + 1) % 10)


def inside(box: Box, x: float, y: float, margin: float = 0.5) -> bool:
    return box[0] - margin <= x <= box[0] + box[2] + margin and box[1] - margin <= y <= box[1] + box[3] + margin


def same_box(a: Box, b: Box) -> bool:
    return all(abs(p - q) <= SAME_PX for p, q in zip(a, b, strict=True))


@dataclass
class Tally:
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    added: int = 0

    def count(self, labels: list[dict[str, Any]], suggestions: list[dict[str, Any]]) -> None:
        """As the hub counts a save (docs/annotation.md, "Labels")."""
        used = set()
        for label in labels:
            if label["from"] is None:
                self.added += 1
                continue
            used.add(label["from"])
            s = suggestions[label["from"]]
            if s["class"] == label["class"] and same_box(s["bbox"], label["bbox"]):
                self.accepted += 1
            else:
                self.edited += 1
        self.rejected += len(suggestions) - len(used)


@dataclass
class Item:
    """One item on the page, and the test's own account of what it did to it."""

    page: Page
    doc: dict[str, Any]
    labels: list[dict[str, Any]] = field(default_factory=list)
    rejected: set[int] = field(default_factory=set)
    done: list[str] = field(default_factory=list)  # what was done, for the final check of the mix

    @property
    def suggestions(self) -> list[dict[str, Any]]:
        return self.doc["suggestions"]  # type: ignore[no-any-return]

    def pending(self) -> list[int]:
        used = {label["from"] for label in self.labels}
        return [i for i in range(len(self.suggestions)) if i not in used and i not in self.rejected]

    def shown(self) -> None:
        """The page draws what the test believes it holds."""
        expect(self.page.locator("#annotate-overlay g.label")).to_have_count(len(self.labels))
        expect(self.page.locator("#annotate-overlay g.suggestion")).to_have_count(len(self.pending()))

    def select_suggestion(self, index: int) -> None:
        """Tab from nothing selected: labels come first, then the open suggestions."""
        self.page.keyboard.press("Escape")
        for _ in range(len(self.labels) + self.pending().index(index) + 1):
            self.page.keyboard.press("Tab")
        expect(self.page.locator("#annotate")).to_have_attribute("data-selected", f"suggestion:{index}")

    def accept_all(self) -> None:
        if not self.pending():
            return
        self.page.keyboard.press("Shift+A")
        for i in self.pending():
            s = self.suggestions[i]
            self.labels.append({"class": s["class"], "bbox": list(s["bbox"]), "from": i})
        self.done.append("Shift+A")
        self.shown()

    def accept(self, index: int) -> None:
        self.select_suggestion(index)
        self.page.keyboard.press("a")
        s = self.suggestions[index]
        self.labels.append({"class": s["class"], "bbox": list(s["bbox"]), "from": index})
        self.done.append("A")
        self.shown()

    def reject(self, index: int) -> None:
        self.select_suggestion(index)
        self.page.keyboard.press("x")
        self.rejected.add(index)
        self.done.append("X")
        self.shown()

    def select_label(self, index: int) -> None:
        self.page.keyboard.press("Escape")
        for _ in range(index + 1):
            self.page.keyboard.press("Tab")
        expect(self.page.locator("#annotate")).to_have_attribute("data-selected", f"label:{index}")

    def delete_label(self, index: int) -> dict[str, Any]:
        """X on a label; one taken from a suggestion takes it along (that suggestion is rejected)."""
        self.select_label(index)
        self.page.keyboard.press("x")
        gone = self.labels.pop(index)
        if gone["from"] is not None:
            self.rejected.add(gone["from"])
        self.done.append("X")
        self.shown()
        return gone

    def reclassify(self, label_index: int, name: str) -> None:
        self.select_label(label_index)
        self.page.keyboard.press(key_of(name))
        self.labels[label_index]["class"] = name
        expect(self.page.locator(f'#label-list [data-label-index="{label_index}"]')).to_contain_text(name)
        self.done.append("number key")

    def start_corner(self, box: Box) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """A corner of ``box`` to start dragging from that hits no label and no open suggestion
        (there the page would move that instead of drawing), and the opposite corner."""
        x0, y0, x1, y1 = box[0], box[1], box[0] + box[2], box[1] + box[3]
        taken = [label["bbox"] for label in self.labels] + [self.suggestions[i]["bbox"] for i in self.pending()]
        for start, end in (((x0, y0), (x1, y1)), ((x1, y1), (x0, y0)), ((x1, y0), (x0, y1)), ((x0, y1), (x1, y0))):
            if not any(inside(t, *start) for t in taken):
                return start, end
        return None

    def draw(self, box: Box, name: str) -> bool:
        """Drag a box with the mouse, then pick its class by key; False when no corner is free."""
        corners = self.start_corner(box)
        if corners is None:
            return False
        self.page.keyboard.press("Escape")  # nothing selected: no corner handles to catch the drag
        area = self.page.locator("#annotate-overlay").bounding_box()
        assert area and area["width"] > 200, area
        kx, ky = area["width"] / self.doc["width"], area["height"] / self.doc["height"]
        (sx, sy), (ex, ey) = ((area["x"] + x * kx, area["y"] + y * ky) for x, y in corners)
        self.page.mouse.move(sx, sy)
        self.page.mouse.down()
        self.page.mouse.move((sx + ex) / 2, (sy + ey) / 2, steps=3)
        self.page.mouse.move(ex, ey, steps=3)
        self.page.mouse.up()
        # Where the pointer went, in image pixels: what the page should have drawn.
        xs = sorted(((sx - area["x"]) / kx, (ex - area["x"]) / kx))
        ys = sorted(((sy - area["y"]) / ky, (ey - area["y"]) / ky))
        self.labels.append({"class": name, "bbox": [xs[0], ys[0], xs[1] - xs[0], ys[1] - ys[0]], "from": None})
        index = len(self.labels) - 1
        expect(self.page.locator("#annotate")).to_have_attribute("data-selected", f"label:{index}")
        self.page.keyboard.press(key_of(name))
        expect(self.page.locator(f'#label-list [data-label-index="{index}"]')).to_contain_text(f"{name} (drawn)")
        self.done.append("mouse")
        self.shown()
        return True

    def missed(self) -> list[tuple[str, Box]]:
        """The true digits that no label holds yet (its class, IoU 0.5)."""
        return [(name, box) for name, box in truth_of(self.doc["file_name"])
                if not any(lb["class"] == name and iou(lb["bbox"], box) >= 0.5 for lb in self.labels)]

    def wrong(self) -> list[int]:
        """Suggestions that match no true digit of their class."""
        truth = truth_of(self.doc["file_name"])
        return [i for i, s in enumerate(self.suggestions)
                if not any(n == s["class"] and iou(s["bbox"], b) >= 0.5 for n, b in truth)]


def act(item: Item, plan: str) -> None:
    """Annotate one item as ``plan`` says, as far as its suggestions allow."""
    suggestions = item.suggestions
    if not suggestions:
        plan = "draw"
    if plan == "accept-all":
        item.accept_all()
    elif plan == "accept-one":
        item.accept(0)
    elif plan == "fix-class":
        item.accept_all()
        truth = [n for n, b in truth_of(item.doc["file_name"]) if iou(b, item.labels[0]["bbox"]) >= 0.5]
        first = item.labels[0]["class"]
        name = truth[0] if truth and truth[0] != first else CLASSES[(CLASSES.index(first) + 1) % 10]
        item.reclassify(0, name)
    elif plan == "reject-wrong":
        wrong = item.wrong()
        item.reject(wrong[0] if wrong else len(suggestions) - 1)
        item.accept_all()
    if plan == "draw":  # accept the good suggestions, reject the wrong ones, draw what was missed
        wrong = item.wrong()
        for i in wrong:
            item.reject(i)
        if len(wrong) < len(suggestions):
            item.accept_all()
        drawn = [item.draw(box, name) for name, box in item.missed()]
        if not any(drawn):  # the model found every digit: one is deleted and drawn again by hand
            gone = item.delete_label(0)
            assert item.draw(gone["bbox"], gone["class"])


def sign_in(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def watch(page: Page, problems: list[str]) -> None:
    """Console errors and warnings (a CSP refusal is one), script errors and failed requests."""
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type in ("error", "warning")
            and not m.text.startswith("Failed to load resource") else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("pageerror", lambda e: problems.append(f"script: {e}"))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CVFLOW_HOME for the module: the detector's venv (torch) is built once for both backends."""
    return tmp_path_factory.mktemp("annotate-demo-home")


@pytest.fixture
def demo(hub: LiveHub) -> Iterator[dict[str, str]]:
    """The demo loaded as `serve --demo` loads it; its owner ``demo`` (who may sign in and
    publish) and an annotator ``annie``; their tokens."""
    owner = hub.create_user("demo", scopes="read publish annotate")
    lines = list(load_demo(hub.context))
    assert f"demo: {PROJECT} has 40 images (40 added)" in lines, lines
    annie = hub.create_user("annie", scopes="read annotate")
    r = hub.client(owner).put(f"/api/v1/projects/{PROJECT}/members/annie", json={"role": "annotator"})
    assert r.status_code == 204, r.text
    yield {"owner": owner, "annie": annie}


@pytest.mark.timeout(1200)
def test_the_demo_project_annotated_in_a_browser_publishes_exactly_what_was_done(
        hub: LiveHub, demo: dict[str, str], home: Path, chromium: Any, screenshots: Path, tmp_path: Path) -> None:
    annie = hub.client(demo["annie"])
    worker = run_script(cli_env(home, hub.url, demo["annie"]), "annotate", "suggest", PROJECT, "--json", timeout=900)
    assert worker.returncode == 0, worker.stderr
    summary = json.loads(worker.stdout)
    assert (summary["items"], summary["failed"], summary["models"]) == (
        40, 0, ["demo/digits-detector@1.0.0:detect"]), summary
    listed = annie.get(ITEMS, params={"per_page": 100}).json()["items"]
    assert all(i["suggestion_version"] == "1.0.0" for i in listed)
    assert sum(len(i["suggestions"]) for i in listed) >= 40  # the model finds about half the digits

    problems: list[str] = []
    expected: dict[str, list[dict[str, Any]]] = {}
    tally = Tally()
    actions: list[str] = []
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch(page, problems)
    try:
        sign_in(page, f"{hub.url}/login?next=/projects/{PROJECT}/annotate", "annie")
        page.wait_for_url(f"**/projects/{PROJECT}/annotate")
        expect(page.locator("#progress")).to_have_text("0 done of 40")
        for n, plan in enumerate(PLAN, start=1):
            page.wait_for_selector("#annotate[data-item-id]")
            # Not wait_for_function: its polling evaluates a string, which the page's CSP refuses.
            expect(page.locator("#annotate-image")).to_have_js_property("complete", True)
            item_id = page.locator("#annotate").get_attribute("data-item-id")
            # The suggestions as the API documents them, read before acting.
            doc = annie.get(f"{ITEMS}/{item_id}").json()
            assert doc["lease"]["user"] == "annie" and doc["status"] == "todo", doc
            expect(page.locator("#item-info")).to_contain_text(doc["file_name"])
            item = Item(page, doc)
            item.shown()
            act(item, plan)
            expected[doc["file_name"]] = item.labels
            tally.count(item.labels, item.suggestions)
            actions += item.done
            page.keyboard.press("Enter")
            expect(page.locator("#progress")).to_have_text(f"{n} done of 40")
            expect(page.locator("#save-status")).to_contain_text(f"Saved {doc['file_name']}.")
            # The status says "Saved" before the next item comes: wait for that item.
            expect(page.locator("#annotate")).not_to_have_attribute("data-item-id", str(item_id))
        page.screenshot(path=str(screenshots / "annotate-demo.png"), full_page=True)
    except BaseException:
        page.screenshot(path=str(screenshots / "annotate-demo-failure.png"), full_page=True)
        raise
    finally:
        context.close()
    # Every kind of action happened: keyboard accepts, a class fixed by key, a rejection, the mouse.
    assert {"Shift+A", "A", "number key", "X", "mouse"} <= set(actions), actions
    assert len(expected) == 10

    # What the hub saved is what the page showed.
    saved = {i["file_name"]: i for i in annie.get(ITEMS, params={"status": "done", "per_page": 100}).json()["items"]}
    assert set(saved) == set(expected)
    for name, labels in expected.items():
        assert [(lb["class"], lb["from"]) for lb in saved[name]["labels"]] == [(lb["class"], lb["from"]) for lb in labels]
        assert all(same_box(a["bbox"], b["bbox"]) for a, b in zip(saved[name]["labels"], labels, strict=True)), name
    stats = annie.get(f"/api/v1/projects/{PROJECT}").json()["stats"]["per_model_version"]
    assert [(s["model_version"], s["items"], s["accepted"], s["edited"], s["rejected"], s["added"]) for s in stats] == [
        ("1.0.0", 10, tally.accepted, tally.edited, tally.rejected, tally.added)]
    assert tally.accepted and tally.edited and tally.rejected and tally.added, tally

    # The owner publishes a snapshot from the project page.
    owner_context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = owner_context.new_page()
    watch(page, problems)
    try:
        sign_in(page, f"{hub.url}/login?next=/projects/{PROJECT}", "demo")
        page.wait_for_url(f"**/projects/{PROJECT}")
        page.locator("#publish-snapshot").click()
        page.wait_for_url(f"**/projects/{PROJECT}?snapshot=1.0.0*")
        expect(page.get_by_role("status").first).to_have_text("Snapshot 1.0.0 published.")
        expect(page.locator("#project-progress")).to_have_text("10 done of 40")
    except BaseException:
        page.screenshot(path=str(screenshots / "annotate-demo-failure.png"), full_page=True)
        raise
    finally:
        owner_context.close()
    assert problems == []

    # The dataset version's files: the 10 images (the items' blobs) and their COCO labels.
    owner = hub.client(demo["owner"], follow_redirects=True)
    version = owner.get("/api/v1/packages/demo/digits-shifted-data/versions/1.0.0")
    assert version.status_code == 200, version.text
    files = {f["path"]: f["sha256"] for f in version.json()["files"]}
    assert {p: d for p, d in files.items() if p.startswith("images/")} == {
        f"images/train/{name}": saved[name]["sha256"] for name in expected}
    coco_file = owner.get("/api/v1/packages/demo/digits-shifted-data/versions/1.0.0/files/annotations/train.json")
    assert coco_file.status_code == 200, coco_file.text
    path = tmp_path / "train.json"
    path.write_bytes(coco_file.content)
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
    images = coco.loadImgs(coco.getImgIds())
    assert sorted(im["file_name"] for im in images) == sorted(expected)
    assert len(coco.getAnnIds()) == sum(map(len, expected.values()))
    for image in images:
        assert (image["width"], image["height"]) == (96, 96)
        got = [(coco.cats[a["category_id"]]["name"], a["bbox"]) for a in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))]
        wanted = [(label["class"], label["bbox"]) for label in expected[image["file_name"]]]
        assert len(got) == len(wanted), (image["file_name"], got, wanted)
        for name, box in wanted:
            match = next((g for g in got if g[0] == name and same_box(g[1], box)), None)
            assert match is not None, (image["file_name"], name, box, got)
            got.remove(match)

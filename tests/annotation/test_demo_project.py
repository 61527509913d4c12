"""`cvflow-hub serve --demo`'s loader: the demo annotation project demo/digits-shifted, on both backends.

It publishes the example packages, then creates the public project with the 40 demo images of
examples/digits-detector as items, and a second run changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hub.demo import EXAMPLES, FINETUNE_EVERY, PROJECT, PROJECT_IMAGES, WORKER_HINT, load_demo
from tests.helpers import LiveHub

IMAGES = EXAMPLES / PROJECT_IMAGES
TRUTH = json.loads((IMAGES.parent / "truth.json").read_text())


def items(hub: LiveHub) -> list[dict[str, Any]]:
    anonymous = hub.client()
    r = anonymous.get(f"/api/v1/projects/{PROJECT}/items", params={"per_page": 100})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == len(r.json()["items"])
    return r.json()["items"]  # type: ignore[no-any-return]


def test_the_demo_loader_creates_the_public_project_with_its_images_once(hub: LiveHub) -> None:
    lines = list(load_demo(hub.context))
    assert "demo: published demo/digits-detector@1.0.0" in lines
    assert lines[-2:] == [f"demo: created the annotation project {PROJECT}", f"demo: {PROJECT} has 40 images (40 added)"]

    anonymous = hub.client()  # public: a visitor sees it without a token
    project = anonymous.get(f"/api/v1/projects/{PROJECT}")
    assert project.status_code == 200, project.text
    doc = project.json()
    assert (doc["task"], doc["classes"], doc["private"], doc["queue_order"], doc["dataset_package"]) == (
        "detection", [str(d) for d in range(10)], False, "uncertainty", "demo/digits-shifted-data")
    assert doc["suggest"] == {"package": "demo/digits-detector", "range": "*", "solver": "detect"}
    assert doc["counts"] == {"todo": 40, "done": 0, "approved": 0, "total": 40}
    assert doc["role"] is None
    assert PROJECT in [p["full_name"] for p in anonymous.get("/api/v1/projects").json()["projects"]]

    listed = items(hub)
    files = sorted(IMAGES.glob("*.png"))
    assert [i["file_name"] for i in listed] == [f.name for f in files] == [im["file_name"] for im in TRUTH["images"]]
    assert all((i["width"], i["height"], i["status"], i["split"]) == (96, 96, "todo", "train") for i in listed)
    assert [i["sha256"] for i in listed] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    image = anonymous.get(listed[7]["image"])
    assert image.status_code == 200 and image.content == files[7].read_bytes()
    events = anonymous.get(f"/api/v1/projects/{PROJECT}/items/{listed[0]['id']}/history").json()["events"]
    assert [(e["action"], e["user"]) for e in events] == [("add", "demo")]

    # A second start (serve --demo again) keeps everything as it is.
    again = list(load_demo(hub.context))
    assert "demo: demo/digits-detector@1.0.0 already published" in again
    assert again[-1] == f"demo: {PROJECT} has 40 images (0 added)"
    assert not any("created the annotation project" in line for line in again)
    assert items(hub) == listed


def test_the_worker_hint_names_the_project_and_a_token_that_may_annotate() -> None:
    hint = WORKER_HINT.format(project=PROJECT, url="http://127.0.0.1:8000", hub="cvflow-hub --data-dir /srv/hub",
                              every=FINETUNE_EVERY)
    assert "CVFLOW_HUB=http://127.0.0.1:8000" in hint
    assert "$(cvflow-hub --data-dir /srv/hub token create --user demo --scope read --scope annotate)" in hint
    assert f"cvflow annotate suggest {PROJECT}\n" in hint
    assert hint.endswith(" cvflow worker --train") and f"every {FINETUNE_EVERY} accepted items" in hint
    assert "token create --user demo --scope read --scope annotate --scope publish)" in hint

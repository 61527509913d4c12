"""The whole loop, on both backends: annotate through the API -> the hub snapshots the accepted labels
and queues a training job -> ``cvflow worker --train`` fine-tunes digits-lenet in its real venv and
publishes the next version with its lineage -> the hub promotes it -> ``cvflow annotate suggest``
suggests the unsaved items again with it -> the share of suggestions an annotator accepts rises.

The items are shifted digits (thin, tilted, off-centre pen strokes: examples/digits-lenet's
``shifted``) from the digits the base model never saw. The simulated annotator accepts the best
suggestion when it is the truth and fixes it otherwise, so the hub counts each save as accepted
or edited. The first 50 saves trigger the fine-tune ("every 50 accepted items"); the acceptance
of the base (those 50) is compared with the fine-tune's (the remaining 40).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cvflow.api import HubClient
from cvflow.datasets import Dataset, Item, write_package
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.helpers import LiveHub
from tests.training.conftest import shared_home

LENET = Path(__file__).resolve().parents[2] / "examples" / "digits-lenet"
EVERY, TOTAL = 50, 90


def _shifted(count: int) -> list[tuple[bytes, int]]:
    sys.path.insert(0, str(LENET))
    try:
        from digits_lenet.shifted import digit_split, png, shifted
    finally:
        sys.path.remove(str(LENET))
    images, labels = digit_split()["test"]
    return [(png(image), label) for image, label in shifted(images, labels, seed=11, count=count)]


def _dataset(folder: Path, name: str) -> tuple[Path, dict[str, str]]:
    """A dataset package of TOTAL shifted digits (all in train), and each file's true digit."""
    src = folder / "src"
    src.mkdir(parents=True)
    items, truth = [], {}
    for i, (data, label) in enumerate(_shifted(TOTAL)):
        path = src / f"d{i:03d}.png"
        path.write_bytes(data)
        items.append(Item(path.name, path, 32, 32, label=label))
        truth[path.name] = str(label)
    ds = Dataset(task="classification", classes=[str(d) for d in range(10)], splits={"train": items})
    write_package(ds, folder / "pkg", name=name, version="1.0.0", license="CC0-1.0")
    return folder / "pkg", truth


def _base(folder: Path, name: str) -> Path:
    """examples/digits-lenet, renamed into the test user's namespace (fine-tunes go to its next versions)."""
    pkg = folder / "lenet"
    shutil.copytree(LENET, pkg, ignore=shutil.ignore_patterns("__pycache__", "eval", "*.pyc"))
    manifest = pkg / "cvflow.toml"
    manifest.write_text(manifest.read_text().replace('name = "demo/digits-lenet"', f'name = "{name}"', 1))
    return pkg


def _annotate(client: HubClient, project: str, truth: dict[str, str], count: int) -> None:
    """Save the next ``count`` unsaved items as the truth says: the best suggestion kept when right."""
    todo = client.project_items(project, status="todo", per_page=100)["items"][:count]
    assert len(todo) == count
    for item in todo:
        suggestions = item["suggestions"] or []
        assert suggestions, item  # every item was suggested before it is annotated
        label = {"class": truth[item["file_name"]], "from": 0}
        r = client.request("PUT", f"/api/v1/projects/{project}/items/{item['id']}/labels",
                           json={"revision": item["revision"], "labels": [label], "duration_ms": 1000})
        assert r.status_code == 200 and r.json()["status"] == "done", r.text


def _wait_for_job(client: HubClient, project: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = client.training(project)["jobs"]
        if jobs:
            return jobs[0]  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError("no training job was queued after the accepted items")


def test_annotate_snapshot_finetune_promote_resuggest_and_acceptance_rises(
        hub: LiveHub, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    token = hub.create_user("looper", scopes="read publish annotate")
    env = cli_env(shared_home(tmp_path_factory), hub.url, token)
    base, data = "looper/digits-lenet", "looper/shifted-digits"
    project = "looper/digits"
    for folder in (_base(tmp_path, base), _dataset(tmp_path / "data", data)[0]):
        result = run_cli(env, "publish", str(folder))
        assert result.exit_code == 0, result.output + result.stderr
    truth = _dataset(tmp_path / "again", data)[1]

    with HubClient(hub.url, token) as client:
        client.create_project("looper", "digits", task="classification", classes=[str(d) for d in range(10)],
                              suggest={"package": base, "range": "*", "solver": "classify"})
        assert client.add_items_from_dataset(project, data, "1.0.0")["added"] == TOTAL
        client.update_training(project, every=EVERY)

        result = run_cli(env, "annotate", "suggest", project, "--json")
        assert result.exit_code == 0, result.output + result.stderr
        _annotate(client, project, truth, EVERY)

        job = _wait_for_job(client, project)  # the 50th accepted item queued it, after a snapshot
        assert (job["reason"], job["base"], job["target"]) == ("auto", f"{base}@1.0.0", base), job
        snapshot = job["dataset"]
        assert snapshot == f"{project}-data@1.0.0", job  # the project's dataset package, first version

        result = run_cli(env, "worker", "--train", "--once", "--work-dir", str(tmp_path / "work"))
        assert result.exit_code == 0, result.output + result.stderr
        done = client.training_job(job["id"])
        assert done["state"] == "done" and done["result_version"] == "1.1.0", done
        assert done["promoted"] is True and done["result_metric"] > done["base_metric"], done
        assert len(done["history"]) >= 1 and done["has_preview"] is True

        lineage = client.version(base, "1.1.0")["manifest"]["lineage"]
        assert (lineage["base"], lineage["dataset"], lineage["trainer"]) == (f"{base}@1.0.0", snapshot, "finetune")
        assert lineage["metrics"]["accuracy"] == done["result_metric"]
        assert client.project(project)["suggest"]["range"] == "=1.1.0"

        result = run_cli(env, "annotate", "suggest", project, "--json")  # the unsaved items, again
        assert result.exit_code == 0, result.output + result.stderr
        todo = client.project_items(project, status="todo", per_page=100)["items"]
        assert len(todo) == TOTAL - EVERY and {i["suggestion_version"] for i in todo} == {"1.1.0"}
        _annotate(client, project, truth, TOTAL - EVERY)

        stats = {s["model_version"]: s for s in client.project(project)["stats"]["per_model_version"]}
        before, after = stats["1.0.0"], stats["1.1.0"]
        rate = {v: s["accepted"] / (s["accepted"] + s["edited"]) for v, s in (("1.0.0", before), ("1.1.0", after))}
        print(f"accepted unchanged: base {rate['1.0.0']:.2f} ({before['accepted']}/{EVERY}), "
              f"fine-tune {rate['1.1.0']:.2f} ({after['accepted']}/{TOTAL - EVERY})")
        assert before["accepted"] + before["edited"] == EVERY and after["accepted"] + after["edited"] == TOTAL - EVERY
        assert rate["1.1.0"] >= rate["1.0.0"] + 0.1, rate

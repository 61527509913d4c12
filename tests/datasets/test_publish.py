"""A dataset package publishes and pulls like any package, and the hub refuses an inconsistent one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from cvflow.datasets import Dataset, read_package
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.datasets.synth import assert_boxes_close, boxes_of
from tests.helpers import error_code, publish


def test_publish_and_pull_a_dataset_unchanged(hub, detection: tuple[Dataset, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ds, package = detection
    env = cli_env(tmp_path / "home", hub.url, hub.create_user("alice"))
    result = run_cli(env, "publish", str(package), "--json")
    assert result.exit_code == 0, result.output
    meta = httpx.get(f"{hub.url}/api/v1/packages/alice/digits/versions/1.0.0").json()
    assert meta["manifest"]["kind"] == "dataset"
    assert meta["manifest"]["dataset"]["splits"] == {"train": 6, "val": 3}
    page = httpx.get(f"{hub.url}/alice/digits")  # the package page shows a dataset as it is, README included
    assert page.status_code == 200 and "two digit" in page.text
    result = run_cli(env, "pull", "alice/digits@1.0.0")
    assert result.exit_code == 0, result.output
    pulled = Path(result.stdout.strip().splitlines()[-1])
    _, back = read_package(pulled)
    assert_boxes_close(boxes_of(back), boxes_of(ds), tol=0)


def test_the_hub_refuses_a_dataset_whose_files_disagree_with_its_manifest(hub) -> None:  # type: ignore[no-untyped-def]
    client = hub.client(hub.create_user("alice"))
    text = ('[package]\nname = "alice/d"\nversion = "1.0.0"\ndescription = "d"\nkind = "dataset"\n'
            '[dataset]\ntask = "classification"\nclasses = ["cat"]\nsplits = { train = 2 }\n')
    doc = json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}).encode()
    r = publish(client, "alice/d", manifest_text=text,
                files={"annotations/train.json": doc, "images/train/a.png": b"\x89PNG"})
    assert r.status_code == 422, r.text
    assert error_code(r) == "invalid_files"
    assert "count_mismatch" in r.text
    bad = text.replace('["cat"]', '["<script>"]')
    r = publish(client, "alice/d", manifest_text=bad, files={})
    assert r.status_code == 422 and error_code(r) == "invalid_manifest" and "invalid_class_name" in r.text

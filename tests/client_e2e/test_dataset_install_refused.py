"""`cvflow install` and `cvflow run` refuse a dataset package (kind = "dataset"): a clear error with a
hint (`cvflow pull`, `cvflow dataset export`), exit 1, and nothing installed, locked or started.

A live hub on both backends, the real CLI, a real cache under a fresh CVFLOW_HOME."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from PIL import Image

from cvflow.config import Config
from cvflow.install import DatasetNotInstallableError, install
from tests.client_e2e._install_helpers import fails, publish_ok
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.helpers import LiveHub, publish


def png() -> bytes:
    out = BytesIO()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


IMAGE = png()
DATASET = """[package]
name = "alice/pets"
version = "1.0.0"
description = "one pet"
kind = "dataset"

[dataset]
task = "classification"
classes = ["cat"]
splits = { train = 1 }
"""
COCO = json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6}],
                   "annotations": [{"id": 1, "image_id": 1, "category_id": 1}],
                   "categories": [{"id": 1, "name": "cat"}]}).encode()


@pytest.fixture
def pets(alice: httpx.Client) -> None:
    r = publish(alice, "alice/pets", manifest_text=DATASET,
                files={"annotations/train.json": COCO, "images/train/a.png": IMAGE})
    assert r.status_code == 201, r.text


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def nothing_installed(home: Path, workdir: Path) -> None:
    assert not (home / "venvs").exists() or not any((home / "venvs").iterdir())
    assert not (workdir / "cvflow.lock").exists()
    listed = run_cli(cli_env(home, None), "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def cached_image(home: Path) -> bool:
    return any(p.is_file() and p.read_bytes() == IMAGE for p in home.rglob("*"))


def test_install_refuses_a_dataset_before_downloading_it(hub: LiveHub, pets: None, home: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = cli_env(home, hub.url)
    for spec in ("alice/pets", "alice/pets@1.0.0", "alice/pets@^1"):
        message = fails(env, "install", spec)
        assert message.startswith(f"{spec} is a dataset, not a model: nothing in it is installed or run"), message
        assert f"cvflow pull {spec}" in message and "cvflow dataset export" in message
    nothing_installed(home, tmp_path)
    assert not cached_image(home)  # refused on the package document: the dataset was not downloaded


def test_run_refuses_a_dataset(hub: LiveHub, pets: None, home: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = cli_env(home, hub.url)
    result = run_cli(env, "run", "alice/pets")
    assert result.exit_code == 1
    assert "is a dataset, not a model" in result.stderr and "cvflow pull alice/pets" in result.stderr
    assert "installing it first" not in result.stderr
    assert json.loads(run_cli(env, "ps", "--json").stdout) == []
    nothing_installed(home, tmp_path)


def test_a_pulled_dataset_is_refused_offline_and_as_a_dependency(hub: LiveHub, alice: httpx.Client, pets: None,
                                                                 home: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = cli_env(home, hub.url)
    pulled = run_cli(env, "pull", "-q", "alice/pets")
    assert pulled.exit_code == 0, pulled.output
    assert cached_image(home)
    # offline, from the cache: the install's own check, on the version it would install
    message = fails(env, "install", "--offline", "alice/pets")
    assert message.startswith("alice/pets@1.0.0 is a dataset"), message
    # a model that depends on a dataset: the dependency would be installed as code; refused
    publish_ok(alice, "alice/trainer", "1.0.0", deps={"alice/pets": "^1"})
    message = fails(env, "install", "alice/trainer")
    assert message.startswith("alice/pets@1.0.0 is a dataset"), message
    nothing_installed(home, tmp_path)
    # the library raises the typed error with its stable code
    config = Config(home=home, hub=hub.url, token=None)
    with pytest.raises(DatasetNotInstallableError) as caught:
        install(None, config.cache(), config, "alice/pets", offline=True, lock_path=tmp_path / "cvflow.lock")
    assert caught.value.code == "dataset_not_installable"
    nothing_installed(home, tmp_path)

"""``cvflow finetune`` end to end: a real hub with the example packages and qa/tiny-trainer, dataset
packages published through ``cvflow publish``, the base's venv with torch built for real (once a
session: the CVFLOW_HOME is shared with tests/training/test_worker.py), the trainer run in it.

What a fine-tune must publish: the base's files with the new weights, the target renamed, the
next version (1.0.0, then 1.1.0, a yanked version counted), ``[metrics]`` the validation metrics
and ``[lineage]`` naming base, dataset, trainer, hyperparameters and both metrics. What it must
refuse, with one line and the code, before anything is published: a base without a trainer, a
dataset as the base, a model as the data, a dataset with a class the model lacks, one too small
to split, hyperparameters out of bounds, a trainer that crashes.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvflow.api import HubClient
from cvflow.config import Config
from cvflow.manifest import Lineage
from cvflow.training.finetune import FinetuneResult, _publish, new_manifest_text, next_version
from cvflow.versions import Version
from hub.demo import load_examples
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.conftest import start_hub
from tests.helpers import LiveHub
from tests.training.colors import colors_package
from tests.training.conftest import PACKAGES, shared_home

BASE = "qa/tiny-trainer@1.0.0"


@pytest.fixture(scope="module")
def train_hub(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    hub, server = start_hub(make_settings("sqlite-file"))
    lines = [*load_examples(hub.context), *load_examples(hub.context, PACKAGES)]
    assert all("published" in line for line in lines), lines
    yield hub
    server.__exit__()
    hub.context.engine.dispose()


@pytest.fixture(scope="module")
def env(train_hub: LiveHub, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    token = train_hub.create_user("ftalice", scopes="read publish")
    return cli_env(shared_home(tmp_path_factory), train_hub.url, token)


@pytest.fixture(scope="module")
def datasets(env: dict[str, str | None], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Dataset versions published by ftalice: colours to learn, and three that must be refused."""
    root = tmp_path_factory.mktemp("ft-datasets")
    made = {
        "colors": colors_package(root / "colors", {"train": 24, "val": 6}, name="ftalice/colors", seed=1),
        "foreign": colors_package(root / "foreign", {"train": 6, "val": 3}, name="ftalice/foreign",
                                  classes=["red", "green", "purple", "teal"]),
        "tiny": colors_package(root / "tiny", {"train": 2}, name="ftalice/tiny"),
    }
    for folder in made.values():
        result = run_cli(env, "publish", str(folder))
        assert result.exit_code == 0, result.output + result.stderr
    return {key: f"ftalice/{key}@1.0.0" for key in made}


def version_doc(hub: LiveHub, name: str, version: str) -> dict[str, Any]:
    response = hub.client().get(f"/api/v1/packages/{name}/versions/{version}")
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def sha_of(doc: dict[str, Any], path: str) -> str:
    return next(str(f["sha256"]) for f in doc["files"] if f["path"] == path)


def test_help_teaches_with_an_example(env: dict[str, str | None]) -> None:
    result = run_cli(env, "finetune", "--help")
    assert result.exit_code == 0
    assert "cvflow finetune demo/digits-detector@1.0.0 --data" in result.output
    assert "--no-publish" in result.output and "--nproc-per-node" in result.output


def test_finetune_publishes_the_next_version_with_its_lineage(
        train_hub: LiveHub, env: dict[str, str | None], datasets: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = run_cli(env, "finetune", BASE, "--data", datasets["colors"], "--to", "ftalice/tiny-colors",
                    "--epochs", "2", "--set", "lr=0.4")
    assert first.exit_code == 0, first.output + first.stderr
    assert "published ftalice/tiny-colors@1.0.0" in first.output
    assert f"{train_hub.url}/ftalice/tiny-colors/v/1.0.0" in first.output
    assert "accuracy: base" in first.output
    assert "epoch 2/2" in first.stderr  # a line per epoch, with its metrics
    assert not (tmp_path / "cvflow.lock").exists()  # the install's lock stays in the run's folder

    doc = version_doc(train_hub, "ftalice/tiny-colors", "1.0.0")
    base = version_doc(train_hub, "qa/tiny-trainer", "1.0.0")
    lineage = doc["manifest"]["lineage"]
    assert lineage["base"] == BASE and lineage["dataset"] == datasets["colors"]
    assert lineage["trainer"] == "finetune"
    assert lineage["hyperparameters"] == {"epochs": 2, "lr": 0.4, "batch_size": 4, "stop_after_epoch": 0,
                                          "sleep": 0.0, "crash": ""}
    assert doc["manifest"]["metrics"] == lineage["metrics"]
    assert set(lineage["metrics"]) >= {"accuracy"} and set(lineage["base_metrics"]) >= {"accuracy"}
    assert lineage["metrics"]["accuracy"] > lineage["base_metrics"]["accuracy"]  # red, green, blue are learnable
    assert lineage["device"] == "cpu" and lineage["seconds"] > 0
    # The base's files, the new weights: code shared byte for byte, the weights trained anew.
    assert sha_of(doc, "tiny_trainer/trainer.py") == sha_of(base, "tiny_trainer/trainer.py")
    assert sha_of(doc, "weights/model.safetensors") != sha_of(base, "weights/model.safetensors")
    assert doc["manifest"]["name"] == "ftalice/tiny-colors" and doc["manifest"]["trainers"]
    assert train_hub.client().get("/api/v1/packages/ftalice/tiny-colors").json()["private"] is False

    second = run_cli(env, "finetune", BASE, "--data", datasets["colors"], "--to", "ftalice/tiny-colors",
                     "--epochs", "1", "--json", "--private")
    assert second.exit_code == 0, second.output + second.stderr
    result = json.loads(second.output)
    assert (result["version"], result["published"]) == ("1.1.0", True)
    assert result["lineage"]["hyperparameters"]["epochs"] == 1
    with HubClient(train_hub.url, env["CVFLOW_TOKEN"]) as owner:
        assert owner.version("ftalice/tiny-colors", "1.1.0")["manifest"]["lineage"] == result["lineage"]
        assert owner.package("ftalice/tiny-colors")["private"] is True  # as `cvflow publish --private`


def test_next_version_counts_yanked_and_prereleases(train_hub: LiveHub, env: dict[str, str | None],
                                                    tmp_path: Path) -> None:
    with HubClient(train_hub.url, env["CVFLOW_TOKEN"]) as client:
        assert next_version(client, "ftalice/never-published") == Version(1, 0, 0)
        assert next_version(client, "qa/tiny-trainer") == Version(1, 1, 0)
        # The base's own package: never below the base, even where the hub lists less.
        assert next_version(client, "qa/tiny-trainer", base_name="qa/tiny-trainer",
                            base_version="3.4.1") == Version(3, 5, 0)
        assert next_version(client, "qa/tiny-trainer", after=Version(1, 1, 0)) == Version(1, 2, 0)
        for version, extra in (("2.0.0-rc.1", ""), ("1.4.0", "")):
            folder = tmp_path / version
            folder.mkdir()
            (folder / "cvflow.toml").write_text(
                f'[package]\nname = "ftalice/versions"\nversion = "{version}"\ndescription = "x"\n'
                f'task = "classification"\n{extra}\n[[solvers]]\nname = "s"\nclass = "m:C"\n')
            (folder / "m.py").write_text("class C: ...\n")
            assert run_cli(env, "publish", str(folder)).exit_code == 0
        assert next_version(client, "ftalice/versions") == Version(2, 1, 0)  # the pre-release counts
        client.yank("ftalice/versions", "2.0.0-rc.1", "test")
        assert next_version(client, "ftalice/versions") == Version(2, 1, 0)  # and so does a yanked one


def test_no_publish_leaves_a_valid_package_folder(train_hub: LiveHub, env: dict[str, str | None],
                                                  datasets: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(env, "finetune", BASE, "--data", datasets["colors"], "--to", "ftalice/kept-here",
                     "--epochs", "1", "--no-publish", "--out", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    assert f"built ftalice/kept-here@1.0.0 in {out}" in result.output
    assert train_hub.client().get("/api/v1/packages/ftalice/kept-here").status_code == 404
    text = (out / "cvflow.toml").read_text()
    assert 'name = "ftalice/kept-here"' in text and "[lineage]" in text
    valid = run_cli(env, "validate", str(out))
    assert valid.exit_code == 0, valid.output + valid.stderr
    weights = out / "weights" / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() != sha_of(
        version_doc(train_hub, "qa/tiny-trainer", "1.0.0"), "weights/model.safetensors")
    again = run_cli(env, "finetune", BASE, "--data", datasets["colors"], "--to", "ftalice/kept-here",
                    "--no-publish", "--out", str(out))
    assert again.exit_code == 1 and "give --out a new folder" in again.stderr


@pytest.mark.parametrize(("base", "data", "extra", "code", "words"), [
    ("demo/edge-sobel", "colors", (), "no_trainer", "declares no trainer"),
    ("ftalice/colors@1.0.0", "colors", (), "no_trainer", "is a dataset, not a model"),
    (BASE, "qa/tiny-trainer@1.0.0", (), "invalid_dataset", "is a model, not a dataset"),
    (BASE, "colors", ("--trainer", "nope"), "no_trainer", "has no trainer 'nope'"),
    (BASE, "foreign", (), "class_mismatch", "purple"),
    (BASE, "tiny", (), "dataset_too_small", ""),
    (BASE, "colors", ("--set", "lr=100"), "invalid_hyperparameters", "lr must be at most 10"),
    (BASE, "colors", ("--set", "crash=fit", "--epochs", "1"), "trainer_failed", "asked to crash in fit"),
], ids=["no-trainer", "dataset-as-base", "model-as-data", "unknown-trainer", "foreign-classes", "too-small",
        "hyperparameter-bounds", "trainer-crash"])
def test_refusals_say_why_with_their_code_and_publish_nothing(
        train_hub: LiveHub, env: dict[str, str | None], datasets: dict[str, str], base: str, data: str,
        extra: tuple[str, ...], code: str, words: str) -> None:
    result = run_cli(env, "finetune", base, "--data", datasets.get(data, data), "--to", "ftalice/refused", *extra)
    assert result.exit_code == 1, result.output + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"[{code}]" in errors[0], result.stderr
    assert words in result.stderr
    assert "cvflow/commands" not in result.stderr  # the trainer's own traceback may be in its log's tail
    assert train_hub.client().get("/api/v1/packages/ftalice/refused").status_code == 404


def test_a_publish_that_loses_the_race_for_its_version_takes_the_next(
        train_hub: LiveHub, env: dict[str, str | None], tmp_path: Path) -> None:
    """Two workers fine-tuning into one package both count 1.1.0 as next: the second publish is
    answered version_exists, and takes the next version again (here 1.0.0 is taken already)."""
    manifest = ('[package]\nname = "ftalice/race"\nversion = "1.0.0"\ndescription = "x"\ntask = "classification"\n'
                '\n[[solvers]]\nname = "s"\nclass = "m:C"\n')
    first = tmp_path / "first"
    first.mkdir()
    (first / "cvflow.toml").write_text(manifest)
    (first / "m.py").write_text("class C: ...\n")
    assert run_cli(env, "publish", str(first)).exit_code == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "cvflow.toml").write_text(manifest)
    (mine / "m.py").write_text("class C: 'fine-tuned'\n")
    config = Config(home=Path(str(env["CVFLOW_HOME"])), hub=train_hub.url, token=env["CVFLOW_TOKEN"])
    lineage = Lineage(base=BASE, dataset="ftalice/colors@1.0.0", trainer="finetune")
    result = FinetuneResult(name="ftalice/race", version="1.0.0", lineage=lineage, metric="accuracy", folder=mine)
    with HubClient(train_hub.url, env["CVFLOW_TOKEN"]) as client:
        _publish(client, config, mine, result, Version(1, 0, 0), private=None, progress=None, emit=lambda e: None)
        assert (result.version, result.published) == ("1.1.0", True)
        assert client.version("ftalice/race", "1.1.0")["manifest"]["version"] == "1.1.0"


def test_the_new_manifest_keeps_the_base_and_makes_rewritten_url_weights_files() -> None:
    base = """[package]
name = "qa/base"
version = "2.3.0"
description = "a base"
task = "classification"

[[weights]]
path = "weights/model.safetensors"
url = "https://example.org/model.safetensors"
sha256 = "{a}"
size = 10

[[weights]]
path = "weights/other.safetensors"
url = "https://example.org/other.safetensors"
sha256 = "{b}"
size = 20

[metrics]
accuracy = 0.5
latency_ms = 3.0

[tool.somebody]
keep = true
""".replace("{a}", "a" * 64).replace("{b}", "b" * 64)
    lineage = Lineage(base="qa/base@2.3.0", dataset="qa/data@1.0.0", trainer="finetune",
                      metrics={"accuracy": 0.9}, base_metrics={"accuracy": 0.5})
    text = new_manifest_text(base, "ftalice/new", Version(1, 0, 0), lineage, {"weights/model.safetensors"})
    data = tomllib.loads(text)
    assert (data["package"]["name"], data["package"]["version"]) == ("ftalice/new", "1.0.0")
    assert data["weights"][0] == {"path": "weights/model.safetensors"}  # now a file of the package
    assert data["weights"][1]["url"] == "https://example.org/other.safetensors"  # not rewritten: still fetched
    assert data["metrics"] == {"accuracy": 0.9}  # the validation metrics, not the base's table
    assert data["tool"] == {"somebody": {"keep": True}}
    assert data["lineage"]["base"] == "qa/base@2.3.0" and list(data)[-1] == "lineage"

"""``cvflow worker --train`` end to end: a real hub, a project whose labels are a dataset version,
a job queued through the API, the worker as the installed command (in-process, and as a child
process that is killed mid-run), qa/tiny-trainer trained for real in its venv.

A worker claims the job, trains, publishes the next version of the target with its lineage and
finishes; the hub promotes it. A worker killed after its first checkpoint reached the hub leaves
the job to its lease; the next worker downloads that checkpoint and goes on from the epoch after
it. The CVFLOW_HOME is the one tests/client_e2e/test_finetune_cli.py uses, so the session builds
the torch venv once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cvflow.api import HubClient
from cvflow.errors import HubNotFoundError
from hub.db import session_scope
from hub.demo import load_examples
from hub.models import TrainingJob, utcnow
from tests.client_e2e._publish_helpers import CVFLOW, cli_env, run_cli
from tests.conftest import start_hub
from tests.helpers import LiveHub
from tests.training.colors import colors_package
from tests.training.conftest import PACKAGES, shared_home

USER = "wkalice"
CLASSES = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def worker_hub(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    hub, server = start_hub(make_settings("sqlite-file"))
    lines = list(load_examples(hub.context, PACKAGES))
    assert all("published" in line for line in lines), lines
    yield hub
    server.__exit__()
    hub.context.engine.dispose()


@pytest.fixture(scope="module")
def env(worker_hub: LiveHub, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    token = worker_hub.create_user(USER, scopes="read publish annotate")
    return cli_env(shared_home(tmp_path_factory), worker_hub.url, token)


@pytest.fixture(scope="module")
def client(worker_hub: LiveHub, env: dict[str, str | None]) -> Iterator[HubClient]:
    with HubClient(worker_hub.url, env["CVFLOW_TOKEN"]) as hub_client:
        yield hub_client


@pytest.fixture(scope="module")
def dataset(env: dict[str, str | None], tmp_path_factory: pytest.TempPathFactory) -> str:
    """wkalice/colors@1.0.0: labelled colours, which the projects take as their items."""
    folder = colors_package(tmp_path_factory.mktemp("wk-colors") / "pkg", {"train": 24, "val": 6},
                            name=f"{USER}/colors", seed=2)
    result = run_cli(env, "publish", str(folder))
    assert result.exit_code == 0, result.output + result.stderr
    return f"{USER}/colors"


def queue_job(client: HubClient, dataset: str, project: str, target: str, **hyperparameters: Any) -> dict[str, Any]:
    """A project on qa/tiny-trainer whose items are the dataset's labelled images, and a job queued now."""
    namespace, name = project.split("/")
    client.create_project(namespace, name, task="classification", classes=CLASSES,
                          suggest={"package": "qa/tiny-trainer", "range": "*", "solver": "classify"})
    added = client.add_items_from_dataset(project, dataset, "1.0.0", labels=True)
    assert added["added"] == 30, added
    client.update_training(project, target=target, hyperparameters=hyperparameters)
    job = client.queue_training_job(project)
    assert job["state"] == "queued" and job["base"] == "qa/tiny-trainer@1.0.0", job
    return job


def test_a_worker_claims_trains_publishes_and_finishes(
        worker_hub: LiveHub, env: dict[str, str | None], client: HubClient, dataset: str, tmp_path: Path) -> None:
    job = queue_job(client, dataset, f"{USER}/street", f"{USER}/tiny-street", epochs=2)
    result = run_cli(env, "worker", "--train", "--once", "--work-dir", str(tmp_path / "work"))
    assert result.exit_code == 0, result.output + result.stderr
    out = result.output
    assert f"job {job['id']} ({USER}/street): claimed: qa/tiny-trainer@1.0.0 on {job['dataset']}" in out
    assert "epoch 1/2 loss" in out and "epoch 2/2 loss" in out
    assert f"published {USER}/tiny-street@1.0.0" in out
    assert f"promoted: {USER}/tiny-street==1.0.0" in out

    done = client.training_job(job["id"])
    assert done["state"] == "done" and done["result_version"] == "1.0.0" and done["promoted"] is True
    assert done["result_metric"] > done["base_metric"] and done["device"] == "cpu"
    assert done["has_preview"] is True
    lineage = client.version(f"{USER}/tiny-street", "1.0.0")["manifest"]["lineage"]
    assert (lineage["base"], lineage["dataset"]) == (job["base"], job["dataset"])
    assert lineage["hyperparameters"]["epochs"] == 2
    assert client.project(f"{USER}/street")["suggest"]["package"] == f"{USER}/tiny-street"
    assert client.package(f"{USER}/tiny-street")["private"] is True  # as its (private) project
    assert not (tmp_path / "work" / f"job-{job['id']}").exists()  # a finished job's folder goes

    nothing = run_cli(env, "worker", "--train", "--once")
    assert nothing.exit_code == 0 and "no fine-tune job is queued" in nothing.output


def _wait_for(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_worker_leaves_the_job_to_the_next_one_which_resumes_from_the_checkpoint(
        worker_hub: LiveHub, env: dict[str, str | None], client: HubClient, dataset: str, tmp_path: Path) -> None:
    job = queue_job(client, dataset, f"{USER}/resume", f"{USER}/tiny-resume", epochs=3, sleep=2.0)
    first_dir = tmp_path / "first"
    child_env = {k: v for k, v in os.environ.items() if k not in ("CVFLOW_HOME", "CVFLOW_HUB", "CVFLOW_TOKEN")}
    child_env.update({k: v for k, v in env.items() if v is not None})
    first = subprocess.Popen([str(CVFLOW), "worker", "--train", "--once", "--lease", "30", "--work-dir",
                              str(first_dir)], env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    trainer_pid: int | None = None
    try:
        _wait_for("the first checkpoint on the hub", lambda: client.training_job(job["id"])["has_checkpoint"]
                  or first.poll() is not None)
        assert first.poll() is None, first.stdout.read() if first.stdout else ""
        log = (first_dir / f"job-{job['id']}" / "train.log").read_text()
        trainer_pid = int(re.findall(r"pid (\d+)", log)[-1])
    finally:
        # The machine dies: the worker and the trainer it started (in a session of its own) go at once.
        for group in (first.pid, trainer_pid):
            if group is not None:
                try:
                    os.killpg(group, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        first.wait(10)
        if first.stdout:
            first.stdout.close()
    running = client.training_job(job["id"])
    assert running["state"] == "running" and running["has_checkpoint"] is True
    # The lease (30 s, the hub's shortest) runs out without a heartbeat: moved into the past here
    # rather than waited for. The claim below puts the job back in the queue and takes it.
    with session_scope(worker_hub.context.engine, write=True) as session:
        row = session.get(TrainingJob, job["id"])
        assert row is not None
        row.lease_expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)

    result = run_cli(env, "worker", "--train", "--once", "--work-dir", str(tmp_path / "second"))
    assert result.exit_code == 0, result.output + result.stderr
    out = result.output
    assert "1 lease(s) lost before; resuming from its checkpoint" in out
    epochs = [int(n) for n in re.findall(r": epoch (\d+)/3 loss", out)]
    assert epochs and epochs[0] > 1 and epochs[-1] == 3, out  # it went on after the uploaded checkpoint
    done = client.training_job(job["id"])
    assert done["state"] == "done" and done["attempts"] == 1 and done["result_version"] == "1.0.0"
    assert client.version(f"{USER}/tiny-resume", "1.0.0")["manifest"]["lineage"]["hyperparameters"]["epochs"] == 3


def test_a_trainer_that_fails_ends_the_job_failed_with_the_error_and_the_log(
        env: dict[str, str | None], client: HubClient, dataset: str, tmp_path: Path) -> None:
    job = queue_job(client, dataset, f"{USER}/broken", f"{USER}/tiny-broken", epochs=1, crash="fit")
    result = run_cli(env, "worker", "--train", "--once", "--work-dir", str(tmp_path / "work"))
    assert result.exit_code == 1, result.output + result.stderr  # --once: a failed job is a failed run
    assert f"job {job['id']} ({USER}/broken): failed: " in result.output and "[trainer_failed]" in result.output
    failed = client.training_job(job["id"])
    assert failed["state"] == "failed" and failed["result_version"] is None
    assert "[trainer_failed]" in failed["message"] and "asked to crash in fit" in failed["message"]
    assert "RuntimeError: asked to crash in fit" in failed["log_tail"]  # train.log's end, for the project page
    assert worker_hub_has_no(client, f"{USER}/tiny-broken")


def worker_hub_has_no(client: HubClient, name: str) -> bool:
    try:
        client.package(name)
    except HubNotFoundError:
        return True
    return False

"""`cvflow annotate` against a live hub: create a project, push images, and a real suggestion
worker (a child process) that installs demo/face-utility into a real venv, starts its runner,
finds the astronaut's face, posts it, stops the runner and exits by itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvflow.annotate.worker import SuggestWorker, WorkerOptions
from cvflow.api import HubClient
from cvflow.config import Config
from cvflow.errors import HubUnavailableError
from cvflow.transfer import RetryPolicy
from tests.client_e2e._publish_helpers import CVFLOW, cli_env, run_cli, run_script
from tests.conftest import free_port
from tests.helpers import LiveHub

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ASTRONAUT = EXAMPLES / "face-utility" / "samples" / "astronaut.jpg"
FACE = (176, 65, 96, 96)  # her face in scikit-image's astronaut (x, y, width, height)


def iou(box: list[float], other: tuple[int, int, int, int]) -> float:
    x, y, w, h = box
    ox, oy, ow, oh = other
    iw = max(0.0, min(x + w, ox + ow) - max(x, ox))
    ih = max(0.0, min(y + h, oy + oh) - max(y, oy))
    inter = iw * ih
    return inter / (w * h + ow * oh - inter)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CVFLOW_HOME for the module: the face-utility venv (OpenCV) is built once."""
    return tmp_path_factory.mktemp("annotate-home")


@pytest.fixture
def demo(hub: LiveHub, home: Path) -> dict[str, str | None]:
    """The publisher of demo/face-utility, which it has published."""
    demo = cli_env(home, hub.url, hub.create_user("demo"))
    published = run_cli(demo, "publish", str(EXAMPLES / "face-utility"))
    assert published.exit_code == 0, published.output
    return demo


@pytest.fixture
def env(hub: LiveHub, home: Path, demo: dict[str, str | None]) -> dict[str, str | None]:
    return cli_env(home, hub.url, hub.create_user("alice"))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "astronaut.jpg").write_bytes(ASTRONAUT.read_bytes())
    ramp = np.tile(np.arange(256, dtype=np.uint8), (120, 1))
    Image.fromarray(ramp).save(folder / "ramp.png")
    noise = np.random.default_rng(7).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noise.jpg", quality=80)
    (folder / "notes.txt").write_text("not an image: not pushed")
    return folder


def ok(env: dict[str, str | None], *args: str) -> str:
    result = run_cli(env, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_push_then_a_worker_suggests_every_item_and_stops_by_itself(hub: LiveHub, env, photos: Path) -> None:
    out = ok(env, "annotate", "create", "alice/faces", "--task", "detection", "--classes", "face",
             "--suggest", "demo/face-utility", "--range", "^1", "--solver", "detect")
    assert "created alice/faces" in out
    pushed = json.loads(ok(env, "annotate", "push", "alice/faces", str(photos), "--json"))
    # The astronaut is on the hub already, as a file of demo/face-utility: not sent again.
    assert (pushed["images"], pushed["added"], pushed["existing"], pushed["uploaded"], pushed["present"]) == (
        3, 3, 0, 2, 1)
    again = json.loads(ok(env, "annotate", "push", "alice/faces", str(photos), "--json"))
    assert (again["added"], again["existing"], again["uploaded"], again["present"]) == (0, 3, 0, 3)

    done = run_script(env, "annotate", "suggest", "alice/faces", "--batch", "2", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["items"], summary["failed"], summary["batches"]) == (3, 0, 2), summary
    assert summary["models"] == ["demo/face-utility@1.0.0:detect"]
    assert "starting demo/face-utility@1.0.0:detect" in done.stderr  # progress on stderr

    with hub.client() as anonymous:  # private: nobody else sees it
        assert anonymous.get("/api/v1/projects/alice/faces/items").status_code == 404
    listing = json.loads(ok(env, "annotate", "status", "alice/faces", "--json"))
    assert listing["model_version"] == "1.0.0" and listing["counts"]["todo"] == 3
    alice = hub.client(env["CVFLOW_TOKEN"])
    items = {i["file_name"]: i for i in alice.get("/api/v1/projects/alice/faces/items").json()["items"]}
    assert all(i["suggestion_version"] == "1.0.0" for i in items.values()), items
    (face,) = items["astronaut.jpg"]["suggestions"]
    assert face["class"] == "face" and iou(face["bbox"], FACE) > 0.7 and 0 <= face["score"] <= 1
    assert items["ramp.png"]["suggestions"] == [] and items["noise.jpg"]["suggestions"] == []

    # It stopped the runner it started; a second worker finds nothing to do and starts nothing.
    assert json.loads(ok(env, "ps", "--json")) == []
    idle = run_script(env, "annotate", "suggest", "alice/faces", "--json", timeout=120)
    assert idle.returncode == 0, idle.stderr
    assert json.loads(idle.stdout)["items"] == 0 and "starting" not in idle.stderr

    status = ok(env, "annotate", "status", "alice/faces")
    assert "demo/face-utility@^1:detect (now 1.0.0)" in status and "3 todo" in status

    # The annotator accepts the suggested face as it is; a snapshot publishes it.
    item = items["astronaut.jpg"]
    saved = alice.put(f"/api/v1/projects/alice/faces/items/{item['id']}/labels",
                      json={"revision": item["revision"], "labels": [{**face, "from": 0}], "duration_ms": 1500})
    assert saved.status_code == 200, saved.text
    status = ok(env, "annotate", "status", "alice/faces")
    assert "1 done" in status and "1.0.0" in status.split("MODEL VERSION", 1)[1]
    snap = json.loads(ok(env, "annotate", "snapshot", "alice/faces", "--json"))
    assert (snap["package"], snap["version"], snap["items"], snap["labels"]) == ("alice/faces-data", "1.0.0", 1, 1)
    assert "published alice/faces-data@1.1.0: 1 items, 1 labels" in ok(env, "annotate", "snapshot", "alice/faces")


def test_a_worker_reuses_a_runner_already_serving_the_version(hub: LiveHub, env, photos: Path) -> None:
    ok(env, "annotate", "create", "alice/faces", "--task", "detection", "--classes", "face",
       "--suggest", "demo/face-utility", "--solver", "detect")
    ok(env, "annotate", "push", "alice/faces", str(photos))
    # The exact version: the shared home may hold 1.1.0 too (the follow test publishes it).
    started = json.loads(ok(env, "run", "demo/face-utility@1.0.0:detect", "--json"))
    try:
        done = run_script(env, "annotate", "suggest", "alice/faces", "--json", timeout=300)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["items"] == 3
        assert f"using the runner {started['name']}" in done.stderr
        # Not started by the worker, so it still runs.
        assert [r["status"] for r in json.loads(ok(env, "ps", "--json"))] == ["ready"]
    finally:
        ok(env, "stop", "--all")


def test_an_image_the_solver_cannot_read_fails_alone(hub: LiveHub, env, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    data = ASTRONAUT.read_bytes()
    (folder / "astronaut.jpg").write_bytes(data)
    (folder / "cut.jpg").write_bytes(data[: len(data) // 3])  # its header is whole: the hub takes it
    ok(env, "annotate", "create", "alice/faces", "--task", "detection", "--classes", "face",
       "--suggest", "demo/face-utility", "--range", "1.0.0", "--solver", "detect")
    ok(env, "annotate", "push", "alice/faces", str(folder))
    done = run_script(env, "annotate", "suggest", "alice/faces", "--json", timeout=300)
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["items"], summary["failed"]) == (1, 1), summary
    assert "(cut.jpg)" in done.stderr and "left for another try" in done.stderr
    items = {i["file_name"]: i for i in
             hub.client(env["CVFLOW_TOKEN"]).get("/api/v1/projects/alice/faces/items").json()["items"]}
    assert items["cut.jpg"]["suggestion_version"] is None and len(items["astronaut.jpg"]["suggestions"]) == 1


def test_clear_errors(hub: LiveHub, env, photos: Path, tmp_path: Path) -> None:
    ok(env, "annotate", "create", "alice/plain", "--task", "classification", "--classes", "cat,dog")
    result = run_cli(env, "annotate", "suggest", "alice/plain")
    assert result.exit_code == 1 and "no_suggestion_model" in result.stderr, result.output

    result = run_cli(env, "annotate", "status", "alice/nothing")
    assert result.exit_code == 1 and "[project_not_found]" in result.stderr, result.output

    result = run_cli(env, "annotate", "create", "alice/plain", "--task", "detection", "--classes", "x")
    assert result.exit_code == 1 and "[project_exists]" in result.stderr, result.output

    result = run_cli(env, "annotate", "snapshot", "alice/plain")
    assert result.exit_code == 1 and "[nothing_to_snapshot]" in result.stderr, result.output

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "fake.png").write_bytes(b"not a png at all")
    (bad / "a.jpg").write_bytes(ASTRONAUT.read_bytes())
    (bad / "A.png").write_bytes((photos / "ramp.png").read_bytes())
    result = run_cli(env, "annotate", "push", "alice/plain", str(bad))
    assert result.exit_code == 1 and "nothing was uploaded" in result.stderr, result.output
    assert "fake.png" in result.stderr and "same name" in result.stderr
    assert alice_items(hub, env, "alice/plain") == 0

    result = run_cli(env, "annotate", "create", "alice/x", "--task", "detection", "--classes", "x",
                     "--suggest", "demo/face-utility")
    assert result.exit_code == 2 and "--suggest and --solver go together" in result.output


def alice_items(hub: LiveHub, env: dict[str, str | None], project: str) -> int:
    return int(hub.client(env["CVFLOW_TOKEN"]).get(f"/api/v1/projects/{project}/items").json()["total"])


def suggested_by(hub: LiveHub, env: dict[str, str | None], project: str) -> set[str | None]:
    items = hub.client(env["CVFLOW_TOKEN"]).get(f"/api/v1/projects/{project}/items").json()["items"]
    return {i["suggestion_version"] for i in items}


def wait_for(check: Callable[[], bool], what: str, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen; the worker said:\n{log.read_text()}"
        time.sleep(0.5)


def test_a_following_worker_moves_to_a_newer_version_and_ctrl_c_stops_its_runner(
        hub: LiveHub, env, demo, photos: Path, tmp_path: Path) -> None:
    ok(env, "annotate", "create", "alice/faces", "--task", "detection", "--classes", "face",
       "--suggest", "demo/face-utility", "--range", "^1", "--solver", "detect")
    ok(env, "annotate", "push", "alice/faces", str(photos))
    log = tmp_path / "worker.log"
    child = {k: v for k, v in os.environ.items() if not k.startswith("CVFLOW_")}
    child.update({k: v for k, v in env.items() if v is not None})
    with log.open("wb") as err:
        worker = subprocess.Popen([str(CVFLOW), "annotate", "suggest", "alice/faces", "--follow", "--poll-max", "1",
                                   "--batch", "2"], stdout=subprocess.PIPE, stderr=err, env=child)
    try:
        wait_for(lambda: suggested_by(hub, env, "alice/faces") == {"1.0.0"}, "suggestions by 1.0.0", log)
        newer = shutil.copytree(EXAMPLES / "face-utility", tmp_path / "face-utility",
                                ignore=shutil.ignore_patterns("__pycache__"))
        manifest = newer / "cvflow.toml"
        manifest.write_text(manifest.read_text().replace('version = "1.0.0"', 'version = "1.1.0"', 1))
        assert run_cli(demo, "publish", str(newer)).exit_code == 0
        # The next claim moves the project to 1.1.0; the worker installs and serves it, and every item
        # is suggested again.
        wait_for(lambda: suggested_by(hub, env, "alice/faces") == {"1.1.0"}, "suggestions by 1.1.0", log)
        running = json.loads(ok(env, "ps", "--json"))
        assert [(r["version"], r["status"]) for r in running] == [("1.1.0", "ready")]
        worker.send_signal(signal.SIGINT)
        assert worker.wait(60) == 130
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    said = log.read_text()
    assert "the project moved from 1.0.0 to 1.1.0" in said and "interrupted" in said, said
    assert json.loads(ok(env, "ps", "--json")) == []  # Ctrl-C stopped the runner it started


def test_an_unreachable_hub_is_tried_again_with_backoff_then_given_up(tmp_path: Path) -> None:
    hub = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused
    waits: list[float] = []
    lines: list[str] = []
    policy = RetryPolicy(attempts=4, base=0.5, sleep=waits.append, random=lambda: 1.0)
    with HubClient(hub, "cvf_x") as client:
        worker = SuggestWorker(client, Config(home=tmp_path, hub=hub, token=None), "alice/faces",
                               WorkerOptions(policy=policy), log=lines.append)
        with pytest.raises(HubUnavailableError, match="reading the project failed 4 times"):
            worker.run()
    assert waits == [0.5, 1.0, 2.0]
    assert len(lines) == 3 and "trying again in 0.5 s" in lines[0]

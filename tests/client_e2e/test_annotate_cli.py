"""`cvflow annotate` against a live hub: create a project, push images, and a real suggestion
worker (a child process) that installs demo/face-utility into a real venv, starts its runner,
finds the astronaut's face, posts it, stops the runner and exits by itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.client_e2e._publish_helpers import cli_env, run_cli, run_script
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
def env(hub: LiveHub, home: Path) -> dict[str, str | None]:
    demo = cli_env(home, hub.url, hub.create_user("demo"))
    published = run_cli(demo, "publish", str(EXAMPLES / "face-utility"))
    assert published.exit_code == 0, published.output
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


def test_a_worker_reuses_a_runner_already_serving_the_version(hub: LiveHub, env, photos: Path) -> None:
    ok(env, "annotate", "create", "alice/faces", "--task", "detection", "--classes", "face",
       "--suggest", "demo/face-utility", "--solver", "detect")
    ok(env, "annotate", "push", "alice/faces", str(photos))
    started = json.loads(ok(env, "run", "demo/face-utility:detect", "--json"))
    try:
        done = run_script(env, "annotate", "suggest", "alice/faces", "--json", timeout=300)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["items"] == 3
        assert f"using the runner {started['name']}" in done.stderr
        # Not started by the worker, so it still runs.
        assert [r["status"] for r in json.loads(ok(env, "ps", "--json"))] == ["ready"]
    finally:
        ok(env, "stop", "--all")


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

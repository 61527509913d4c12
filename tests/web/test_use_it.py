"""The package page's "Use it" box, run as a reader would run it: its ``CVFLOW_HUB`` and pull
lines fetch the package from this hub with the real client, and its curl line and Python snippet,
copied from the page, call the package's solvers on a real runner (``python -m cvflow.runner``
on the pulled package, on loopback) and get answers built from the inputs they sent. Markup in a
solver's declared inputs stays text."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from html import unescape
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from hub.errors import HubError
from tests.helpers import LiveHub
from tests.web.support import browser, publish_direct, section
from tests.web.test_dataset_pages import shapes  # noqa: F401  (the fixture: alice/shapes, published with the CLI)
from tests.web.test_xss import assert_inert
from web.views.catalog import RUNNER_PORT

BIN = Path(sys.executable).parent
MANIFEST = """[package]
name = "alice/looker"
version = "1.2.0"
description = "Looks at photos"
task = "classification"
license = "MIT"
requirements = ["pillow>=10"]

[[solvers]]
name = "look"
class = "looker:Look"
inputs = { image = "image: a photo", min_score = "number: lowest score (default 0.3)", top_k = "integer: default 3", label = "string: which label (default cat)", flag = "boolean" }

[[solvers]]
name = "stack"
class = "looker:Stack"
inputs = { frames = "images: frames of a clip", times = "integer" }

[[solvers]]
name = "echo"
class = "looker:Echo"
inputs = { text = "string", times = "integer: default 2" }
"""
SOLVER = b'''from typing import Any

from cvflow.solver import Image


class Look:
    def infer(self, image: Image, min_score: float = 0.3, top_k: int = 3, label: str = "cat",
              flag: bool = False) -> dict[str, Any]:
        return {"size": [image.width, image.height], "min_score": min_score, "top_k": top_k, "label": label,
                "flag": flag}


class Stack:
    def infer(self, frames: list[Image], times: int = 1) -> dict[str, Any]:
        return {"frames": [[f.width, f.height] for f in frames], "times": times}


class Echo:
    def infer(self, text: str, times: int = 2) -> dict[str, Any]:
        return {"echo": text * times}
'''
MARKUP = "<img src=x onerror=window.__xss='input'>"


def field(html: str, element_id: str) -> str:
    """The text a copy button copies: an input's value or a textarea's content."""
    match = re.search(rf'<input id="{element_id}" readonly value="([^"]*)">', html) or \
        re.search(rf'<textarea id="{element_id}" [^>]*>(.*?)</textarea>', html, re.S)
    assert match, f"no copyable {element_id!r}"
    return unescape(match[1])


def use_box(html: str) -> str:
    match = re.search(r'<section class="use" aria-labelledby="use-h">(.*?)</section>', html, re.S)
    assert match, "no Use it box"
    return match[1]


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[tuple[Path, list[int]]]:
    """Starts ``python -m cvflow.runner`` on a package directory given later; yields (status file, ports)."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []

    def start(package_dir: Path) -> int:
        status = tmp_path / f"status-{len(procs)}.json"
        proc = subprocess.Popen([sys.executable, "-m", "cvflow.runner", str(package_dir), "--port", "0",
                                 "--status-file", str(status), "--no-access-log"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        deadline = time.monotonic() + 60
        while not status.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "the runner exited"
            assert time.monotonic() < deadline, "the runner did not start"
            time.sleep(0.05)
        port = int(json.loads(status.read_text())["port"])
        ports.append(port)
        return port

    yield start  # type: ignore[misc]
    for proc in procs:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def photo(path: Path, size: tuple[int, int]) -> None:
    data = BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(data, "JPEG")
    path.write_bytes(data.getvalue())


def test_the_box_s_lines_pull_from_this_hub_and_call_each_solver_on_a_real_runner(
        hub: LiveHub, runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token = hub.create_user("alice")
    publish_direct(hub, token, "alice/looker", "1.2.0", manifest_text=MANIFEST, files={"looker.py": SOLVER})
    html = browser(hub).get("/alice/looker").text
    box = use_box(html)
    assert hub.url in box

    # The client, pointed at this hub as the box says, pulls exactly this version.
    env_line = field(box, "env-line")
    assert env_line == f"export CVFLOW_HUB={hub.url}" and field(box, "login-line") == f"cvflow login --hub {hub.url}"
    hub_url = env_line.split("=", 1)[1]
    env = {**os.environ, "CVFLOW_HUB": hub_url, "CVFLOW_HOME": str(tmp_path / "home")}
    env.pop("CVFLOW_TOKEN", None)
    pull = shlex.split(field(box, "pull-line"))
    assert pull == ["cvflow", "pull", "alice/looker@1.2.0"]
    done = subprocess.run([str(BIN / "cvflow"), *pull[1:]], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    package_dir = Path(done.stdout.strip().splitlines()[-1])
    assert (package_dir / "looker.py").read_bytes() == SOLVER
    assert field(box, "run-line") == f"cvflow run alice/looker@1.2.0 --port {RUNNER_PORT}"

    # The runner serves the pulled package; the page's lines name its port, swapped for the free one.
    port = runner(package_dir)
    work = tmp_path / "work"
    work.mkdir()
    photo(work / "photo.jpg", (40, 30))
    photo(work / "photo1.jpg", (8, 8))
    photo(work / "photo2.jpg", (16, 12))

    def call(solver: str) -> tuple[object, object]:
        curl = field(box, f"curl-{solver}").replace(f"127.0.0.1:{RUNNER_PORT}", f"127.0.0.1:{port}")
        python = field(box, f"python-{solver}").replace(f"127.0.0.1:{RUNNER_PORT}", f"127.0.0.1:{port}")
        assert curl.startswith("curl ") and str(port) in curl and str(port) in python
        by_curl = subprocess.run([*shlex.split(curl), "--fail-with-body", "-sS"], cwd=work, capture_output=True,
                                 text=True, timeout=60)
        assert by_curl.returncode == 0, (curl, by_curl.stdout, by_curl.stderr)
        by_python = subprocess.run([sys.executable, "-c", python], cwd=work, capture_output=True, text=True,
                                   timeout=60)
        assert by_python.returncode == 0, (python, by_python.stderr)
        return json.loads(by_curl.stdout), ast.literal_eval(by_python.stdout.strip())

    # The declared defaults are the example values; a boolean without one is sent as true.
    expected = {"size": [40, 30], "min_score": 0.3, "top_k": 3, "label": "cat", "flag": True}
    assert call("look") == (expected, expected)
    expected = {"frames": [[8, 8], [16, 12]], "times": 1}
    assert call("stack") == (expected, expected)
    assert call("echo") == ({"echo": "texttext"}, {"echo": "texttext"})  # no image: a JSON body
    assert 'content-type: application/json' in field(box, "curl-echo")


def test_markup_in_declared_inputs_stays_text_and_markup_names_are_refused(hub: LiveHub) -> None:
    token = hub.create_user("alice")
    text = MANIFEST.replace('"image: a photo"', json.dumps("image: " + MARKUP)).replace(
        '"string: which label (default cat)"', json.dumps("string: (default <script>window.__xss=1</script>)"))
    publish_direct(hub, token, "alice/looker", "1.2.0", manifest_text=text, files={"looker.py": SOLVER})
    html = browser(hub).get("/alice/looker").text
    assert_inert(html)
    box = use_box(html)
    assert "<img" not in box and "<script" not in box and "__xss" not in box  # descriptions never reach the box
    assert "-F label=text" in field(box, "curl-look")  # a default that is markup is no default
    assert "&lt;img src=x onerror=window.__xss=&#39;input&#39;&gt;" in section(html, "solvers-h")

    bad = MANIFEST.replace("flag = ", '"<img src=x>" = ')
    with pytest.raises(HubError) as refused:
        publish_direct(hub, token, "alice/looker", "1.3.0", manifest_text=bad, files={"looker.py": SOLVER})
    assert "must be a Python identifier" in str(refused.value.details or refused.value.message)


@pytest.mark.usefixtures("shapes")
def test_a_dataset_s_page_names_the_hub_to_pull_from_and_offers_nothing_to_run(hub: LiveHub) -> None:
    html = browser(hub).get("/alice/shapes").text
    match = re.search(r'<section class="use" aria-labelledby="hub-h">(.*?)</section>', html, re.S)
    assert match, "no hub box on a dataset's page"
    assert field(match[1], "login-line") == f"cvflow login --hub {hub.url}"
    assert field(match[1], "env-line") == f"export CVFLOW_HUB={hub.url}"
    assert field(html, "pull-line").startswith("cvflow pull -q alice/shapes@")  # the dataset's own Get it box
    assert "curl" not in html and "cvflow run" not in html and "cvflow install" not in html

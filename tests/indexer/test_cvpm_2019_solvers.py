"""A repository whose solver is written against the 2019 CVPM runtime runs unchanged.

Its solver subclasses ``cvpm.solver.Solver``, calls ``set_ready``, reads its upload with
``cvpm.utility.load_image_file`` and has ``infer(self, image_file, config)``; its requirements
(numpy, pillow) come from the machine's pip configuration, offline. It is indexed over git,
installed, run with ``cvflow run``, and answers a multipart POST of a PNG and a config field.
"""

from __future__ import annotations

import json

import httpx

from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.indexer._helpers import register, repository, run_jobs
from tests.runner._images import png

CVPM = """\
[package]
name = "Colour_Stats"
vendor = "cvmodel"

[[solvers]]
name = "Mean"
class = "colour_stats/solver/MeanColourSolver"
"""

BUNDLE = b'''\
from cvpm.bundle import Bundle


class ColourStatsBundle(Bundle):
    ENABLE_TRAIN = False
    SOLVERS = []
'''

# As 2019 solvers were written; not a line of it knows about cvflow.
SOLVER = b'''\
import numpy as np
from cvpm.solver import Solver
from cvpm.utility import load_image_file
from colour_stats.bundle import ColourStatsBundle as Bundle


class MeanColourSolver(Solver):
    def __init__(self, toml_file=None):
        super().__init__(toml_file)
        self.set_bundle(Bundle)
        self.set_ready()

    def infer(self, image_file, config):
        image = load_image_file(image_file)
        channel = "rgb".index(config["channel"])
        return {"height": image.shape[0], "width": image.shape[1],
                "mean": np.mean(image[:, :, channel]), "channel": config["channel"]}
'''


def test_a_2019_solver_is_indexed_installed_and_answers_over_http(one_hub, make_repo, git_daemon, tmp_path):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    repo.write({
        "cvpm.toml": CVPM, "requirements.txt": "numpy\npillow\n", "README.md": "# Colour stats\n",
        "colour_stats/__init__.py": b"", "colour_stats/bundle.py": BUNDLE, "colour_stats/solver.py": SOLVER,
    }).commit("a 2019 CVPM solver")
    repo.tag("v1.0.0", annotated=True)
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)
    result = repository(alice, doc["id"])["last_result"]
    assert result["errors"] == [], result

    env = cli_env(tmp_path / "home", one_hub.url)
    installed = run_cli(env, "install", "alice/colour-stats", "--lock-file", str(tmp_path / "cvflow.lock"))
    assert installed.exit_code == 0, installed.output
    started = run_cli(env, "run", "alice/colour-stats", "--name", "colour-stats", "--json")
    assert started.exit_code == 0, started.output
    try:
        url = json.loads(started.stdout)["url"]
        image = png(5, 2, b"\x10\x80\xf0", color=True)
        r = httpx.post(f"{url}/solvers/mean/infer", files={"image": ("pixels.png", image, "image/png")},
                       data={"channel": "g"}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json() == {"height": 2, "width": 5, "mean": 128.0, "channel": "g"}
        r = httpx.post(f"{url}/solvers/mean/infer", files={"image": ("pixels.png", image, "image/png")},
                       data={"channel": "b"}, timeout=60)
        assert r.json()["mean"] == 240.0
        form = httpx.get(f"{url}/openapi.json", timeout=30).json()["paths"]["/solvers/mean/infer"]["post"][
            "requestBody"]["content"]["multipart/form-data"]["schema"]
        assert form["required"] == ["image"] and form["additionalProperties"] == {"type": "string"}
    finally:
        stopped = run_cli(env, "stop", "colour-stats")
    assert stopped.exit_code == 0, stopped.output

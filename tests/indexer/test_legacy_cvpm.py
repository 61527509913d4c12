"""A legacy CVPM repository (cvpm.toml + pretrained.toml, two solvers) is indexed, installed and run."""

from __future__ import annotations

import json
import tomllib

from tests.client_e2e._install_helpers import install_json, python_in
from tests.client_e2e._publish_helpers import cli_env
from tests.helpers import sha256
from tests.indexer._helpers import published, register, repository, run_jobs

CVPM = """\
[package]
name = "Edge-Detector"
version = "1.0.0"
author = "Ada Lovelace"
description = "Two classic edge detectors"
license = "MIT"

[[solvers]]
name = "Sobel"
class = "edges.Sobel"

[[solvers]]
name = "Prewitt Edges"
class = "edges.Prewitt"
"""

EDGES = b'''\
import json
import pathlib

KERNELS = pathlib.Path(__file__).parent / "weights" / "kernels.json"


class _Edges:
    name = ""

    def __init__(self):
        self.kernel = json.loads(KERNELS.read_text())[self.name]

    def infer(self, image):
        k, rows, cols = self.kernel, len(image), len(image[0])
        return {"solver": self.name, "edges": [
            [sum(k[i][j] * image[r + i][c + j] for i in range(3) for j in range(3)) for c in range(cols - 2)]
            for r in range(rows - 2)]}


class Sobel(_Edges):
    name = "sobel"


class Prewitt(_Edges):
    name = "prewitt"
'''

KERNELS = json.dumps({"sobel": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
                      "prewitt": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]}).encode()


def test_a_cvpm_repository_with_two_solvers_is_indexed_then_installs_and_runs(one_hub, make_repo, git_daemon, weights,
                                                                              tmp_path):
    alice = one_hub.user_client("alice")
    url = weights.add("legacy/kernels.json", KERNELS)
    repo, name = make_repo()
    repo.write({"cvpm.toml": CVPM, "pretrained.toml": f'[[models]]\nname = "kernels.json"\nurl = "{url}"\n',
                "edges.py": EDGES, "README.md": "# Edges\n"}).commit("cvpm package")
    commit = repo.tag("v1.0.0", annotated=True)
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)

    doc = repository(alice, doc["id"])
    assert doc["last_result"]["errors"] == [], doc["last_result"]
    assert doc["package"] == "alice/edge-detector"
    version = published(one_hub, "alice/edge-detector")["1.0.0"]
    assert version.source_commit == commit
    shown = alice.get("/api/v1/packages/alice/edge-detector/versions/1.0.0").json()
    assert [(s["name"], s["class"]) for s in shown["manifest"]["solvers"]] == [
        ("sobel", "edges:Sobel"), ("prewitt-edges", "edges:Prewitt")]
    files = {f["path"]: f for f in shown["files"]}
    assert sorted(files) == ["README.md", "cvflow.toml", "cvpm.toml", "edges.py", "pretrained.toml",
                             "weights/kernels.json"]
    # The weight was downloaded, and the generated cvflow.toml pins it to what was downloaded.
    assert files["weights/kernels.json"]["sha256"] == sha256(KERNELS)
    generated = tomllib.loads(alice.get("/api/v1/packages/alice/edge-detector/versions/1.0.0/files/cvflow.toml").text)
    assert generated["weights"] == [{"path": "weights/kernels.json", "url": url, "sha256": sha256(KERNELS),
                                     "size": len(KERNELS), "format": "other"}]
    assert generated["package"]["allow_pickle"] is True

    report = install_json(cli_env(tmp_path / "home", one_hub.url), "alice/edge-detector",
                          "--lock-file", str(tmp_path / "cvflow.lock"))
    [installed] = report["packages"]
    assert (installed["name"], installed["version"]) == ("alice/edge-detector", "1.0.0")
    image = [[0, 0, 0, 9, 9, 9]] * 4
    out = python_in(installed["venv"], "import json; from edges import Sobel, Prewitt; "
                                       f"img = {image!r}; print(json.dumps([Sobel().infer(img), Prewitt().infer(img)]))")
    sobel, prewitt = json.loads(out)
    assert sobel == {"solver": "sobel", "edges": [[0, 36, 36, 0]] * 2}
    assert prewitt == {"solver": "prewitt", "edges": [[0, 27, 27, 0]] * 2}

"""The numpy digits classifiers of the demo hub (demo/digits-logreg, -mlp, -knn and -svm):
each validates, installs into a real venv (numpy, Pillow and safetensors: no torch), serves the held-out
split that demo/digits-lenet's accuracy is measured on and scores there what its manifest declares,
within half a point; its weights are safetensors, read without pickle. The demo hub's model zoo
puts them on one chart with demo/digits-lenet."""

from __future__ import annotations

import json
import math
import re
import struct
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client_e2e._install_helpers import install_json, python_in
from tests.client_e2e._publish_helpers import run_cli
from tests.helpers import LiveHub
from tests.runner._images import EXAMPLES, digit_png, holdout

#: Package -> its solver's model class and the arrays its weights hold (name: dtype).
PACKAGES = {
    "digits-logreg": ("digits_logreg.model:LogisticRegression", {"coef": "F32", "intercept": "F32"}),
    "digits-mlp": ("digits_mlp.model:MLP", {"w0": "F32", "b0": "F32", "w1": "F32", "b1": "F32"}),
    "digits-knn": ("digits_knn.model:NearestNeighbours", {"images": "U8", "labels": "U8", "k": "I64"}),
    "digits-svm": ("digits_svm.model:SupportVectorMachine",
                   {"support_vectors": "U8", "n_support": "I64", "dual_coef": "F32", "intercept": "F32",
                    "prob_a": "F32", "prob_b": "F32", "gamma": "F32"}),
}
WEIGHTS = "weights/model.safetensors"


def manifest(name: str) -> dict[str, Any]:
    return tomllib.loads((EXAMPLES / name / "cvflow.toml").read_text())


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, read with the standard library: 8 bytes of length, then JSON."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header: dict[str, Any] = json.loads(data[8:8 + length])
    end = max(t["data_offsets"][1] for k, t in header.items() if k != "__metadata__")
    assert 8 + length + end == len(data)  # the arrays fill the rest: nothing else hides in the file
    return header


@pytest.mark.parametrize("name", PACKAGES)
def test_each_validates_and_ships_small_safetensors_weights(env: dict[str, str | None], name: str) -> None:
    result = run_cli(env, "validate", str(EXAMPLES / name))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: demo/{name} 1.0.0: ") and "1 solver, 1 weight" in result.stdout
    doc = manifest(name)
    assert doc["weights"] == [{"path": WEIGHTS, "format": "safetensors"}]
    assert not doc["package"].get("allow_pickle", False)
    assert doc["package"]["task"] == "classification"
    assert not any(r.startswith("torch") for r in doc["package"]["requirements"])
    assert doc["solvers"][0]["suggest"] == manifest("digits-lenet")["solvers"][0]["suggest"]
    weights = EXAMPLES / name / WEIGHTS
    assert weights.stat().st_size < 200_000
    header = safetensors_header(weights)
    arrays = {k: t for k, t in header.items() if k != "__metadata__"}
    assert {k: t["dtype"] for k, t in arrays.items()} == PACKAGES[name][1]
    assert doc["metrics"]["params"] == sum(math.prod(t["shape"]) for k, t in arrays.items() if k not in ("k", "gamma"))


@pytest.mark.parametrize("name", PACKAGES)
def test_served_on_the_held_out_split_it_scores_what_it_declares(env: dict[str, str | None], tmp_path: Path,
                                                                 name: str) -> None:
    report = install_json(env, f"demo/{name}", "--lock-file", str(tmp_path / "cvflow.lock"))
    package = report["packages"][0]
    venv, snapshot = package["venv"], package["snapshot"]
    assert package["requirements"] == ["numpy>=1.24", "pillow>=10", "safetensors>=0.4"]

    # The weights load in the package's venv as the solver loads them, with no pickle anywhere.
    module, cls = PACKAGES[name][0].split(":")
    code = (f"import sys; sys.path.insert(0, {snapshot!r})\n"
            "import pickle\n"
            "def refuse(*a, **k): raise AssertionError('unpickled')\n"
            "pickle.load = pickle.loads = pickle.Unpickler = refuse\n"
            f"from {module} import {cls}\n"
            f"model = {cls}.load({snapshot!r} + '/{WEIGHTS}')\n"
            "import numpy as np\n"
            "p = model(np.zeros((2, 64), dtype=np.float32))\n"
            "print(p.shape, bool(np.allclose(p.sum(axis=1), 1)))\n")
    assert python_in(venv, code) == "(2, 10) True"

    result = run_cli(env, "run", f"demo/{name}")
    assert result.exit_code == 0, result.output
    url = result.stdout.splitlines()[1].strip()
    assert url.endswith("/solvers/classify/infer"), result.stdout
    try:
        images, labels = holdout()
        with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=8)) as client:

            def classify(pixels: list[int]) -> dict[str, Any]:
                r = client.post(url, files={"image": ("digit.png", digit_png(pixels), "image/png")})
                assert r.status_code == 200, r.text
                return r.json()  # type: ignore[no-any-return]

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(classify, images))
            one = client.post(url, files={"image": ("d.png", digit_png(images[0]), "image/png")}, data={"top_k": "1"})
            assert one.status_code == 200 and len(one.json()["top"]) == 1
            assert client.post(url, files={"image": ("d.png", digit_png(images[0]), "image/png")},
                               data={"top_k": "11"}).status_code == 422
    finally:
        assert run_cli(env, "stop", name).exit_code == 0
    accuracy = sum(a["digit"] == y for a, y in zip(answers, labels, strict=True)) / len(labels)
    assert abs(accuracy - manifest(name)["metrics"]["accuracy"]) <= 0.005, accuracy
    assert all(len(a["top"]) == 3 and 0 < a["probability"] <= 1 and a["top"][0]["digit"] == a["digit"]
               for a in answers)
    assert all(a["top"][0]["probability"] >= a["top"][1]["probability"] >= a["top"][2]["probability"] for a in answers)


def test_the_demo_zoo_charts_the_digits_classifiers(demo_hub: LiveHub) -> None:
    page = httpx.get(demo_hub.url + "/zoo/classification", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200
    points = {m[0]: (float(m[1]), float(m[2]))
              for m in re.findall(r"<title>([^:<]+): accuracy ([\d.]+), ([\d.]+) ms", page.text)}
    digits = {name: (doc["metrics"]["accuracy"], doc["metrics"]["latency_ms"])
              for name in ["digits-lenet", *PACKAGES] for doc in [manifest(name)]}
    assert {f"demo/{n}" for n in digits} <= set(points), points
    for name, (accuracy, latency) in digits.items():
        assert points[f"demo/{name}"] == pytest.approx((accuracy, latency), rel=1e-3)
    # A trade-off, not one model best at everything: the most accurate is not the fastest.
    fastest = min(digits, key=lambda n: digits[n][1])
    assert max(digits, key=lambda n: digits[n][0]) != fastest

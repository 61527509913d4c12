"""The must-show: `cvflow install` -> `cvflow run` -> POST real images -> right answers -> `cvflow ps`
-> `cvflow stop`, with demo/digits-lenet's real torch model (torch 2.13.0) in its real venv."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.client_e2e._install_helpers import install_json, python_in
from tests.client_e2e._publish_helpers import run_cli
from tests.runner._images import digit_png, holdout

BOOT = Path(__file__).resolve().parents[2] / "client" / "cvflow" / "runner" / "_boot.py"


def test_install_run_post_the_held_out_digits_ps_stop(env, home, tmp_path):
    report = install_json(env, "demo/digits-lenet", "--lock-file", str(tmp_path / "cvflow.lock"))
    venv = report["packages"][0]["venv"]
    assert report["packages"][0]["requirements"][0] == "torch==2.13.0"
    assert python_in(venv, "import torch; print(torch.__version__)").startswith("2.13.0")

    result = run_cli(env, "run", "demo/digits-lenet")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("demo/digits-lenet@1.0.0 is running as digits-lenet (pid ")
    url = lines[1].strip()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/solvers/classify/infer")

    images, labels = holdout()
    pngs = [digit_png(p) for p in images]  # 32x32, dark ink on light paper: not the 8x8 it was trained on
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=16)) as client:

        def classify(data: bytes) -> dict:  # type: ignore[type-arg]
            r = client.post(url, files={"image": ("digit.png", data, "image/png")})
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(classify, pngs))
        accuracy = sum(a["digit"] == y for a, y in zip(answers, labels, strict=True)) / len(labels)
        assert accuracy >= 0.95, accuracy
        assert len(labels) == 360 and len(answers[0]["top"]) == 3
        assert all(0 < a["probability"] <= 1 for a in answers)

        one = client.post(url, json={"image": base64.b64encode(pngs[0]).decode(), "top_k": 1}).json()
        assert one["digit"] == answers[0]["digit"] and len(one["top"]) == 1
        assert client.post(url, json={"image": base64.b64encode(pngs[0]).decode(), "top_k": 11}).status_code == 422

        base = url.rsplit("/solvers/", 1)[0]
        solver = client.get(base + "/").json()["solvers"][0]
        assert solver["batch"] == {"max_size": 32, "max_wait_ms": 2.0}
        assert solver["stats"]["requests"] == 361 and solver["stats"]["largest_batch"] > 1  # concurrent calls batched

    listed = json.loads(run_cli(env, "ps", "--json").stdout)
    mine = next(r for r in listed if r["name"] == "digits-lenet")
    assert (mine["package"], mine["version"], mine["solvers"], mine["status"]) == (
        "demo/digits-lenet", "1.0.0", ["classify"], "ready")
    assert mine["url"] == base and mine["venv"] == venv
    assert "digits-lenet" in run_cli(env, "ps").stdout

    result = run_cli(env, "stop", "digits-lenet")
    assert result.exit_code == 0 and result.stdout == "digits-lenet: stopped\n", result.output
    assert all(r["name"] != "digits-lenet" for r in json.loads(run_cli(env, "ps", "--json").stdout))
    try:
        httpx.get(base + "/healthz", timeout=2)
        raise AssertionError("the runner still answers after stop")
    except httpx.TransportError:
        pass


def test_weights_load_as_safetensors_and_pickles_need_the_opt_in(env, tmp_path):
    report = install_json(env, "demo/digits-lenet", "--lock-file", str(tmp_path / "cvflow.lock"))
    assert report["built"] == []  # the venv of the previous test is reused
    venv, snapshot = report["packages"][0]["venv"], report["packages"][0]["snapshot"]
    code = f"""
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("_boot", {str(BOOT)!r})
boot = importlib.util.module_from_spec(spec); spec.loader.exec_module(boot); boot.install_cvflow()
from cvflow.solver import load_weights, PickleNotAllowedError
state = load_weights({snapshot!r} + "/weights/model.safetensors", allow_pickle=False)
print(sorted(state)[0], tuple(state["classifier.3.weight"].shape))
torch.save(state, {str(tmp_path / "model.pt")!r})
try:
    load_weights({str(tmp_path / "model.pt")!r}, allow_pickle=False)
except PickleNotAllowedError as exc:
    print("refused:", exc)
print(len(load_weights({str(tmp_path / "model.pt")!r}, allow_pickle=True)))
"""
    out = python_in(venv, code).splitlines()
    assert out[0] == "classifier.1.bias (10, 64)"
    assert out[1].startswith("refused: model.pt is a pickle, and loading a pickle runs code from it;")
    assert out[2] == "8"

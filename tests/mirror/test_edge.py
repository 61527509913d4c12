"""What the issue asks to see: edge machines install (and run) a package through a mirror and through a
pull-through hub while the upstream is stopped."""

from __future__ import annotations

import json

import httpx

from tests.client_e2e._install_helpers import install_json, python_in, versions
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.mirror._helpers import publish_ok, sync
from tests.mirror.conftest import stop_hub

BASELIB = b"def double(x):\n    return 2 * x\n"
APP = (b"import baselib\n\n\nclass Detector:\n    def infer(self, x: int = 0) -> dict[str, int]:\n"
       b"        return {'doubled': baselib.double(x)}\n")
INFER = "import solver; print(solver.Detector().infer(21))"


def _publish_app(upstream):  # type: ignore[no-untyped-def]
    alice = upstream.user_client("alice")
    publish_ok(alice, "alice/base", "1.0.0", files={"baselib.py": BASELIB, "solver.py": b"class Detector: pass\n"},
               weights=())
    publish_ok(alice, "alice/app", "1.0.0", dependencies={"alice/base": "^1.0"},
               files={"solver.py": APP, "weights.safetensors": b"\x00" * 4096})


def _install_and_infer(home, hub_url):  # type: ignore[no-untyped-def]
    report = install_json(cli_env(home, hub_url), "alice/app", "--lock-file", str(home / "cvflow.lock"))
    assert versions(report) == {"alice/app": "1.0.0", "alice/base": "1.0.0"}
    app = next(p for p in report["packages"] if p["name"] == "alice/app")
    assert python_in(app["venv"], INFER) == "{'doubled': 42}"


def _run_and_call(home, hub_url):  # type: ignore[no-untyped-def]
    """`cvflow run` the installed package (the runner serves its solver over REST) and call it."""
    env = cli_env(home, hub_url)
    started = run_cli(env, "run", "alice/app", "--json", "--timeout", "60")
    assert started.exit_code == 0, started.output
    try:
        url = json.loads(started.stdout)["url"]
        r = httpx.post(f"{url}/solvers/detect/infer", json={"x": 21}, timeout=30)
        assert r.status_code == 200 and r.json() == {"doubled": 42}, r.text
    finally:
        run_cli(env, "stop", "--all", "--timeout", "5")


def test_edge_machines_install_through_a_mirror_and_a_pull_through_hub_while_the_upstream_is_down(
        spawn_hub, tmp_path):
    upstream = spawn_hub()
    _publish_app(upstream)
    mirror = spawn_hub(read_only=True)
    sync(mirror, upstream)
    proxy = spawn_hub(upstreams=f"{upstream.url},{mirror.url}")
    stop_hub(upstream)

    _install_and_infer(tmp_path / "edge-1", mirror.url)  # the mirror serves its copies
    _run_and_call(tmp_path / "edge-1", mirror.url)
    _install_and_infer(tmp_path / "edge-2", proxy.url)  # the first upstream is down: the mirror answers

    stop_hub(mirror)  # now nothing upstream answers: the pull-through hub serves what came through
    _install_and_infer(tmp_path / "edge-3", proxy.url)

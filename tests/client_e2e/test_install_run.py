"""`cvflow run` around the install: a taken --port is refused before anything is installed, a
package that already runs is not started twice unless asked, and `cvflow logs` leaves out the
readiness polls `cvflow run` and `cvflow ps` make. Real runner processes of the test package
``qa/probe``, on the runner tests' session hub and CVFLOW_HOME."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx

from tests.client_e2e._install_helpers import fails
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.runner.conftest import demo_hub, env, home  # noqa: F401 - the runner tests' hub and home


def _start(cli: dict[str, str | None], *args: str) -> dict[str, Any]:
    result = run_cli(cli, "run", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _probe_runners(cli: dict[str, str | None]) -> list[str]:
    listed = json.loads(run_cli(cli, "ps", "--json").stdout)
    return sorted(r["name"] for r in listed if r["package"] == "qa/probe" and r["status"] != "dead")


def test_a_taken_port_is_refused_before_anything_is_installed(demo_hub, tmp_path):  # noqa: F811
    fresh = cli_env(tmp_path / "home", demo_hub.url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = fails(fresh, "run", "qa/probe", "--port", str(port))
    assert message.startswith(f"port {port} on 127.0.0.1 is not free")
    assert "pick another --port, or leave --port out" in message
    assert json.loads(run_cli(fresh, "list", "--json").stdout) == []  # nothing was installed
    assert not (tmp_path / "home" / "venvs").exists()


def test_a_running_package_is_not_started_twice_unless_asked(env):  # noqa: F811
    run_cli(env, "stop", "qa/probe")
    first = _start(env, "qa/probe:fail")
    try:
        again = run_cli(env, "run", "qa/probe")
        assert again.exit_code == 0, again.output
        assert again.stdout.splitlines()[0] == (
            f"qa/probe@1.0.0 is already running as {first['name']} (pid {first['pid']}) at {first['url']}")
        assert "cvflow run qa/probe --another" in again.stdout
        record = _start(env, "qa/probe")
        assert record["already_running"] is True and record["pid"] == first["pid"]
        assert _probe_runners(env) == [first["name"]]

        second = _start(env, "qa/probe:fail", "--another")
        assert second["name"] == f"{first['name']}-2" and second["pid"] != first["pid"]
        third = _start(env, "qa/probe:fail", "--name", "probe-other")  # a new name is asking too
        assert _probe_runners(env) == sorted([first["name"], second["name"], third["name"]])
    finally:
        run_cli(env, "stop", "qa/probe")


def test_logs_leave_out_the_readiness_polls_of_run_and_ps(env, home):  # noqa: F811
    run_cli(env, "stop", "qa/probe")
    record = _start(env, "qa/probe:fail", "--name", "polled")
    try:
        run_cli(env, "ps")  # polls /readyz too
        log = Path(home / "state" / "runners" / "polled.log")
        httpx.post(f"{record['url']}/solvers/fail/infer", json={"how": "ok"})
        logs = run_cli(env, "logs", "polled", "-n", "500").stdout
        assert '"POST /solvers/fail/infer" 200' in logs
        assert "/readyz" not in logs
        httpx.get(f"{record['url']}/readyz")  # anyone else's poll is logged as any request
        assert '"GET /readyz" 200' in run_cli(env, "logs", "polled").stdout
        assert log.exists()
    finally:
        run_cli(env, "stop", "polled")

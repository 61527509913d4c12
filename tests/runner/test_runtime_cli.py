"""`cvflow run`, `ps`, `stop`, `logs` and `restart` with real runner processes: the state on
disk stays truthful through kill -9, restarts and failed starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from hub.demo import load_examples
from tests.client_e2e._install_helpers import fails
from tests.client_e2e._publish_helpers import CVFLOW, cli_env, run_cli
from tests.conftest import free_port
from tests.runner._images import png


def ps(env: dict[str, str | None]) -> dict[str, dict[str, Any]]:
    result = run_cli(env, "ps", "--json")
    assert result.exit_code == 0, result.output
    return {r["name"]: r for r in json.loads(result.stdout)}


def start(env: dict[str, str | None], *args: str) -> dict[str, Any]:
    result = run_cli(env, "run", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_run_ps_kill_9_restart_logs_stop(env, home):
    record = start(env, "qa/probe:fail", "--name", "victim")
    assert record["status"] == "ready" and record["solvers"] == ["fail"]
    url, pid, port = record["url"], record["pid"], record["port"]
    assert url == f"http://127.0.0.1:{port}"
    assert httpx.post(f"{url}/solvers/fail/infer", json={"how": "ok"}).json() == {"ok": True}

    listed = ps(env)["victim"]
    assert (listed["status"], listed["pid"], listed["package"], listed["version"]) == ("ready", pid, "qa/probe",
                                                                                      "1.0.0")
    table = run_cli(env, "ps").stdout.splitlines()
    assert table[0].split() == ["NAME", "PACKAGE", "SOLVERS", "URL", "PID", "STATUS", "UPTIME"]
    row = next(line.split() for line in table if line.startswith("victim "))
    assert row[:6] == ["victim", "qa/probe@1.0.0", "fail", url, str(pid), "ready"]
    state = home / "state" / "runners" / "victim.json"
    assert json.loads(state.read_text())["start_ticks"] > 0 and state.stat().st_mode & 0o777 == 0o600

    # kill -9: nothing cleans up after the runner; ps must still tell the truth.
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while ps(env)["victim"]["status"] != "dead":
        assert time.monotonic() < deadline, "ps still shows the killed runner as alive"
        time.sleep(0.05)
    assert ps(env)["victim"]["uptime"] == "-"
    row = next(line for line in run_cli(env, "ps").stdout.splitlines() if line.startswith("victim"))
    assert row.split()[5] == "dead"

    # restart brings it back, on the same port.
    result = run_cli(env, "restart", "victim")
    assert result.exit_code == 0, result.output
    assert "qa/probe@1.0.0 restarted as victim" in result.stdout
    again = ps(env)["victim"]
    assert again["status"] == "ready" and again["port"] == port and again["pid"] != pid
    assert httpx.post(f"{url}/solvers/fail/infer", json={"how": "raise"}).status_code == 500

    logs = run_cli(env, "logs", "victim", "-n", "200").stdout
    assert logs.count("cvflow run qa/probe@1.0.0 (fail)") == 2  # one header per start
    assert '"POST /solvers/fail/infer" 200' in logs and '"POST /solvers/fail/infer" 500' in logs
    assert "RuntimeError: kaboom" in logs  # the solver's traceback
    assert len(run_cli(env, "logs", "victim", "-n", "3").stdout.splitlines()) == 3

    result = run_cli(env, "stop", "victim")
    assert result.exit_code == 0 and result.stdout == "victim: stopped\n", result.output
    assert gone(again["pid"])
    assert "victim" not in ps(env)
    assert not state.exists()
    assert "RuntimeError: kaboom" in run_cli(env, "logs", "victim").stdout  # the log outlives the runner
    assert fails(env, "stop", "victim").startswith("no runner victim")


def test_a_recorded_pid_that_now_belongs_to_another_process_is_dead(env, home):
    record = start(env, "qa/probe:fail", "--name", "recycled")
    try:
        path = home / "state" / "runners" / "recycled.json"
        data = json.loads(path.read_text())
        # The same pid after a reboot (another boot id), or reused by a process started later.
        for change in ({"boot_id": "00000000-0000-0000-0000-000000000000"},
                       {"start_ticks": data["start_ticks"] + 1}, {"pid": os.getpid()}):
            path.write_text(json.dumps({**data, **change}))
            assert ps(env)["recycled"]["status"] == "dead", change
            if "pid" not in change:  # the real runner is alive, but the record does not describe it
                assert not gone(record["pid"])
        # stop on a dead record removes the record and signals nothing.
        result = run_cli(env, "stop", "recycled")
        assert result.stdout == "recycled: was not running\n", result.output
        assert not gone(record["pid"])
    finally:
        os.kill(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not gone(record["pid"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_names_ports_and_a_second_runner_of_the_same_package(env):
    port = free_port()
    first = start(env, "qa/probe:fail", "--port", str(port))
    second = start(env, "qa/probe:fail", "--another")
    try:
        assert first["name"] == "probe" and first["port"] == port
        assert second["name"] == "probe-2" and second["port"] != port
        assert fails(env, "run", "qa/probe:fail", "--name", "probe") == (
            f"a runner named probe is running (pid {first['pid']}); stop it first, or choose another --name")
        assert fails(env, "run", "qa/probe:fail", "--port", str(port), "--name", "third") == (
            f"port {port} is used by runner probe; pick another --port")
        assert fails(env, "run", "qa/probe:fail", "--name", "Bad Name").startswith("'Bad Name' is not a valid runner")
    finally:
        result = run_cli(env, "stop", "qa/probe")  # every runner of the package
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == ["probe-2: stopped", "probe: stopped"]


def test_failures_to_start_are_reported_with_the_log(env):
    message = fails(env, "run", "qa/probe:nope")
    assert message == "qa/probe@1.0.0 has no solver 'nope' (it has: inspect, fail, batched, broken)"

    result = run_cli(env, "run", "qa/probe:broken", "--name", "broken")
    assert result.exit_code == 1
    assert "the runner for qa/probe@1.0.0 exited during start-up (status 3)" in result.stderr
    assert "solver broken: probe has no class Missing" in result.stderr
    assert "broken" not in ps(env)

    busy = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", busy))
        s.listen()
        result = run_cli(env, "run", "qa/probe:fail", "--port", str(busy), "--name", "clash")
    assert result.exit_code == 1 and f"port {busy} on 127.0.0.1 is not free" in result.stderr, result.output

    result = run_cli(env, "run", "qa/absent")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["qa/absent is not installed; installing it first",
                                          "error: qa/absent: no such package on the hub (or it is private)"]
    assert fails(env, "restart", "nothing").startswith("no runner nothing")
    assert fails(env, "logs", "nothing").startswith("no runner nothing")
    assert run_cli(env, "stop").exit_code == 2  # neither a name nor --all: a usage error


def test_logs_follow_prints_requests_until_the_runner_stops(env):
    record = start(env, "qa/probe:inspect", "--name", "followed")
    child = {k: v for k, v in os.environ.items() if k not in ("CVFLOW_HOME", "CVFLOW_HUB", "CVFLOW_TOKEN")}
    child.update({k: v for k, v in env.items() if v is not None})
    follower = subprocess.Popen([str(CVFLOW), "logs", "followed", "-f", "-n", "0"], stdout=subprocess.PIPE,
                                text=True, env=child)
    try:
        time.sleep(1.0)  # let it reach the end of the log
        r = httpx.post(f"{record['url']}/solvers/inspect/infer", files={"image": ("a.png", png(3, 3))})
        assert r.status_code == 200
        assert run_cli(env, "stop", "followed").exit_code == 0
        out, _ = follower.communicate(timeout=20)  # -f ends when the runner is gone
    finally:
        follower.kill()
    assert '"POST /solvers/inspect/infer" 200' in out
    assert "received SIGTERM: stopping" in out and "stopped" in out


def test_ps_and_stop_with_no_runners(tmp_path, demo_hub):
    empty = cli_env(tmp_path / "home", demo_hub.url)
    assert run_cli(empty, "ps").stdout == "no runners; start one with `cvflow run NS/NAME`\n"
    assert run_cli(empty, "ps", "--json").stdout == "[]\n"
    assert run_cli(empty, "stop", "--all").stdout == "no runners\n"


def test_help_teaches_with_examples():
    for command, example in (("run", "cvflow run demo/digits-lenet"), ("ps", "cvflow ps --json"),
                             ("stop", "cvflow stop --all"), ("logs", "cvflow logs digits-lenet -f"),
                             ("restart", "cvflow restart digits-lenet")):
        result = run_cli({}, command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.output and example in result.output, result.output


def test_pickle_weights_and_open_hosts_are_warned_about(tmp_path, capsys):
    from cvflow.commands.run import _env_pairs, _warnings
    from cvflow.install import InstalledPackage

    (tmp_path / "cvflow.toml").write_text(
        '[package]\nname = "qa/old"\nversion = "1.0.0"\ndescription = "pickled"\nallow_pickle = true\n\n'
        '[[solvers]]\nname = "s"\nclass = "m:C"\n\n[[weights]]\npath = "w.pt"\n')
    _warnings(InstalledPackage(name="qa/old", version="1.0.0", venv="/v", snapshot=str(tmp_path)), "0.0.0.0")
    err = capsys.readouterr().err
    assert "qa/old@1.0.0 may load pickle weights (w.pt)" in err and "unpickling runs code" in err
    assert "the runner listens on 0.0.0.0" in err
    assert _env_pairs(("A=1", "B_2=x=y", "C=")) == {"A": "1", "B_2": "x=y", "C": ""}
    assert run_cli({}, "run", "qa/x", "--env", "NOVALUE").exit_code == 2


def test_a_fresh_cvflow_init_package_is_served_by_cvflow_run(env, demo_hub, tmp_path):
    made = run_cli(env, "init", str(tmp_path / "pkgs" / "hello"), "--name", "qa/hello")
    assert made.exit_code == 0, made.output
    lines = list(load_examples(demo_hub.context, tmp_path / "pkgs"))  # published as `cvflow publish` would
    assert lines == ["demo: published qa/hello@0.1.0"], lines

    record = start(env, "qa/hello", "--name", "scaffold")
    try:
        url = record["url"]
        answer = httpx.post(f"{url}/solvers/predict/infer", files={"image": ("a.png", png(4, 4, b"\xf0"))}).json()
        assert answer == {"label": "bright", "mean": 240.0, "threshold": 128}
        dark = httpx.post(f"{url}/solvers/predict/infer", files={"image": ("b.png", png(4, 4, b"\x10"))}).json()
        assert dark["label"] == "dark"
        # The manifest's declared inputs are what the runner built from infer()'s hints.
        schema = httpx.get(f"{url}/openapi.json").json()
        assert "image" in json.dumps(schema["paths"]["/solvers/predict/infer"])
    finally:
        assert run_cli(env, "stop", "scaffold").exit_code == 0

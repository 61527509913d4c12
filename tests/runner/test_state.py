"""Runner records on disk and the process fingerprint that keeps `ps` truthful."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

from cvflow.runtime.state import RunnerRecord, RunnerState, boot_id, fingerprint


def record(pid: int, **kw: object) -> RunnerRecord:
    found = fingerprint(pid)
    assert found is not None
    base = RunnerRecord(name="r", package="a/b", version="1.0.0", solvers=["s"], host="127.0.0.1", port=1, pid=pid,
                        started_at="2026-01-01T00:00:00Z", boot_id=found.boot_id, start_ticks=found.start_ticks,
                        venv="/v", snapshot="/s", log="/l")
    return replace(base, **kw)  # type: ignore[arg-type]


def test_fingerprint_of_a_live_process_and_of_none():
    me = fingerprint(os.getpid())
    assert me is not None and me.boot_id == boot_id() and me.start_ticks and me.state in "RS"
    assert fingerprint(2**22 + 12345) is None  # above pid_max


def test_a_record_is_alive_only_for_the_same_process():
    assert record(os.getpid()).is_alive()
    assert not record(os.getpid(), start_ticks=1).is_alive()  # the pid was recycled
    assert not record(os.getpid(), boot_id="another-boot").is_alive()  # the machine rebooted

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        r = record(child.pid)
        assert r.is_alive()
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while r.is_alive():  # a zombie (killed, not yet reaped by its parent) is dead
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert fingerprint(child.pid) is not None and fingerprint(child.pid).state == "Z"  # type: ignore[union-attr]
    finally:
        child.kill()
        child.wait()
    assert not r.is_alive()


def test_records_are_saved_atomically_private_and_listed(tmp_path):
    state = RunnerState(tmp_path)
    a, b = record(os.getpid(), name="b"), record(os.getpid(), name="a", options={"env": {"TOKEN": "secret"}})
    state.save(a)
    state.save(b)
    assert [r.name for r in state.all()] == ["a", "b"]
    assert state.load("a") == b
    path = tmp_path / "runners" / "a.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (tmp_path / "runners").iterdir()) == ["a.json", "b.json"]  # no temporary left
    (tmp_path / "runners" / "c.json").write_text("{not json")
    assert [r.name for r in state.all()] == ["a", "b"]  # an unreadable record is skipped, not fatal
    state.remove("a")
    assert state.load("a") is None and [r.name for r in state.all()] == ["b"]
    assert record(os.getpid(), host="0.0.0.0", port=8080).url == "http://127.0.0.1:8080"
    assert record(os.getpid(), host="::1", port=8080).url == "http://[::1]:8080"

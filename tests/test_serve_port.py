"""``cvflow-hub serve`` on a port it cannot listen on: one line that says what to do, before any start-up work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

CVFLOW_HUB = Path(sys.executable).parent / "cvflow-hub"


def serve(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVFLOW_")}
    return subprocess.run([str(CVFLOW_HUB), "--data-dir", str(data_dir), "serve", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_a_busy_port_is_one_line_that_suggests_another(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = serve(tmp_path / "data", "--port", str(port))

    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}: the port is in use"), lines
    assert "choose another port with --port, e.g. --port " in lines[0]
    assert not (tmp_path / "data").exists()  # refused before the database was made or migrated


def test_an_address_not_of_this_machine_says_so(tmp_path: Path) -> None:
    result = serve(tmp_path / "data", "--host", "192.0.2.1", "--port", "8000")  # TEST-NET-1: never local

    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: cannot listen on 192.0.2.1:8000: "), result.stderr
    assert "--host" in result.stderr and "Traceback" not in result.stderr

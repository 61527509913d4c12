"""Start, watch, stop and restart runners in the background.

``start`` launches ``python -I -u cvflow/runner/_boot.py SNAPSHOT ...`` with the installed
venv's Python, in a session of its own (so a Ctrl-C in the terminal that ran ``cvflow run``
does not reach it), stdout and stderr appended to its log. The runner binds port 0 unless a
port is asked for and reports the port it got in its status file, so no port is ever picked
here and then lost to a race. ``start`` returns once ``GET /readyz`` answers 200, and raises
with the log's last lines if the process exits first.

``stop`` sends SIGTERM to the runner's process group (the runner finishes queued calls and
exits), then SIGKILL after ``timeout`` seconds. Nothing else supervises a runner: a runner
that dies stays dead, and ``cvflow ps`` says so.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvflow.errors import CVFlowError
from cvflow.runtime.logs import follow_log, log_tail
from cvflow.runtime.state import NAME_RE, RunnerRecord, RunnerState, boot_id, fingerprint

if TYPE_CHECKING:
    from cvflow.config import Config
    from cvflow.install import InstalledPackage

BOOT = Path(__file__).resolve().parent.parent / "runner" / "_boot.py"


__all__ = ["RunOptions", "RunnerError", "RunnerNotFoundError", "RunnerStartError", "UnknownSolverError", "find",
           "follow_log", "log_tail", "probe", "restart", "start", "status", "stop"]


class RunnerError(CVFlowError):
    """A runner could not be started, found or stopped."""

    code = "runner_error"


class RunnerStartError(RunnerError):
    """The runner exited, or did not become ready, during start-up; the message has its log's tail."""

    code = "runner_failed"


class RunnerNotFoundError(RunnerError, LookupError):
    """No runner of that name or package."""

    code = "runner_not_found"


class UnknownSolverError(RunnerError, LookupError):
    """The package has no solver of that name."""

    code = "solver_not_found"


@dataclass(frozen=True)
class RunOptions:
    """How to start a runner; kept in its record so ``restart`` starts it the same way."""

    host: str = "127.0.0.1"
    port: int | None = None  # None: any free port
    device: str = "auto"
    env: Mapping[str, str] = field(default_factory=dict)
    allow_urls: tuple[str, ...] = ()
    max_image_bytes: int | None = None
    max_image_pixels: int | None = None
    max_request_bytes: int | None = None
    ready_timeout: float = 180.0
    label_studio: str | None = None  # Label Studio's URL: its ML backend routes on

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "device": self.device, "env": dict(self.env),
                "allow_urls": list(self.allow_urls), "max_image_bytes": self.max_image_bytes,
                "max_image_pixels": self.max_image_pixels, "max_request_bytes": self.max_request_bytes,
                "label_studio": self.label_studio}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunOptions:
        return cls(host=data.get("host", "127.0.0.1"), port=data.get("port"), device=data.get("device", "auto"),
                   env=dict(data.get("env") or {}), allow_urls=tuple(data.get("allow_urls") or ()),
                   max_image_bytes=data.get("max_image_bytes"), max_image_pixels=data.get("max_image_pixels"),
                   max_request_bytes=data.get("max_request_bytes"), label_studio=data.get("label_studio"))


# -- start ------------------------------------------------------------------------------------


def start(config: Config, installed: InstalledPackage, solvers: Sequence[str], options: RunOptions, *,
          name: str | None = None, replace: bool = False, port_hint: int | None = None) -> RunnerRecord:
    """Start a runner for ``installed`` serving ``solvers`` (all of them when empty); wait until ready.

    ``name`` defaults to the package's name, with ``-2``, ``-3``... when a runner has it. With
    ``replace``, a dead runner's record of that name is taken over, and ``port_hint`` is tried
    when no port is asked for (``restart``).

    Raises:
        UnknownSolverError: a solver the package lacks.
        RunnerError: the name is invalid or taken by a live runner, or the port by another runner.
        RunnerStartError: the runner exited or was not ready within ``options.ready_timeout``.
    """
    state = RunnerState(config.state_dir)
    snapshot = Path(installed.snapshot)
    known = _solver_names(snapshot)
    for s in solvers:
        if s not in known:
            raise UnknownSolverError(f"{installed.name}@{installed.version} has no solver {s!r}"
                                     f" (it has: {', '.join(known) or 'none'})")
    if not known:
        raise RunnerError(f"{installed.name}@{installed.version} declares no solvers; there is nothing to run")
    with state.lock():
        name = _choose_name(state, name, installed.name.split("/", 1)[1], explicit=name is not None or replace)
        if options.port:
            for other in state.all():
                if other.port == options.port and other.name != name and other.is_alive():
                    raise RunnerError(f"port {options.port} is used by runner {other.name}; pick another --port")
        log_path, status_path = state.log_path(name), state.status_path(name)
        status_path.unlink(missing_ok=True)
        served = list(solvers) or known
        port = options.port or port_hint or 0
        popen = _spawn(installed, snapshot, served if solvers else [], options, port, log_path, status_path)
        found = fingerprint(popen.pid)
        record = RunnerRecord(
            name=name, package=installed.name, version=installed.version, solvers=served, host=options.host,
            port=port, pid=popen.pid, started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            boot_id=found.boot_id if found else boot_id(), start_ticks=found.start_ticks if found else None,
            venv=installed.venv, snapshot=str(snapshot), log=str(log_path), options=options.to_dict())
        state.save(record)
    try:
        _wait_ready(state, record, popen, status_path, options.ready_timeout)
    except BaseException:
        _terminate(record, 5.0)
        state.remove(record.name)
        raise
    return record


def _solver_names(snapshot: Path) -> list[str]:
    from cvflow.manifest import MANIFEST_FILENAME, parse_manifest

    try:
        manifest = parse_manifest((snapshot / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunnerError(f"cannot read the installed package's manifest in {snapshot}: {exc}") from exc
    return [s.name for s in manifest.solvers]


def _choose_name(state: RunnerState, wanted: str | None, default: str, *, explicit: bool) -> str:
    base = wanted or default
    if not NAME_RE.match(base):
        raise RunnerError(f"{base!r} is not a valid runner name: lowercase letters, digits, '.', '_', '-'"
                          " (at most 64), starting with a letter or digit")
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}-{n}"
        record = state.load(candidate)
        if record is None or not record.is_alive():
            return candidate
        if explicit:
            raise RunnerError(f"a runner named {candidate} is running (pid {record.pid}); stop it first,"
                              " or choose another --name")
    raise RunnerError(f"too many runners named {base}")


def _spawn(installed: InstalledPackage, snapshot: Path, solvers: Sequence[str], options: RunOptions, port: int,
           log_path: Path, status_path: Path) -> subprocess.Popen[bytes]:
    python = installed.python
    if not python.exists():
        raise RunnerError(f"{installed.name}@{installed.version}: its venv {installed.venv} is gone;"
                          f" run `cvflow install {installed.name}@{installed.version}` again")
    argv = [str(python), "-I", "-u", str(BOOT), str(snapshot), "--host", options.host,
            "--port", str(port), "--device", options.device, "--status-file", str(status_path)]
    for s in solvers:
        argv += ["--solver", s]
    for prefix in options.allow_urls:
        argv += ["--allow-url", prefix]
    if options.label_studio:
        argv += ["--label-studio", options.label_studio]
    limits = (("--max-image-bytes", options.max_image_bytes), ("--max-image-pixels", options.max_image_pixels),
              ("--max-request-bytes", options.max_request_bytes))
    for flag, value in limits:
        if value is not None:
            argv += [flag, str(value)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    bin_dir = str(python.parent)
    env.update({"VIRTUAL_ENV": installed.venv, "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
                **options.env, "CVFLOW_RUNNER_SETTINGS": ",".join(options.env)})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        log.write(f"--- {stamp} cvflow run {installed.name}@{installed.version}"
                  f" ({', '.join(solvers) or 'all solvers'}) ---\n".encode())
        log.flush()
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=snapshot, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise RunnerError(f"cannot start {python}: {exc.strerror or exc}") from exc


def _wait_ready(state: RunnerState, record: RunnerRecord, popen: subprocess.Popen[bytes], status_path: Path,
                timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = popen.poll()
        if code is not None:
            raise RunnerStartError(f"the runner for {record.package}@{record.version} exited during start-up"
                                   f" (status {code}); its log {record.log} ends with:\n"
                                   + log_tail(Path(record.log), 15))
        if record.port == 0:  # any port: the runner says which it got
            with contextlib.suppress(OSError, ValueError, KeyError):
                record.port = int(json.loads(status_path.read_text())["port"])
                state.save(record)
        if record.port and probe(record) == "ready":
            return
        if time.monotonic() > deadline:
            raise RunnerStartError(f"the runner for {record.package}@{record.version} was not ready after"
                                   f" {timeout:g} s; its log {record.log} ends with:\n"
                                   + log_tail(Path(record.log), 15))
        time.sleep(0.05)


# -- status -----------------------------------------------------------------------------------


def probe(record: RunnerRecord, timeout: float = 1.0) -> str:
    """``ready``, ``starting`` (listening, loading) or ``not answering``; ask ``is_alive`` first."""
    host = record.url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
    conn = http.client.HTTPConnection(host, record.port, timeout=timeout)
    try:
        conn.request("GET", "/readyz", headers={"X-CVFlow-Poll": "1"})  # not in the runner's access log
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return "not answering"
    finally:
        conn.close()
    return "ready" if status == 200 else "starting" if status == 503 else "not answering"


def status(record: RunnerRecord) -> str:
    """``ready``, ``starting``, ``not answering`` or ``dead``."""
    if not record.is_alive():
        return "dead"
    return probe(record) if record.port else "starting"  # port 0: not listening yet


def find(config: Config, target: str) -> list[RunnerRecord]:
    """The runner named ``target``, or every runner of the package ``target`` (``namespace/name``).

    Raises:
        RunnerNotFoundError: none.
    """
    state = RunnerState(config.state_dir)
    if "/" in target:
        found = [r for r in state.all() if r.package == target.partition("@")[0]]
    else:
        record = state.load(target)
        found = [record] if record is not None else []
    if not found:
        names = ", ".join(r.name for r in state.all()) or "none"
        raise RunnerNotFoundError(f"no runner {target} (runners: {names}); see `cvflow ps`")
    return found


# -- stop, restart ----------------------------------------------------------------------------


def stop(config: Config, record: RunnerRecord, *, timeout: float = 10.0) -> str:
    """Stop a runner and forget it: ``stopped`` (it exited on SIGTERM), ``killed`` (SIGKILL was
    needed) or ``was not running`` (it had died; the record is removed)."""
    outcome = _terminate(record, timeout)
    RunnerState(config.state_dir).remove(record.name)
    return outcome


def _terminate(record: RunnerRecord, timeout: float) -> str:
    if not record.is_alive():
        _reap(record.pid)
        return "was not running"
    _signal(record, signal.SIGTERM)
    if _wait_dead(record, timeout):
        return "stopped"
    _signal(record, signal.SIGKILL)
    _wait_dead(record, 10.0)
    return "killed"


def _signal(record: RunnerRecord, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(record.pid) == record.pid:
            os.killpg(record.pid, sig)  # its whole group: worker processes a solver started too
        else:
            os.kill(record.pid, sig)


def _wait_dead(record: RunnerRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while record.is_alive():
        _reap(record.pid)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    _reap(record.pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (the runner started by this process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def restart(config: Config, record: RunnerRecord, installed: InstalledPackage, *,
            timeout: float = 10.0) -> RunnerRecord:
    """Stop the runner (if it runs) and start it again the same way, on the same port when it is free.

    The port is waited for up to ``PORT_WAIT`` seconds: a killed runner's main thread shows as a
    zombie while its other threads still hold its sockets for a moment. Raises what ``start`` raises.
    """
    _terminate(record, timeout)
    options = RunOptions.from_dict(record.options)
    hint = None
    if options.port is None and record.port:
        deadline = time.monotonic() + PORT_WAIT
        while hint is None and time.monotonic() < deadline:
            if bind_error(record.host, record.port) is None:
                hint = record.port
            else:
                time.sleep(0.05)
    return start(config, installed, record.solvers, options, name=record.name, replace=True, port_hint=hint)


#: Seconds a restart waits for the runner's old port to be released before taking another.
PORT_WAIT = 3.0


def bind_error(host: str, port: int) -> str | None:
    """Why the runner could not bind ``port`` on ``host``, or None when it could.

    The check binds with SO_REUSEADDR, as the runner's server does, so a connection of a runner
    that was killed, left in TIME_WAIT on that port, does not count as a listener.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return str(exc.strerror or exc)
    return None

"""Runner records: what ``cvflow run`` started, kept under ``CVFLOW_HOME/state/runners/``::

    state/runners/
      .lock                one writer at a time (names and ports are chosen under it)
      <name>.json          the record (mode 0600: ``--env`` values may be secrets)
      <name>.log           the runner's stdout and stderr, appended across restarts
      <name>.status        written by the runner once it listens: {pid, host, port}

A record outlives its process: after a reboot, or a ``kill -9``, the file is still there.
``ps`` must not call such a runner running, and a pid the kernel has since given to another
process must not pass for it. So a record keeps the process's *fingerprint*: the kernel's boot
id and the process's start time in clock ticks since boot (``/proc/<pid>/stat``, field 22).
A process is the runner only if its pid is alive, is not a zombie, and both match.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cvflow.locks import file_lock

RECORD_FORMAT = 1
NAME_RE = re.compile(r"\A[a-z0-9][a-z0-9._-]{0,63}\Z")
_PROC = Path("/proc")


@dataclass(frozen=True)
class Fingerprint:
    """Who a pid is: ``boot_id`` and ``start_ticks`` are None where ``/proc`` is not available."""

    boot_id: str | None
    start_ticks: int | None
    state: str = "?"  # R, S, D, Z (zombie), T, X (dead)...


def boot_id() -> str | None:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def fingerprint(pid: int) -> Fingerprint | None:
    """The fingerprint of a live ``pid``, or None if there is no such process.

    Without ``/proc`` (macOS), only whether the pid exists can be told.
    """
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        if _PROC.joinpath("self").exists():
            return None
        return Fingerprint(None, None) if _pid_exists(pid) else None
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
    fields = stat[stat.rindex(")") + 2:].split()
    return Fingerprint(boot_id(), int(fields[19]), fields[0])


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunnerRecord:
    """One runner ``cvflow run`` started. ``options`` is what ``restart`` starts it with again."""

    name: str
    package: str
    version: str
    solvers: list[str]
    host: str
    port: int
    pid: int
    started_at: str  # ISO 8601, UTC
    boot_id: str | None
    start_ticks: int | None
    venv: str
    snapshot: str
    log: str
    options: dict[str, Any] = field(default_factory=dict)
    format: int = RECORD_FORMAT

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else "::1" if self.host == "::" else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def is_alive(self) -> bool:
        """Whether the recorded process still runs: same pid, same boot, same start time, not a zombie."""
        found = fingerprint(self.pid)
        if found is None or found.state in ("Z", "X", "x"):
            return False
        if self.boot_id and found.boot_id and found.boot_id != self.boot_id:
            return False
        return self.start_ticks is None or found.start_ticks is None or found.start_ticks == self.start_ticks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunnerState:
    """The records under ``state_dir/runners``."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir) / "runners"

    def record_path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def status_path(self, name: str) -> Path:
        return self.dir / f"{name}.status"

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.dir / ".lock")

    def save(self, record: RunnerRecord) -> None:
        """Write the record atomically, readable by the user only."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{record.name}.", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record.to_dict(), f, indent=2, sort_keys=True)
                f.write("\n")
            os.replace(tmp, self.record_path(record.name))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, name: str) -> RunnerRecord | None:
        """The record named ``name``; None when there is none or it is unreadable."""
        try:
            data = json.loads(self.record_path(name).read_text())
        except (OSError, ValueError):
            return None
        known = set(RunnerRecord.__dataclass_fields__)
        try:
            return RunnerRecord(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return None

    def all(self) -> list[RunnerRecord]:
        """Every readable record, by name."""
        if not self.dir.is_dir():
            return []
        records = (self.load(p.stem) for p in sorted(self.dir.glob("*.json")))
        return [r for r in records if r is not None]

    def remove(self, name: str) -> None:
        """Forget a runner (its log stays, for ``cvflow logs`` after the fact)."""
        self.record_path(name).unlink(missing_ok=True)
        self.status_path(name).unlink(missing_ok=True)

"""Runner logs: the last lines, and following what is appended."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from cvflow.runtime.state import RunnerRecord


def log_tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log ("" when there is none), reading only the end of the file."""
    if lines <= 0:
        return ""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            window = 16384
            while True:
                f.seek(max(0, size - window))
                data = f.read()
                if data.count(b"\n") > lines or window >= size:
                    break
                window *= 4
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def follow_log(path: Path, record: RunnerRecord | None, *, poll: float = 0.2) -> Iterator[str]:
    """What is appended to the log from now on, until the runner is gone (then what is left)."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        while True:
            chunk = f.read()
            if chunk:
                yield chunk.decode("utf-8", "replace")
                continue
            if record is None or not record.is_alive():
                rest = f.read()
                if rest:
                    yield rest.decode("utf-8", "replace")
                return
            time.sleep(poll)

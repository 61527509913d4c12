"""The one way the indexer runs git: a clean environment, a time limit, nothing executable.

Every git command goes through :func:`run_git` (or :class:`CatFile` for reading objects):

* the environment is rebuilt from nothing: ``PATH``, a throwaway ``HOME``, no system or global
  config (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``), no terminal prompts and an
  askpass that answers nothing, so a repository that needs credentials fails instead of waiting;
* ``-c`` options turn off hooks (``core.hooksPath=/dev/null``), fsmonitor, automatic gc,
  submodule recursion and HTTP redirects, and allow only the https, http and git transports
  (``protocol.allow=never`` refuses ``ext::``, ``ssh://`` and ``file://``);
* nothing is ever checked out, so no smudge filter (Git LFS included) or checkout hook exists
  to run; objects are read with ``git cat-file``;
* each command is killed with its whole process group when it runs past its time limit, and a
  fetch is killed as soon as the repository on disk grows past the size limit.

Messages and URLs leave this module with credentials removed (:func:`hub.services.urls.redact`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.services.urls import redact

#: Allowed transports. ``ext::`` runs a command and is never allowed; ``file`` only for tests.
TRANSPORTS = ("https", "http", "git")


class GitError(Exception):
    """A git command failed. ``kind`` says how; the message is redacted and safe to show.

    Kinds: ``missing`` (git is not installed), ``timeout``, ``too_large`` (the size watch
    fired), ``failed`` (git exited non-zero; ``stderr`` holds its redacted message).
    """

    def __init__(self, message: str, *, kind: str = "failed", stderr: str = "") -> None:
        super().__init__(redact(message))
        self.message = redact(message)
        self.kind = kind
        self.stderr = redact(stderr)


@dataclass(frozen=True)
class GitOptions:
    """How git may run: a time limit per command and which extra transports are allowed."""

    timeout: float = 600.0
    allow_file: bool = False


def _config(options: GitOptions) -> list[str]:
    pairs = {
        "core.hooksPath": os.devnull,
        "core.fsmonitor": "false",
        "core.askPass": "true",
        "credential.helper": "",
        "gc.auto": "0",
        "maintenance.auto": "false",
        "fetch.recurseSubmodules": "false",
        "submodule.recurse": "false",
        "fetch.writeCommitGraph": "false",
        "http.followRedirects": "false",
        "http.lowSpeedLimit": "1000",
        "http.lowSpeedTime": "60",
        "protocol.allow": "never",
        **{f"protocol.{t}.allow": "always" for t in TRANSPORTS},
        "init.defaultBranch": "main",
        "advice.detachedHead": "false",
    }
    if options.allow_file:
        pairs["protocol.file.allow"] = "always"
    args: list[str] = []
    for key, value in pairs.items():
        args += ["-c", f"{key}={value}"]
    return args


def _environment(home: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "XDG_CONFIG_HOME": home,
        "LC_ALL": "C",
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",
        "SSH_ASKPASS": "true",
        "GIT_SSH_COMMAND": "false",
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_OPTIONAL_LOCKS": "0",
    }


@contextlib.contextmanager
def _home() -> Iterator[str]:
    home = tempfile.mkdtemp(prefix="cvflow-git-home-")
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _git_argv(options: GitOptions, args: Sequence[str]) -> list[str]:
    git = shutil.which("git")
    if git is None:
        raise GitError("git is not installed on the indexer's machine (it needs git 2.30 or newer)", kind="missing")
    return [git, *_config(options), *args]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def directory_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (links are not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def run_git(args: Sequence[str], *, cwd: Path | None = None, options: GitOptions,
            watch: tuple[Path, int] | None = None) -> bytes:
    """Run ``git ARGS`` safely and return its standard output.

    ``watch=(directory, limit)`` kills git once ``directory`` holds more than ``limit`` bytes.
    Raises GitError (``missing``, ``timeout``, ``too_large``, ``failed``).
    """
    argv = _git_argv(options, args)
    with _home() as home:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=_environment(home), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise GitError(f"cannot run git: {exc.strerror}", kind="missing") from exc
        over = threading.Event()
        done = threading.Event()
        watcher = None
        if watch is not None:
            watcher = threading.Thread(target=_watch_size, args=(proc, watch, over, done), daemon=True)
            watcher.start()
        try:
            out, err = proc.communicate(timeout=options.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.communicate()
            raise GitError(f"git {args[0]} did not finish within {options.timeout:g} seconds", kind="timeout") from None
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
    if over.is_set():
        assert watch is not None
        raise GitError(f"the repository is larger than the limit of {watch[1]} bytes", kind="too_large")
    if proc.returncode != 0:
        message = err.decode("utf-8", "replace").strip()
        raise GitError(f"git {args[0]} failed: {_last_lines(message)}", stderr=message)
    return out


def _watch_size(proc: subprocess.Popen[bytes], watch: tuple[Path, int], over: threading.Event,
                done: threading.Event) -> None:
    directory, limit = watch
    while not done.wait(0.1):
        if directory_size(directory) > limit:
            over.set()
            _kill(proc)
            return


def _last_lines(message: str, n: int = 3) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    return " / ".join(lines[-n:]) or "no message"


class CatFile:
    """``git cat-file --batch`` in one repository: object contents by id, streamed.

    Use as a context manager. Reading one object (header and body) has the time limit of a
    git command; past it the process is killed and reads fail with GitError ``timeout``.
    """

    def __init__(self, repo: Path, options: GitOptions) -> None:
        self._home = tempfile.mkdtemp(prefix="cvflow-git-home-")
        argv = _git_argv(options, ["cat-file", "--batch"])
        try:
            self._proc = subprocess.Popen(argv, cwd=repo, env=_environment(self._home), stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            shutil.rmtree(self._home, ignore_errors=True)
            raise GitError(f"cannot run git: {exc.strerror}", kind="missing") from exc
        self._timed_out = False
        self._timeout = options.timeout
        self._timer: threading.Timer | None = None

    def _expire(self) -> None:
        self._timed_out = True
        _kill(self._proc)

    def __enter__(self) -> CatFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self._timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        _kill(self._proc)
        for pipe in (self._proc.stdin, self._proc.stdout):  # both are pipes (Popen with PIPE)
            if pipe is not None:
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()
        self._proc.wait()
        shutil.rmtree(self._home, ignore_errors=True)

    def _fail(self, what: str) -> GitError:
        if self._timed_out:
            return GitError(f"reading objects did not finish within {self._timeout:g} seconds", kind="timeout")
        return GitError(f"git cat-file failed: {what}")

    def open(self, oid: str) -> tuple[int, Iterator[bytes]]:
        """The size of object ``oid`` and an iterator over its bytes, which must be consumed
        in full before the next call. Raises GitError for a missing object."""
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None
        self._arm()
        try:
            stdin.write(oid.encode("ascii") + b"\n")
            stdin.flush()
            header = stdout.readline()
        except (OSError, ValueError) as exc:
            raise self._fail(str(exc)) from exc
        parts = header.split()
        if len(parts) != 3 or parts[1] == b"missing":
            raise self._fail(f"object {oid} is missing" if header else "no answer")
        size = int(parts[2])

        def body() -> Iterator[bytes]:
            left = size
            while left:
                block = stdout.read(min(left, 1 << 20))
                if not block:
                    raise self._fail("the object ended early")
                left -= len(block)
                yield block
            if stdout.read(1) != b"\n":
                raise self._fail("the object was not followed by a newline")

        return size, body()

    def read(self, oid: str, *, limit: int) -> bytes:
        """The whole object ``oid``; GitError if it is over ``limit`` bytes."""
        size, body = self.open(oid)
        if size > limit:
            for _ in body:  # keep the stream in step for the next object
                pass
            raise GitError(f"object {oid} is {size} bytes, over the limit of {limit}", kind="too_large")
        return b"".join(body)

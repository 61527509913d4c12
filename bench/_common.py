"""What the benchmarks share: starting and stopping servers, a hub with a user, wrk, tables.

Every server runs in its own process group on 127.0.0.1 and is killed with its group when
the benchmark ends, whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
RESULTS = BENCH / "results"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def tool(name: str) -> str:
    """A command from the venv, else from PATH; exits with a hint when neither has it."""
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name) or (NGINX if name == "nginx" and Path(NGINX).exists() else None)
    if not found:
        sys.exit(f"{name} is missing: run scripts/bench-setup first")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpus(*which: int) -> list[str]:
    """A ``taskset`` prefix pinning to the given CPUs, or nothing on a machine with fewer."""
    if shutil.which("taskset") and os.cpu_count() and max(which) < (os.cpu_count() or 1):
        return ["taskset", "-c", ",".join(map(str, which))]
    return []


@dataclass
class Proc:
    """A server in its own process group, with its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        # Workers that outlived their parent are still in the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


class Procs:
    """Starts processes and stops all of them, newest first, on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[Proc] = []

    def __enter__(self) -> Procs:
        # A benchmark stopped with SIGTERM still stops its servers (the with-blocks unwind).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        while self.running:
            self.running.pop().stop()

    def start(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, cwd=cwd or ROOT, start_new_session=True)
        proc = Proc(name, popen, log)
        self.running.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.running:
            self.running.remove(proc)

    def serve(self, name: str, argv: Sequence[str], url: str, **kw: object) -> Proc:
        """Start a server and wait until ``url`` answers."""
        proc = self.start(name, argv, **kw)  # type: ignore[arg-type]
        wait_http(url, proc)
        return proc


def wait_http(url: str, proc: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout:.0f} s:\n{proc.tail()}")


@contextlib.contextmanager
def workdir(prefix: str, base: str | None = None) -> Iterator[Path]:
    """A temporary directory (under ``base`` if given) removed with everything in it at the end."""
    path = Path(tempfile.mkdtemp(prefix=f"cvflow-bench-{prefix}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- the hub


@dataclass
class HubSetup:
    data_dir: Path
    token: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def storage(self) -> Path:
        return self.data_dir / "storage"


def prepare_hub(data_dir: Path, user: str = "bench") -> HubSetup:
    """A data dir with a migrated database, a user and a publishing token (made with the CLI)."""
    hub = tool("cvflow-hub")
    base = [hub, "--data-dir", str(data_dir)]
    subprocess.run([*base, "user", "create", user, "--password-stdin"], input=b"bench password 123\n",
                   check=True, capture_output=True)
    token = subprocess.run([*base, "token", "create", "--user", user], check=True, capture_output=True,
                           text=True).stdout.strip().splitlines()[-1]
    return HubSetup(data_dir, token, {"CVFLOW_HUB_DATA_DIR": str(data_dir)})


def hub_uvicorn_argv(setup: HubSetup, port: int | str) -> list[str]:
    """The hub as users run it: ``cvflow-hub serve`` (uvicorn, one process)."""
    return [tool("cvflow-hub"), "--data-dir", str(setup.data_dir), "serve", "--port", str(port),
            "--log-level", "warning"]


def granian_argv(target: str, port: int | str, *, interface: str = "asgi", factory: bool = True,
                 working_dir: Path | None = None) -> list[str]:
    argv = [tool("granian"), "--interface", interface, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--log-level", "warning", "--no-access-log"]
    if factory:
        argv.append("--factory")
    if working_dir:
        argv += ["--working-dir", str(working_dir)]
    return [*argv, target]


def manifest(name: str, version: str, weights: Sequence[str] = ()) -> str:
    lines = ["[package]", f'name = "{name}"', f'version = "{version}"', 'description = "benchmark package"',
             'task = "detection"', 'tags = ["bench"]', 'license = "MIT"', "", "[[solvers]]",
             'name = "detect"', 'class = "solver:Detector"']
    for path in weights:
        lines += ["", "[[weights]]", f'path = "{path}"']
    return "\n".join(lines) + "\n"


# --- blobs


def random_pieces(size: int, piece: int = 64 << 20) -> tuple[list[bytes], str]:
    """``size`` random bytes as ``piece``-sized parts, and their sha256."""
    import hashlib

    hasher, pieces = hashlib.sha256(), []
    for offset in range(0, size, piece):
        data = os.urandom(min(piece, size - offset))
        hasher.update(data)
        pieces.append(data)
    return pieces, hasher.hexdigest()


def sliced(data: bytes, step: int = 1 << 20) -> Iterator[memoryview]:
    """``data`` in ``step``-sized views, for a request body.

    httpx (httpcore) sends a ``bytes`` body with ``send`` and re-slices what is left after each
    partial send, copying it: quadratic for a 64 MiB chunk (about 3x slower on loopback).
    Handing it the chunk in 1 MiB views avoids that.
    """
    view = memoryview(data)
    for start in range(0, len(view), step):
        yield view[start : start + step]


def upload_blob(client: httpx.Client, pieces: Sequence[bytes], digest: str, *, whole: bool = False) -> None:
    """The resumable protocol: open a session, PATCH each piece as a chunk, finish with the sha256.

    ``whole`` sends each chunk as one ``bytes`` body, the way the cvflow client did before it sent views.
    """
    created = client.post("/api/v1/uploads", json={"size": sum(map(len, pieces))})
    if created.status_code != 201:
        raise RuntimeError(f"opening an upload failed: {created.status_code} {created.text}")
    location, offset = created.json()["location"], 0
    for piece in pieces:
        r = patch_chunk(client, location, piece, offset, whole=whole)
        if r.status_code != 200:
            raise RuntimeError(f"chunk at {offset} failed: {r.status_code} {r.text}")
        offset += len(piece)
    done = client.post(location + "/finish", json={"sha256": digest})
    if done.status_code != 201:
        raise RuntimeError(f"finishing the upload failed: {done.status_code} {done.text}")


def patch_chunk(client: httpx.Client, url: str, piece: bytes, offset: int, *, whole: bool = False) -> httpx.Response:
    headers = {"upload-offset": str(offset)}
    if whole:
        return client.patch(url, content=piece, headers=headers)
    headers["content-length"] = str(len(piece))
    return client.patch(url, content=sliced(piece), headers=headers)


def hub_client(url: str, token: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=300)


# --- wrk


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def wrk(url: str, *, seconds: int = 8, connections: int = 16, headers: dict[str, str] | None = None,
        cpu: Sequence[str] = (), warmup: int = 1) -> WrkResult:
    """requests/s and latency percentiles from one wrk thread; fails on any error response."""
    argv = [*cpu, tool("wrk"), "-t1", f"-c{connections}", "--latency", "--timeout", "5s"]
    for key, value in (headers or {}).items():
        argv += ["-H", f"{key}: {value}"]
    if warmup:
        subprocess.run([*argv, f"-d{warmup}s", url], check=True, capture_output=True)
    out = subprocess.run([*argv, f"-d{seconds}s", url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad[1]) if bad else 0) + (sum(int(g) for g in sock.groups()) if sock else 0)
    return WrkResult(rps, p50, p99, total, errors)


# --- resident memory


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    try:
        import psutil
    except ImportError:
        return _proc_tree_rss(pid)
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its descendants."""
    total = 0.0
    for p in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _proc_tree_rss(pid: int) -> int:
    total = 0
    for current in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


class RssSampler:
    """Samples a process tree's RSS every ``interval`` seconds in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))


# --- nginx


def nginx_conf(workdir: Path, port: int, locations: str, *, extra_http: str = "") -> Path:
    """A minimal nginx.conf: foreground, one worker, every path it writes in ``workdir``."""
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / "nginx-tmp" / sub).mkdir(parents=True, exist_ok=True)
    tmp = workdir / "nginx-tmp"
    # Run as root, nginx's workers would switch to "nobody", who cannot read the 0700 temp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(f"""{user}daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    {extra_http}
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
""")
    return conf


def nginx_argv(conf: Path) -> list[str]:
    return [tool("nginx"), "-p", str(conf.parent), "-c", str(conf)]


# --- reporting


def cpu_busy(seconds: float = 1.0) -> float:
    """The share of all CPUs busy over ``seconds`` (call it while the benchmark itself is idle)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return idle, sum(fields[:8])

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


class Quiet:
    """Background load before and after a benchmark: on a 2-CPU machine anything else running
    (a test suite, a build) moves the numbers more than most changes do."""

    def __init__(self) -> None:
        self.before = cpu_busy()
        if self.before > 0.15:
            print(f"warning: {self.before:.0%} of the CPUs are busy with something else; results will be noisy",
                  file=sys.stderr, flush=True)

    def note(self) -> str:
        after = cpu_busy()
        worst = max(self.before, after)
        text = f"Other load on the machine: {self.before:.0%} CPU busy before the run, {after:.0%} after."
        if worst > 0.15:
            text = "**Warning: the machine was not idle; these numbers are not trustworthy.** " + text
        return text



def versions() -> str:
    import importlib.metadata as md

    parts = [f"Python {platform.python_version()}"]
    for dist in ("starlette", "uvicorn", "uvloop", "httptools", "granian", "pypiserver"):
        with contextlib.suppress(md.PackageNotFoundError):
            parts.append(f"{dist} {md.version(dist)}")
    return ", ".join(parts)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(name: str, title: str, header: Sequence[str], rows: Sequence[Sequence[object]],
           notes: Sequence[str] = ()) -> str:
    """Print a markdown table and write it to ``bench/results/<name>.md``."""
    lines = [f"### {title}", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} CPUs · {platform.machine()} · {versions()}", "",
             "| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if notes:
        lines += ["", *notes]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return text

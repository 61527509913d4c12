"""Soak: two hub replicas on PostgreSQL and S3 behind a balancer, a mixed load, and faults.

    .venv/bin/python bench/soak.py                  # 10 minutes, PostgreSQL restarted once
    .venv/bin/python bench/soak.py --minutes 3      # a quick run
    .venv/bin/python bench/soak.py --pg-fault cut   # leave the shared PostgreSQL server alone

Two ``cvflow-hub serve`` processes share a fresh PostgreSQL database (``cvflow_soak_<pid>``,
dropped at the end) and a bucket on moto's S3 server; a round-robin TCP balancer in this script
spreads connections over them. A bounded load (``--workers`` clients, each waiting ``--pause``
between requests) reads package documents, versions and search, downloads small and large files
(checking their sha256), publishes, yanks and unyanks, signs in and renders website pages.

Faults, each once, for ``--outage`` seconds:

* the store: moto keeps its objects in memory, so it is never restarted; the hubs reach it
  through this script's own TCP proxy, which closes every open connection and stops listening
  (connections are refused) for the outage, then listens again;
* the database: ``restart`` (default) runs ``pg_ctlcluster ... restart`` on the machine's server
  (a short outage, and every connection is cut); ``stop`` stops it for the outage and starts it
  again; ``cut`` puts the database behind a proxy like the store's, leaving the server alone.

It prints a table per minute (requests, errors by status and code, p50/p99, each replica's RSS)
and a table of targets with PASS/MISS; both go to ``bench/results/soak.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS,
    Procs,
    Quiet,
    free_port,
    manifest,
    report,
    tool,
    tree_cpu,
    tree_rss,
    verdict,
    wait_http,
    workdir,
)

PG_ADMIN = os.environ.get("CVFLOW_SOAK_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REGION = "us-east-1"
NAMESPACE = "soak"
PASSWORD = "soak password 123"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "soak", "AWS_SECRET_ACCESS_KEY": "soak", "AWS_DEFAULT_REGION": REGION,
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
#: What each operation needs besides the hub: reads of only the database must keep working
#: while the store is away.
NEEDS = {"meta": "db", "version": "db", "search": "db", "page": "db", "pkgpage": "db+s3", "login": "db", "yank": "db",
         "small": "db+s3", "large": "db+s3", "publish": "db+s3"}
WEIGHTS = {"meta": 30, "version": 10, "search": 10, "page": 5, "pkgpage": 5, "small": 15, "large": 4, "publish": 6,
           "yank": 5, "login": 3}
LARGE = 4 << 20
OUTAGE_CODES = {"db": "database_unavailable", "s3": "storage_unavailable"}
RECOVERY_TARGET = 5.0


# --- a TCP proxy that can refuse connections for a while ---------------------------------------


class TcpProxy:
    """Listens on ``port`` and pipes each connection to the next target (round robin).

    :meth:`cut` closes every open connection and stops listening, so new connections are
    refused, until :meth:`restore`. A target that refuses is skipped for the next one.
    """

    def __init__(self, name: str, targets: list[tuple[str, int]], port: int | None = None) -> None:
        self.name, self.targets = name, targets
        self.port = port or free_port()
        self._next = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.connections: Counter[int] = Counter()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True,
                                                  backlog=512)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def restore(self) -> None:
        await self.start()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            for _ in self.targets:
                index = self._next % len(self.targets)
                self._next += 1
                host, port = self.targets[index]
                try:
                    up_reader, upstream = await asyncio.open_connection(host, port)
                except OSError:
                    continue
                self.connections[index] += 1
                break
            if upstream is None:
                return
            self._open.add(upstream)
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._open.discard(w)
                    w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 << 10):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.transport.abort()


# --- what the load records ---------------------------------------------------------------------


@dataclass
class Outcome:
    op: str
    start: float
    end: float
    status: int  # 0: no HTTP answer (see code)
    code: str = ""  # the error's code, or what went wrong on the wire
    retry_after: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.code

    def label(self) -> str:
        return f"{self.status or 'no answer'} {self.code}".strip()


@dataclass
class Published:
    name: str
    version: str
    files: dict[str, tuple[str, int]]  # path -> (sha256, size)


@dataclass
class Outage:
    part: str  # "db" or "s3"
    how: str
    down: float = 0.0
    up: float = 0.0


@dataclass
class State:
    token: str
    packages: list[str]
    files: dict[tuple[str, str], dict[str, tuple[str, int]]] = field(default_factory=dict)
    published: list[Published] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # publishes that got no 2xx
    outcomes: list[Outcome] = field(default_factory=list)
    probes: list[tuple[float, int, int]] = field(default_factory=list)  # (t, replica, status)
    rss: list[tuple[float, int, int]] = field(default_factory=list)  # (t, replica, bytes)
    counter: int = 0
    yanked: set[tuple[str, str]] = field(default_factory=set)


def _files(rng: random.Random, large: bool) -> dict[str, bytes]:
    tag = f"{rng.getrandbits(64):x}"
    files = {"solver.py": f"class Detector:  # {tag}\n    pass\n".encode(),
             "README.md": f"# A soak package\n\nBuild {tag}.\n".encode()}
    files["weights.dat"] = rng.randbytes(LARGE if large else 64 << 10)
    return files


async def _error_code(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        return str(response.json()["error"]["code"])
    return "" if response.status_code < 400 else "no code"


async def publish(client: httpx.AsyncClient, name: str, version: str, files: dict[str, bytes]) -> httpx.Response:
    """Upload what the hub lacks, then publish ``name@version``: blobs up to 1 MiB in one batch
    (``POST /api/v1/blobs``, as ``cvflow publish`` sends them), larger ones through the
    resumable protocol."""
    text = manifest(name, version)
    contents = {"cvflow.toml": text.encode(), **files}
    digests = {p: hashlib.sha256(b).hexdigest() for p, b in contents.items()}
    check = await client.post("/api/v1/blobs/check", json={"digests": sorted(set(digests.values()))})
    if check.status_code != 200:
        return check
    missing = set(check.json()["missing"])
    small = {digests[p]: b for p, b in contents.items() if digests[p] in missing and len(b) <= 1 << 20}
    if small:
        body = b"".join(f"{d} {len(b)}\n".encode() + b for d, b in small.items())
        batch = await client.post("/api/v1/blobs", content=body, headers={"content-type": "application/octet-stream"})
        if batch.status_code != 201:
            return batch
        missing -= small.keys()
    for path, data in contents.items():
        if digests[path] not in missing:
            continue
        missing.discard(digests[path])
        created = await client.post("/api/v1/uploads", json={"size": len(data)})
        if created.status_code != 201:
            return created
        location = created.json()["location"]
        chunk = await client.patch(location, content=data, headers={"upload-offset": "0"})
        if chunk.status_code != 200:
            return chunk
        done = await client.post(location + "/finish", json={"sha256": digests[path]})
        if done.status_code != 201:
            return done
    entries = [{"path": p, "size": len(b), "sha256": digests[p]} for p, b in contents.items()]
    ns, pkg = name.split("/", 1)
    return await client.post(f"/api/v1/packages/{ns}/{pkg}/versions", json={"manifest": text, "files": entries})


async def run_op(op: str, client: httpx.AsyncClient, state: State, rng: random.Random) -> Outcome:
    name = rng.choice(state.packages)
    ns, pkg = name.split("/")
    versions = [v for (n, v) in state.files if n == name]
    version = rng.choice(versions)
    base = f"/api/v1/packages/{ns}/{pkg}"
    start = time.monotonic()
    outcome = Outcome(op, start, start, 0)
    response: httpx.Response | None = None
    try:
        if op == "meta":
            response = await client.get(base)
        elif op == "version":
            response = await client.get(f"{base}/versions/{version}")
        elif op == "search":
            response = await client.get("/api/v1/packages", params={"q": pkg[:6]})
        elif op == "page":
            path = rng.choice(["/", f"/search?q={pkg[:6]}"])
            response = await client.get(path, headers={"accept": "text/html"})
        elif op == "pkgpage":  # renders the version's README, read from the store
            response = await client.get(f"/{ns}/{pkg}/v/{version}", headers={"accept": "text/html"})
        elif op == "login":
            response = await client.post("/api/v1/auth/login", json={"username": NAMESPACE, "password": PASSWORD,
                                                                     "expires_in": 600})
        elif op == "yank":
            key = (name, version)
            action = "unyank" if key in state.yanked else "yank"
            response = await client.post(f"{base}/versions/{version}/{action}", json={"reason": "soak"})
            if response.status_code == 200:
                (state.yanked.discard if action == "unyank" else state.yanked.add)(key)
        elif op in ("small", "large"):
            path = "solver.py" if op == "small" else "weights.dat"
            version = rng.choice([v for (n, v) in state.files if n == name and
                                  (op == "small" or state.files[(n, v)][path][1] >= LARGE)] or [version])
            digest, size = state.files[(name, version)][path]
            hasher, got = hashlib.sha256(), 0
            async with client.stream("GET", f"{base}/versions/{version}/files/{path}") as response:
                outcome.status = response.status_code
                if response.status_code == 200:
                    try:
                        async for piece in response.aiter_bytes():
                            hasher.update(piece)
                            got += len(piece)
                    except httpx.HTTPError:
                        outcome.code = "cut mid-body"
                    else:
                        if got != size or hasher.hexdigest() != digest:
                            outcome.code = "wrong bytes"
                else:
                    await response.aread()
        elif op == "publish":
            state.counter += 1
            version = f"1.{state.counter}.0"
            files = _files(rng, large=rng.random() < 0.25)
            response = await publish(client, name, version, files)
            if 200 <= response.status_code < 300:
                record = {p: (hashlib.sha256(b).hexdigest(), len(b)) for p, b in files.items()}
                state.files[(name, version)] = record
                state.published.append(Published(name, version, record))
            else:
                state.refused.append((name, version))
        else:  # pragma: no cover
            raise AssertionError(op)
    except httpx.TimeoutException:
        outcome.code = "timeout"
    except httpx.HTTPError as exc:
        outcome.code = f"wire: {type(exc).__name__}"
    outcome.end = time.monotonic()
    if response is not None:
        outcome.status = response.status_code
        if response.status_code >= 300 or response.status_code < 200:
            outcome.code = outcome.code or await _error_code(response)
            if response.status_code == 503:
                outcome.retry_after = "retry-after" in response.headers
        if op in ("page", "pkgpage") and response.status_code == 503:
            outcome.code = outcome.code if outcome.code != "no code" else "page"
    return outcome


async def worker(client: httpx.AsyncClient, state: State, rng: random.Random, until: float, pause: float) -> None:
    ops, weights = list(WEIGHTS), list(WEIGHTS.values())
    while time.monotonic() < until:
        op = rng.choices(ops, weights)[0]
        state.outcomes.append(await run_op(op, client, state, rng))
        await asyncio.sleep(pause * rng.uniform(0.5, 1.5))


async def probe(urls: list[str], state: State, until: float) -> None:
    """Each replica's /readyz, directly, four times a second."""
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < until:
            async def one(i: int, url: str) -> None:
                try:
                    status = (await client.get(url + "/readyz")).status_code
                except httpx.HTTPError:
                    status = 0
                state.probes.append((time.monotonic(), i, status))
            await asyncio.gather(*(one(i, u) for i, u in enumerate(urls)))
            await asyncio.sleep(0.25)


async def sample_rss(pids: list[int], state: State, until: float) -> None:
    while time.monotonic() < until:
        now = time.monotonic()
        for i, pid in enumerate(pids):
            state.rss.append((now, i, tree_rss(pid)))
        await asyncio.sleep(2)


async def pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    argv = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    await asyncio.to_thread(subprocess.run, argv, check=True, capture_output=True)


async def wait_pg(timeout: float = 60) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            await asyncio.to_thread(lambda: psycopg.connect(PG_ADMIN, connect_timeout=2).close())
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def inject(outage: Outage, at: float, seconds: float, proxy: TcpProxy | None) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    print(f"[{time.strftime('%H:%M:%S')}] {outage.part} down ({outage.how})", flush=True)
    outage.down = time.monotonic()
    if outage.how == "cut":
        assert proxy is not None
        await proxy.cut()
        await asyncio.sleep(seconds)
        await proxy.restore()
    elif outage.how == "restart":
        await pg_ctl("restart")
        await wait_pg()
    else:  # stop
        try:
            await pg_ctl("stop")
            await asyncio.sleep(seconds)
        finally:
            await pg_ctl("start")
            await wait_pg()
    outage.up = time.monotonic()
    print(f"[{time.strftime('%H:%M:%S')}] {outage.part} back after {outage.up - outage.down:.1f} s", flush=True)


# --- set-up and checks ---------------------------------------------------------------------------


def create_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check_integrity(db_url: str, s3: Any, bucket: str) -> tuple[list[str], int, int]:
    """Problems with what is stored (rows whose bytes are missing), staged objects and open upload rows."""
    import psycopg

    problems: list[str] = []
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="hub/blobs/"):
        keys.update(obj["Key"].rsplit("/", 1)[-1] for obj in page.get("Contents", []))
    staged = sum(len(page.get("Uploads", [])) for page in
                 s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix="hub/uploads/"))
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        blobs = [r[0] for r in conn.execute("SELECT sha256 FROM blobs")]
        problems += [f"blob row {d[:12]} has no object in the store" for d in blobs if d not in keys]
        for name, version, count, files, size, total in conn.execute(
                "SELECT p.full_name, v.version, v.file_count, count(f.id), "
                "coalesce(sum(f.size), 0), v.total_size FROM versions v JOIN packages p ON p.id = v.package_id "
                "LEFT JOIN files f ON f.version_id = v.id GROUP BY p.full_name, v.version, v.file_count, "
                "v.total_size"):
            if count != files or size != total or not files:
                problems.append(f"{name}@{version}: {files} of {count} files, {size} of {total} bytes")
        for (digest,) in conn.execute("SELECT DISTINCT sha256 FROM files"):
            if digest not in keys:
                problems.append(f"file blob {digest[:12]} has no object in the store")
        uploads = conn.execute("SELECT count(*) FROM uploads").fetchone()
    return problems, staged, int(uploads[0]) if uploads else 0


async def verify_published(client: httpx.AsyncClient, state: State) -> list[str]:
    """Every publish that got a 2xx: each file downloads whole, with its digest."""
    problems: list[str] = []
    for item in state.published:
        ns, pkg = item.name.split("/")
        for path, (digest, size) in item.files.items():
            r = await client.get(f"/api/v1/packages/{ns}/{pkg}/versions/{item.version}/files/{path}")
            if r.status_code != 200 or len(r.content) != size or hashlib.sha256(r.content).hexdigest() != digest:
                problems.append(f"{item.name}@{item.version}/{path}: {r.status_code}, {len(r.content)} bytes")
    return problems


# --- the tables ----------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _mb(n: float) -> str:
    return f"{n / 1e6:.0f}"


def minute_rows(state: State, t0: float, minutes: int, replicas: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for m in range(minutes):
        lo, hi = t0 + 60 * m, t0 + 60 * (m + 1)
        done = [o for o in state.outcomes if lo <= o.end < hi]
        errors = Counter(o.label() for o in done if not o.ok)
        lat = [1000 * (o.end - o.start) for o in done]
        rss = []
        for i in range(replicas):
            samples = [b for (t, r, b) in state.rss if r == i and lo <= t < hi]
            rss.append(_mb(samples[-1]) if samples else "-")
        rows.append([m + 1, len(done), ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none",
                     f"{_pct(lat, 0.5):.0f}", f"{_pct(lat, 0.99):.0f}", *rss])
    return rows


def _overlaps(o: Outcome, outage: Outage) -> bool:
    return o.start <= outage.up and o.end >= outage.down


def recovery(state: State, outage: Outage, outages: list[Outage], replicas: int) -> float:
    """Seconds from the part's return until both replicas are ready and no request that began
    after it fails for want of that part."""
    last_bad = outage.up
    later = [w.down for w in outages if w.down > outage.up]
    horizon = min(later) if later else float("inf")  # failures after that are the next outage's
    for o in state.outcomes:
        if outage.up <= o.start and o.end < horizon and not o.ok and outage.part in NEEDS[o.op]:
            last_bad = max(last_bad, o.end)
    ready_at = outage.up
    for i in range(replicas):
        probes = sorted((t, s) for (t, r, s) in state.probes if r == i and t >= outage.up)
        bad = [t for t, s in probes if s != 200 and t < horizon]
        ready_at = max(ready_at, bad[-1] if bad else outage.up)
    return max(last_bad, ready_at) - outage.up


def target_rows(state: State, outages: list[Outage], replicas: int, t0: float,
                published_problems: list[str], integrity: list[str]) -> list[list[object]]:
    rows: list[list[object]] = []
    fivexx = [o for o in state.outcomes if o.status >= 500 and o.status != 503]
    rows.append(["no 500s", f"{len(fivexx)} of {len(state.outcomes)} answers", verdict(not fivexx)])
    in_window = [o for o in state.outcomes if not o.ok and any(_overlaps(o, w) for w in outages)]
    wanted = {OUTAGE_CODES["db"], OUTAGE_CODES["s3"]}
    wrong = [o for o in in_window if not (o.status == 503 and o.code in wanted | {"page"} and o.retry_after)
             and o.code != "cut mid-body"]
    cut = sum(o.code == "cut mid-body" for o in in_window)
    detail = Counter(o.label() for o in wrong)
    rows.append(["while a part is down, failures are 503 with a code and Retry-After",
                 f"{len(in_window) - len(wrong)} of {len(in_window)} ({cut} downloads cut mid-body after 200); "
                 f"other: {dict(detail) or 'none'}", verdict(not wrong)])
    for w in outages:
        needs_other = [o for o in state.outcomes if _overlaps(o, w) and w.part not in NEEDS[o.op]]
        ok = sum(o.ok for o in needs_other)
        if w.part == "s3":
            rows.append(["reads of only the database work while the store is down",
                         f"{ok} of {len(needs_other)}", verdict(ok == len(needs_other))])
        secs = recovery(state, w, outages, replicas)
        rows.append([f"recovers within {RECOVERY_TARGET:.0f} s after {w.part} ({w.how}, "
                     f"down {w.up - w.down:.1f} s)", f"{secs:.1f} s", verdict(secs <= RECOVERY_TARGET)])
    outside = [o for o in state.outcomes if not o.ok and not any(
        o.start <= w.up + RECOVERY_TARGET and o.end >= w.down for w in outages)]
    rows.append(["no failures outside the outages", f"{len(outside)}: "
                 f"{dict(Counter(o.label() for o in outside)) or 'none'}", verdict(not outside)])
    end = max((t for t, _, _ in state.rss), default=t0)
    for i in range(replicas):
        samples = [(t, b) for (t, r, b) in state.rss if r == i]
        # Medians of the second minute (after the first minute's warm-up) and of the last one:
        # one sample swings by a 4 MiB body or two in flight, so a single sample is no baseline.
        second = sorted(b for t, b in samples if t0 + 60 < t <= t0 + 120)
        last = sorted(b for t, b in samples if t > max(t0 + 120, end - 60))  # the last minute
        base = second[len(second) // 2] if second else 0
        settled = last[len(last) // 2] if last else base
        peak = max([b for t, b in samples if t > t0 + 60] or [base])
        growth = (settled - base) / base if base else 0.0
        rows.append([f"replica {i + 1} RSS flat: last minute's median < 1.1 x the second minute's median",
                     f"{_mb(base)} MB -> {_mb(settled)} MB ({growth:+.0%}; peak {_mb(peak)} MB)",
                     verdict(growth < 0.10)])
    rows.append(["every publish that got a 2xx is complete (files download, digests match)",
                 f"{len(state.published)} publishes, {len(published_problems)} problems"
                 + (f": {published_problems[:3]}" if published_problems else ""), verdict(not published_problems)])
    rows.append(["nothing half-written (version rows vs files, blob rows vs store)",
                 f"{len(integrity)} problems" + (f": {integrity[:3]}" if integrity else ""), verdict(not integrity)])
    return rows


# --- main ----------------------------------------------------------------------------------------


async def soak(args: argparse.Namespace, procs: Procs, work: Path, db_name: str) -> str:
    proxies: list[TcpProxy] = []
    try:
        return await _soak(args, procs, work, db_name, proxies)
    finally:
        for proxy in proxies:  # every piped connection ends before the loop does
            await proxy.cut()
        await asyncio.sleep(0.2)


async def _soak(args: argparse.Namespace, procs: Procs, work: Path, db_name: str, proxies: list[TcpProxy]) -> str:
    import boto3

    os.environ.update(AWS_ENV)
    quiet = Quiet()
    moto_port = free_port()
    moto = procs.start("moto", [tool("moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)])
    wait_http(f"http://127.0.0.1:{moto_port}/", moto)
    bucket = f"soak-{os.getpid()}"
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name=REGION)
    s3.create_bucket(Bucket=bucket)
    s3_proxy = TcpProxy("s3", [("127.0.0.1", moto_port)])
    await s3_proxy.start()
    proxies.append(s3_proxy)
    pg_proxy = None
    pg_host = "127.0.0.1:5432"
    if args.pg_fault == "cut":
        pg_proxy = TcpProxy("postgres", [("127.0.0.1", 5432)])
        await pg_proxy.start()
        proxies.append(pg_proxy)
        pg_host = f"127.0.0.1:{pg_proxy.port}"
    db_url = f"postgresql+psycopg://postgres@{pg_host}/{db_name}"
    env = {**AWS_ENV, "CVFLOW_HUB_DATABASE_URL": db_url,
           "CVFLOW_HUB_STORAGE_URL": f"s3://{bucket}/hub?endpoint=http://127.0.0.1:{s3_proxy.port}&region={REGION}",
           "CVFLOW_HUB_SECRET_KEY": "soak-" + os.urandom(16).hex()}
    hub = tool("cvflow-hub")
    admin_env = {**os.environ, **env, "CVFLOW_HUB_DATA_DIR": str(work / "admin")}
    def cli(*argv: str, stdin: str | None = None) -> str:
        done = subprocess.run([hub, *argv], env=admin_env, input=stdin, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"cvflow-hub {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    # In threads: the database may be behind this loop's proxy.
    await asyncio.to_thread(cli, "migrate")
    await asyncio.to_thread(cli, "user", "create", NAMESPACE, "--password-stdin", stdin=f"{PASSWORD}\n")
    token = (await asyncio.to_thread(cli, "token", "create", "--user", NAMESPACE)).strip().splitlines()[-1]
    ports = [free_port() for _ in range(args.replicas)]
    replicas = []
    for i, port in enumerate(ports):
        replicas.append(procs.start(f"hub{i + 1}", [hub, "serve", "--port", str(port), "--log-level", "warning"],
                                    env={**env, "CVFLOW_HUB_DATA_DIR": str(work / f"hub{i + 1}")}))
    for port, proc in zip(ports, replicas, strict=True):
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", proc)
    balancer = TcpProxy("balancer", [("127.0.0.1", p) for p in ports])
    await balancer.start()
    proxies.append(balancer)
    url = f"http://127.0.0.1:{balancer.port}"

    rng = random.Random(args.seed)
    state = State(token, [f"{NAMESPACE}/model-{i}" for i in range(5)])
    limits = httpx.Limits(max_connections=args.workers * 2, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"},
                                 timeout=args.timeout, limits=limits) as client:
        for name in state.packages:  # seed: every package has a version with a large file
            files = _files(rng, large=True)
            r = await publish(client, name, "1.0.0", files)
            if r.status_code != 201:
                raise RuntimeError(f"seeding {name} failed: {r.status_code} {r.text}")
            state.files[(name, "1.0.0")] = {p: (hashlib.sha256(b).hexdigest(), len(b)) for p, b in files.items()}
        print(f"soak: {args.replicas} replicas behind {url}, {args.workers} clients, {args.minutes} min", flush=True)
        cpu0 = [tree_cpu(p.pid) for p in replicas]
        t0 = time.monotonic()
        until = t0 + 60 * args.minutes
        span = until - t0
        outages = [Outage("s3", "cut"), Outage("db", args.pg_fault)]
        tasks: list[Awaitable[Any]] = [worker(client, state, random.Random(rng.random()), until, args.pause)
                                       for _ in range(args.workers)]
        tasks += [probe([f"http://127.0.0.1:{p}" for p in ports], state, until),
                  sample_rss([p.pid for p in replicas], state, until),
                  inject(outages[0], t0 + 0.35 * span, args.outage, s3_proxy),
                  inject(outages[1], t0 + 0.65 * span, args.outage, pg_proxy)]
        await asyncio.gather(*tasks)
        cpu = sum(tree_cpu(p.pid) for p in replicas) - sum(cpu0)
        published_problems = await verify_published(client, state)
    integrity, staged, upload_rows = await asyncio.to_thread(
        check_integrity, db_url.replace(pg_host, "127.0.0.1:5432"), s3, bucket)
    for proc in replicas:
        if proc.popen.poll() is not None:
            integrity.append(f"{proc.name} exited with {proc.popen.returncode}")
        RESULTS.mkdir(parents=True, exist_ok=True)  # the hubs' warnings, to tell why a request failed
        (RESULTS / f"soak-{proc.name}.log").write_bytes(proc.log.read_bytes())

    header = ["minute", "requests", "errors (status code: count)", "p50 ms", "p99 ms",
              *[f"RSS hub{i + 1} MB" for i in range(args.replicas)]]
    rows = minute_rows(state, t0, args.minutes, args.replicas)
    targets = target_rows(state, outages, args.replicas, t0, published_problems, integrity)
    ops = Counter(o.op for o in state.outcomes)
    notes = [
        "| target | measured | |", "| --- | --- | --- |",
        *[f"| {t} | {m} | {v} |" for t, m, v in targets], "",
        f"Faults: the store cut off at its proxy for {outages[0].up - outages[0].down:.1f} s "
        f"(connections closed and refused); the database by `{args.pg_fault}` "
        f"({outages[1].up - outages[1].down:.1f} s).",
        f"Load: {args.workers} clients, {args.pause * 1000:.0f} ms pauses; {len(state.outcomes)} requests "
        f"({', '.join(f'{k} {v}' for k, v in sorted(ops.items()))}); {len(state.published)} publishes with a 2xx, "
        f"{len(state.refused)} refused; balancer connections per replica {dict(balancer.connections)}.",
        f"Hub CPU: {cpu:.0f} s for {len(state.outcomes)} requests ({1000 * cpu / max(1, len(state.outcomes)):.1f} ms "
        f"per request, both replicas' process trees).",
        f"Left behind: {staged} staged multipart uploads and {upload_rows} upload sessions (resumable; "
        "`cvflow-hub gc` removes abandoned ones).",
        quiet.note(),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "soak-failures.txt").open("w") as out:  # every failed request, for a MISS
        marks = sorted([(w.down - t0, f"{w.part} down") for w in outages] + [(w.up - t0, f"{w.part} up") for w in outages])
        out.write(" ".join(f"{t:.1f}s {m}" for t, m in marks) + "\n")
        for o in sorted(state.outcomes, key=lambda o: o.start):
            if not o.ok:
                out.write(f"{o.start - t0:7.2f} {o.end - t0:7.2f} {o.op:8} {o.label()}"
                          f"{' retry-after' if o.retry_after else ''}\n")
    return report("soak", f"Soak: {args.replicas} replicas, PostgreSQL + S3, faults, {args.minutes} min",
                  header, rows, notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=6, help="concurrent clients")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds between a client's requests")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds each part is away")
    parser.add_argument("--pg-fault", choices=["restart", "stop", "cut"], default="restart")
    parser.add_argument("--timeout", type=float, default=60.0, help="a request's timeout")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.minutes < 3:
        parser.error("--minutes must be at least 3 (the faults need room; RSS compares the second minute with the last)")
    db_name = f"cvflow_soak_{os.getpid()}"
    create_database(db_name)
    try:
        with workdir("soak") as work, Procs(work) as procs:
            try:
                asyncio.run(soak(args, procs, work, db_name))
            except BaseException:
                for proc in procs.running:
                    print(f"--- {proc.name}\n{proc.tail(30)}", file=sys.stderr)
                raise
    finally:
        if args.pg_fault != "cut":
            with contextlib.suppress(subprocess.CalledProcessError):
                asyncio.run(pg_ctl("start"))  # whatever happened, leave the shared server running
            asyncio.run(wait_pg())
        drop_database(db_name)


if __name__ == "__main__":
    main()

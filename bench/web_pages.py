"""Server-side time per website page on a hub with 1,000 packages, with a bare Starlette app
rendering the same search template from memory (no database) as the peer.

The hub is seeded in-process through its own services (one transaction): 1,000 packages across a
user and an organisation, every task, tags and frameworks, zoo metrics on the classifiers, and one
package with 30 versions, a README, 20 files, dependencies, 50 dependents and 90 days of downloads.
Each page is then requested sequentially by calling the ASGI app directly (the whole middleware
stack, routing, database, templates; no socket and no HTTP parsing), so the time is what the
server spends. Target: p95 < 50 ms for every page.

    .venv/bin/python bench/web_pages.py [--requests 200] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import Quiet, report, verdict, workdir  # noqa: E402
from sqlmodel import select  # noqa: E402

from cvflow.manifest import TASKS  # noqa: E402
from hub.app import create_app  # noqa: E402
from hub.context import build_context  # noqa: E402
from hub.db import session_scope  # noqa: E402
from hub.models import DownloadCount, Package, Version, utcnow  # noqa: E402
from hub.security import Scopes  # noqa: E402
from hub.services import accounts, packages  # noqa: E402
from hub.services.blobs import insert_blob  # noqa: E402
from hub.settings import Settings  # noqa: E402

PACKAGES = 1_000
TARGET_MS = 50.0
STAR = "bench/model-0500"
FRAMEWORKS = ("torch", "onnx", "tensorflow", "opencv")
README = "\n".join(
    ["# A benchmark model", "", "Some *emphasis*, a [link](https://example.org) and a table:", "",
     "| split | accuracy | latency |", "| --- | --- | --- |"]
    + [f"| split-{i} | 0.{90 + i % 9} | {i}.5 ms |" for i in range(30)]
    + ["", "```python", *[f"result_{i} = model.infer(image_{i})" for i in range(40)], "```", ""]
    + [f"Paragraph {i}: " + "words " * 60 for i in range(20)]
)
PAGES = {
    "home": "/",
    "search, text query": "/search?q=model-04",
    "search, by task": "/search?task=classification",
    "search, tag + framework, page 3": "/search?tag=fast&framework=torch&sort=recent&page=3",
    "package (30 versions, README, 50 dependents)": f"/{STAR}",
    "package, older version": f"/{STAR}/v/1.0.3",
    "zoo index (counts per task)": "/zoo",
    "zoo, classification (chart + table)": "/zoo/classification",
    "user page (50 of 700 packages)": "/bench",
    "organisation page": "/lab",
}


def manifest(name: str, version: str, n: int, deps: dict[str, str] | None = None) -> str:
    task = sorted(TASKS)[n % len(TASKS)]
    lines = ["[package]", f'name = "{name}"', f'version = "{version}"',
             f'description = "Model number {n} for {task}, with a description of usual length"',
             f'task = "{task}"', f'tags = ["bench", "{"fast" if n % 3 else "accurate"}"]', 'license = "MIT"',
             f'framework = "{FRAMEWORKS[n % len(FRAMEWORKS)]}"', "", "[[solvers]]", 'name = "predict"',
             'class = "solver:Model"', 'description = "Predicts"']
    if deps:
        lines += ["", "[dependencies]", *[f'"{k}" = "{v}"' for k, v in deps.items()]]
    if task == "classification":
        lines += ["", "[metrics]", f"accuracy = {0.6 + (n % 37) / 100:.2f}", f"latency_ms = {1 + n % 50}",
                  f"memory_mb = {10 + (n * 7) % 400}"]
    return "\n".join(lines) + "\n"


def seed(settings: Settings) -> None:
    """1,000 packages in one transaction, through the same publish service the API uses."""
    ctx = build_context(settings)
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"size": len(data), "sha256": digest}

    solver = blob(b"class Model:\n    def infer(self, image):\n        return []\n")
    with session_scope(ctx.engine, write=True) as session:
        user = accounts.create_user(session, ctx.hasher, "bench", "bench password 123")
        accounts.create_org(session, user, "lab")
        who = accounts.Principal(user=user, scopes=Scopes.parse("read publish"))
        releases: list[tuple[str, str, int, dict[str, str] | None, list[dict[str, object]]]] = []
        for n in range(PACKAGES):
            name = f"bench/model-{n:04d}" if n < 700 else f"lab/model-{n:04d}"
            deps = {STAR: "^1.0"} if 600 <= n < 650 else None
            releases.append((name, "1.0.0", n, deps, []))
        extra = [{"path": f"weights/part-{i:02d}.bin", **blob(bytes([i]) * (1000 * (i + 1)))} for i in range(18)]
        readme = {"path": "README.md", **blob(README.encode())}
        for v in range(1, 30):
            releases.append((STAR, f"1.0.{v}", 500, {"bench/model-0001": "^1.0", "lab/model-0701": ">=1.0"},
                             [readme, *extra]))
        # Blobs first (the store, then their rows), then every version.
        for name, version, n, deps, _files in releases:
            blob(manifest(name, version, n, deps).encode())
        for digest, data in blobs.items():
            ctx.store.put_bytes(digest, data)
            insert_blob(session, digest, len(data))
        for name, version, n, deps, files in releases:
            text = manifest(name, version, n, deps)
            entries = [{"path": "cvflow.toml", **blob(text.encode())}, {"path": "solver.py", **solver}, *files]
            ns, pkg = name.split("/", 1)
            packages.publish(session, settings, who, ns, pkg, manifest_toml=text, files=entries)
        session.flush()
        versions = session.exec(
            select(Version.id).join(Package, Package.id == Version.package_id)  # type: ignore[arg-type]
            .where(Package.full_name == STAR)
        ).all()
        today = utcnow().date()
        for vid in versions:
            for d in range(90):
                session.add(DownloadCount(version_id=vid, day=today - timedelta(days=d), count=(vid * 7 + d) % 40))
    ctx.engine.dispose()


async def call(app: Callable[..., Awaitable[None]], url: str) -> tuple[int, int, float]:
    """One GET through the ASGI app; returns the status, body size and seconds."""
    path, _, query = url.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"bench.local"), (b"accept", b"text/html")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    status, size = 0, 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))

    start = time.perf_counter()
    await app(scope, receive, send)
    return status, size, time.perf_counter() - start


async def measure(app: Any, url: str, requests: int, warmup: int = 20) -> tuple[list[float], int]:
    for _ in range(warmup):
        status, size, _ = await call(app, url)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}")
    times = []
    for _ in range(requests):
        _, size, seconds = await call(app, url)
        times.append(seconds * 1000)
    return times, size


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bare_app() -> Any:
    """A bare Starlette app rendering the hub's own search template for 20 packages from memory."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from web.templating import env

    results = [{"name": f"bench/model-{n:04d}", "private": False, "description": f"Model number {n}",
                "task": "classification", "tags": ["bench", "fast"], "latest_version": "1.0.0", "downloads": n,
                "updated_at": "2026-01-01T00:00:00.000000Z"} for n in range(20)]
    found = {"total": 1000, "page": 1, "per_page": 20, "results": results}
    args = {"query": "model", "task": None, "tag": None, "framework": None, "sort": "downloads"}

    async def page(request: Request) -> HTMLResponse:
        html = env.get_template("search.html").render(request=request, user=None, csrf_token="", args=args,
                                                       found=found, pages=50, tasks=sorted(TASKS), error=None)
        return HTMLResponse(html)

    return Starlette(routes=[Route("/search", page)])


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"cvflow_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_backend(label: str, settings: Settings, requests: int) -> list[tuple[str, str, list[float], int]]:
    print(f"[{label}] seeding {PACKAGES} packages...", flush=True)
    started = time.perf_counter()
    seed(settings)
    print(f"[{label}] seeded in {time.perf_counter() - started:.1f} s; measuring...", flush=True)
    app = create_app(settings)
    out = []
    for title, url in PAGES.items():
        times, size = asyncio.run(measure(app, url, requests))
        out.append((label, title, times, size))
        print(f"[{label}] {title}: p50 {statistics.median(times):.1f} ms", flush=True)
    app.state.hub.engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="measured requests per page")
    parser.add_argument("--postgres", default="", help="an admin URL: also measure on a fresh PostgreSQL database")
    args = parser.parse_args()
    quiet = Quiet()
    measured: list[tuple[str, str, list[float], int]] = []
    with workdir("web") as tmp:
        common = {"environ": {}, "auto_migrate": True, "argon2_time_cost": 1, "argon2_memory_cost": 1024,
                  "secret_key": "bench"}
        measured += run_backend("SQLite", Settings.create(data_dir=tmp / "sqlite", **common), args.requests)  # type: ignore[arg-type]
        if args.postgres:
            with postgres_database(args.postgres) as url:
                settings = Settings.create(data_dir=tmp / "pg", database_url=url, **common)  # type: ignore[arg-type]
                measured += run_backend("PostgreSQL", settings, args.requests)
        bare_times, bare_size = asyncio.run(measure(bare_app(), "/search", args.requests))

    rows: list[list[object]] = [["bare Starlette + the search template, no database (peer)", "—",
                                 f"{statistics.median(bare_times):.2f}", f"{percentile(bare_times, 95):.2f}",
                                 f"{bare_size:,}", "", ""]]
    worst = 0.0
    for label, title, times, size in measured:
        p95 = percentile(times, 95)
        worst = max(worst, p95)
        rows.append([title, label, f"{statistics.median(times):.2f}", f"{p95:.2f}", f"{size:,}",
                     f"< {TARGET_MS:.0f}", verdict(p95 < TARGET_MS)])
    notes = [
        f"{PACKAGES:,} packages (700 in a user's namespace, 300 in an organisation's), every task, tags, frameworks; "
        f"`{STAR}` has 30 versions, 20 files, a {len(README.encode()):,}-byte README, 2 dependencies, "
        "50 dependents and 90 days of downloads per version.",
        f"{args.requests} sequential anonymous GETs per page after 20 warm-up requests, each timed around one call "
        "of the hub's ASGI app (middleware, routing, database, Jinja2): server-side time, no socket or HTTP parsing. "
        "The peer renders the same `search.html` for 20 packages from a dict.",
        f"Worst p95: {worst:.1f} ms against a target of {TARGET_MS:.0f} ms.",
        quiet.note(),
    ]
    report("web_pages", "Website pages: server-side time per page (ms)",
           ["page", "database", "p50 ms", "p95 ms", "bytes", "target p95", "result"], rows, notes)


if __name__ == "__main__":
    main()

"""Requests/s for GET /api/v1/packages/{ns}/{name} (a package with 50 versions), side by side
with a bare Starlette app answering the same bytes and headers (the framework's ceiling, on
the same server) and pypiserver's /simple/<name>/ page for 50 files; and for downloads of a
1.5 KiB cvflow.toml (each one a counted download) from the hub on SQLite and on PostgreSQL,
with the hub's own package document GET as the peer.

Every server is one process pinned to CPU 1, all running at once; wrk (one thread, 16
connections) runs on CPU 0 against each in turn, in rounds; each row keeps its best round.
Targets: the hub on uvicorn does >= 0.8x the bare Starlette app on uvicorn with a p99 at most
3x the bare app's; the download does >= 5,000 requests/s on both databases.

    .venv/bin/python bench/metadata_get.py [--seconds 4] [--rounds 2] [--connections 16]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH,
    HubSetup,
    Procs,
    Quiet,
    WrkResult,
    cpus,
    free_port,
    granian_argv,
    hub_client,
    hub_uvicorn_argv,
    manifest,
    prepare_hub,
    report,
    tool,
    tree_cpu,
    upload_blob,
    verdict,
    workdir,
    wrk,
)

VERSIONS = 50
TARGET = 0.8
P99_TARGET = 3.0  # the hub's p99 at most this many times the bare app's
DOWNLOAD_TARGET = 5_000  # requests/s
NAMESPACE, NAME = "bench", "detector"
PATH = f"/api/v1/packages/{NAMESPACE}/{NAME}"
SMALL = "bench/small"
#: A manifest padded with a comment to 1.5 KiB: every GET of it counts a download.
DOWNLOAD_PATH = f"/api/v1/packages/{SMALL}/versions/1.0.0/files/cvflow.toml"


def publish_versions(url: str, token: str, count: int) -> None:
    """Publish ``count`` versions the way the client does: check, upload what is missing, publish."""
    solver = b"class Detector:\n    def infer(self, image):\n        return []\n"
    with hub_client(url, token) as client:
        for n in range(count):
            version = f"1.0.{n}"
            text = manifest(f"{NAMESPACE}/{NAME}", version)
            files = {"cvflow.toml": text.encode(), "solver.py": solver}
            digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
            missing = client.post("/api/v1/blobs/check", json={"digests": list(digests.values())}).json()["missing"]
            for path, digest in digests.items():
                if digest in missing:
                    upload_blob(client, [files[path]], digest)
            entries = [{"path": p, "size": len(files[p]), "sha256": d} for p, d in digests.items()]
            r = client.post(f"/api/v1/packages/{NAMESPACE}/{NAME}/versions", json={"manifest": text, "files": entries})
            if r.status_code != 201:
                raise RuntimeError(f"publishing {version} failed: {r.status_code} {r.text}")


def publish_small(url: str, token: str) -> int:
    """``bench/small`` 1.0.0, whose cvflow.toml is 1,536 bytes; returns its size."""
    text = manifest(SMALL, "1.0.0")
    text += "# " + "x" * (1536 - len(text) - 3) + "\n"
    data = text.encode()
    digest = hashlib.sha256(data).hexdigest()
    with hub_client(url, token) as client:
        upload_blob(client, [data], digest)
        r = client.post(f"/api/v1/packages/{SMALL}/versions",
                        json={"manifest": text, "files": [{"path": "cvflow.toml", "size": len(data), "sha256": digest}]})
        if r.status_code != 201:
            raise RuntimeError(f"publishing {SMALL} failed: {r.status_code} {r.text}")
    return len(data)


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database for the run, dropped afterwards; its SQLAlchemy URL."""
    import psycopg

    name = f"cvflow_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield "postgresql+psycopg://" + admin_url.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_pypi_dir(root: Path, count: int) -> None:
    """``count`` tiny but real sdists, benchpkg-1.0.N.tar.gz."""
    root.mkdir()
    for n in range(count):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            data = f"Metadata-Version: 2.1\nName: benchpkg\nVersion: 1.0.{n}\n".encode()
            info = tarfile.TarInfo(f"benchpkg-1.0.{n}/PKG-INFO")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        (root / f"benchpkg-1.0.{n}.tar.gz").write_bytes(buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4, help="wrk duration per row and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all rows; each row keeps its best")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL database to create the run's own database from")
    args = parser.parse_args()
    server_cpu, client_cpu = cpus(1), cpus(0)
    quiet = Quiet()

    with workdir("metadata") as tmp, Procs(tmp) as procs, postgres_database(args.postgres) as pg_url:
        setup: HubSetup = prepare_hub(tmp / "hub")
        pids: dict[str, int] = {}

        def start(name: str, argv: list[str], ready: str, **kw: object) -> str:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = procs.serve(name, [*server_cpu, *[a.replace("{port}", str(port)) for a in argv]], url + ready, **kw)
            pids[url] = proc.pid
            return url

        # The hub as users run it (`cvflow-hub serve`: uvicorn, one process), and on Granian.
        hub = start("hub-uvicorn", hub_uvicorn_argv(setup, "{port}"), "/api/v1/openapi.json")
        print(f"publishing {VERSIONS} versions of {NAMESPACE}/{NAME}...", flush=True)
        publish_versions(hub, setup.token, VERSIONS)
        small_size = publish_small(hub, setup.token)
        # The same hub on PostgreSQL (the CLI that makes its user and token reads the variable too).
        os.environ["CVFLOW_HUB_DATABASE_URL"] = pg_url
        try:
            subprocess.run([tool("cvflow-hub"), "--data-dir", str(tmp / "hub-pg"), "migrate"], check=True,
                           capture_output=True)
            pg_setup = prepare_hub(tmp / "hub-pg")
        finally:
            del os.environ["CVFLOW_HUB_DATABASE_URL"]
        hub_pg = start("hub-pg-uvicorn", hub_uvicorn_argv(pg_setup, "{port}"), "/api/v1/openapi.json",
                       env={"CVFLOW_HUB_DATABASE_URL": pg_url})
        publish_small(hub_pg, pg_setup.token)
        doc = httpx.get(hub + PATH)
        doc.raise_for_status()
        assert len(doc.json()["versions"]) == VERSIONS, doc.text[:200]
        etag = doc.headers["etag"]
        hub_granian = start("hub-granian", granian_argv("hub.app:app_from_env", "{port}"),
                            "/api/v1/openapi.json", env=setup.env)

        # The bare app answers the hub's exact body with the same headers (the server adds its own).
        body_file = tmp / "document.json"
        body_file.write_bytes(doc.content)
        copied = [f"{k}: {v}" for k, v in doc.headers.multi_items() if k not in {"date", "server", "content-length"}]
        bare_env = {"BENCH_BODY": str(body_file), "BENCH_HEADERS": "\n".join(copied)}
        bare = start("bare-uvicorn", [sys.executable, str(BENCH / "_servers.py"), "bare", "{port}"], PATH, env=bare_env)
        bare_granian = start("bare-granian", granian_argv("_servers:bare_from_env", "{port}",
                                                          working_dir=BENCH), PATH, env=bare_env)
        for url in (hub_granian, bare, bare_granian):
            got = httpx.get(url + PATH)
            names = {k for k in got.headers if k not in {"date", "server"}}
            if got.content != doc.content or names != {k for k in doc.headers if k not in {"date", "server"}}:
                raise RuntimeError(f"{url} answers other bytes or headers than the hub did: {got.headers}")

        # pypiserver's simple page for the same number of versions, on its own server and on Granian.
        pypi_root = tmp / "pypi"
        make_pypi_dir(pypi_root, VERSIONS)
        simple = "/simple/benchpkg/"
        pypi = start("pypiserver", [tool("pypi-server"), "run", "-p", "{port}", "-i", "127.0.0.1", "--log-stream",
                                    "none", str(pypi_root)], simple)
        pypi_granian = start("pypiserver-granian", granian_argv("_servers:pypi_from_env", "{port}",
                                                                interface="wsgi", working_dir=BENCH),
                             simple, env={"BENCH_PYPI_ROOT": str(pypi_root)})
        page = httpx.get(pypi + simple)
        assert page.status_code == 200 and page.text.count("benchpkg-1.0.") >= VERSIONS, page.text[:300]

        targets: dict[str, tuple[str, dict[str, str]]] = {
            "bare-uvicorn": (bare + PATH, {}),
            "hub-uvicorn": (hub + PATH, {}),
            "hub-uvicorn-304": (hub + PATH, {"If-None-Match": etag}),
            "bare-granian": (bare_granian + PATH, {}),
            "hub-granian": (hub_granian + PATH, {}),
            "hub-granian-304": (hub_granian + PATH, {"If-None-Match": etag}),
            "pypi-own": (pypi + simple, {}),
            "pypi-granian": (pypi_granian + simple, {}),
            "download-sqlite": (hub + DOWNLOAD_PATH, {}),
            "download-pg": (hub_pg + DOWNLOAD_PATH, {}),
        }
        results: dict[str, WrkResult] = {}
        cpu_ms: dict[str, float] = {}
        served = {"download-sqlite": 0, "download-pg": 0}
        for n in range(args.rounds):
            print(f"round {n + 1} of {args.rounds}...", flush=True)
            for key, (url, headers) in targets.items():
                pid = pids[url.split("/api/", 1)[0].split("/simple/", 1)[0]]
                warm = wrk(url, seconds=1, connections=args.connections, cpu=client_cpu, headers=headers, warmup=0)
                cpu0 = tree_cpu(pid)
                run = wrk(url, seconds=args.seconds, connections=args.connections, cpu=client_cpu, headers=headers,
                          warmup=0)
                used = tree_cpu(pid) - cpu0
                if key in served:
                    served[key] += warm.requests + run.requests
                if key not in results or run.rps > results[key].rps:
                    results[key] = run
                    cpu_ms[key] = 1000 * used / max(1, run.requests)
        # Downloads are counted in memory and written every second or so: all of them, soon.
        time.sleep(3)
        counted = {key: int(httpx.get(url + DOWNLOAD_PATH.split("/files/")[0]).json()["downloads"])
                   for key, url in (("download-sqlite", hub), ("download-pg", hub_pg))}

    r = results

    def row(label: str, key: str, peer: str, target: str = "", ok: bool | None = None) -> list[str]:
        res, ratio = r[key], r[key].rps / r[peer].rps
        suffix = " (Granian)" if peer.endswith("granian") else " (hub GET)" if peer == "hub-uvicorn" else ""
        return [label, f"{res.rps:,.0f}", f"{res.p50_ms:.2f}", f"{res.p99_ms:.2f}", f"{cpu_ms[key]:.3f}",
                f"{res.errors}", f"{ratio:.2f}{suffix}", target, verdict(ok) if ok is not None else ""]

    hub_ratio = r["hub-uvicorn"].rps / r["bare-uvicorn"].rps
    p99_ratio = r["hub-uvicorn"].p99_ms / r["bare-uvicorn"].p99_ms
    p99_row = ["hub, uvicorn: p99 against the bare app's", "", "", f"{r['hub-uvicorn'].p99_ms:.2f}", "", "",
               f"{p99_ratio:.2f}x the bare p99", f"p99 <= {P99_TARGET:g}x", verdict(p99_ratio <= P99_TARGET)]
    rows = [
        row("bare Starlette, uvicorn (ceiling)", "bare-uvicorn", "bare-uvicorn"),
        row("**hub, uvicorn** (`cvflow-hub serve`)", "hub-uvicorn", "bare-uvicorn", f">= {TARGET}", hub_ratio >= TARGET),
        p99_row,
        row("hub, uvicorn, If-None-Match (304)", "hub-uvicorn-304", "bare-uvicorn"),
        row("bare Starlette, Granian", "bare-granian", "bare-granian"),
        row("hub, Granian", "hub-granian", "bare-granian"),
        row("hub, Granian, If-None-Match (304)", "hub-granian-304", "bare-granian"),
        row("pypiserver `/simple/benchpkg/`, its own server", "pypi-own", "bare-uvicorn"),
        row("pypiserver `/simple/benchpkg/`, Granian WSGI", "pypi-granian", "bare-granian"),
        row(f"**download {small_size:,} B cvflow.toml, hub on SQLite**", "download-sqlite", "hub-uvicorn",
            f">= {DOWNLOAD_TARGET:,}/s", r["download-sqlite"].rps >= DOWNLOAD_TARGET),
        row(f"**download {small_size:,} B cvflow.toml, hub on PostgreSQL**", "download-pg", "hub-uvicorn",
            f">= {DOWNLOAD_TARGET:,}/s", r["download-pg"].rps >= DOWNLOAD_TARGET),
    ]
    notes = [
        f"`GET {PATH}`, anonymous, {VERSIONS} versions, {len(doc.content):,}-byte JSON document "
        f"(pypiserver page: {len(page.content):,} bytes for {VERSIONS} files).",
        f"Downloads: `GET {DOWNLOAD_PATH}`, anonymous; each one counts a download of the version. Counted by the "
        f"hubs 3 s after the last request: SQLite {counted['download-sqlite']:,}, PostgreSQL "
        f"{counted['download-pg']:,}, of {served['download-sqlite']:,} and {served['download-pg']:,} answers wrk "
        "completed (wrk does not count answers still in flight when it stops).",
        f"wrk -t1 -c{args.connections} -d{args.seconds}s after a 1 s warm-up, {args.rounds} rounds over all rows, "
        "best round kept (its p50/p99 shown); every server is one process pinned to CPU 1, wrk is pinned to CPU 0. "
        "Ratios are against the bare Starlette app on the same server (downloads: against the hub's document GET). "
        "CPU ms/req: the server's process tree CPU time over the measured run, per request. "
        "pypiserver's own server is whichever `--server auto` picks (wsgiref when paste/cherrypy/twisted are absent).",
        quiet.note(),
    ]
    report("metadata_get", "GET package document and small downloads (requests/s)",
           ["server", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "errors", "vs peer", "target", "result"], rows, notes)


if __name__ == "__main__":
    main()

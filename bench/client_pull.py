"""`cvflow pull` of a package of 10 files x 100 MiB from the hub on loopback, side by side with
curl fetching the same 10 stored files in parallel from nginx (sendfile), then the bytes a
re-pull moves after one of the 10 files changed.

The package is published once with `cvflow publish` to `cvflow-hub serve`. In each round every
row downloads all 10 files into a fresh directory (a fresh CVFLOW_HOME for cvflow), which is
removed and synced away before the next row; each row keeps its best round. Targets: `cvflow
pull` >= 0.8x the GB/s of nginx + curl then fsyncing each file, and with CVFLOW_CACHE_FSYNC=0
>= 0.8x nginx + curl writing the files. Then 1.0.1 is published with one file replaced, and a
fresh cache pulls 1.0.0 and then 1.0.1 through an nginx proxy that logs `$bytes_sent`: the
re-pull must move about one file (<= 1.05x of 100 MiB).

A second table pulls a package of 10,000 files of 4 KiB (published with `cvflow publish`,
whose time the notes give, or seeded in-process with `--seed-small`) side by side with nginx +
`curl --parallel`: files/s and CPU ms per file.

    .venv/bin/python bench/client_pull.py [--files 10] [--size-mib 100] [--small-files 10000]
        [--seed-small] [--dir PATH] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Procs,
    Quiet,
    free_port,
    hub_uvicorn_argv,
    manifest,
    nginx_argv,
    nginx_conf,
    prepare_hub,
    report,
    tool,
    tree_cpu,
    verdict,
    workdir,
)

RATIO_TARGET = 0.8
REPULL_SLACK = 1.05  # bytes a re-pull may move, as a multiple of the one changed file
ROUNDS = 2
NAME = "bench/shards"
SMALL_NAME = "bench/pieces"
SMALL_SIZE = 4 << 10
CURL_PARALLEL = 16
SOLVER = b"class Detector:\n    def infer(self, image):\n        return []\n"


def cvflow_run(home: Path, hub: str, *args: str, token: str | None = None,
               extra_env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The installed ``cvflow`` command with its own CVFLOW_HOME; fails loudly on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVFLOW_") and k != "XDG_DATA_HOME"}
    env.update(CVFLOW_HOME=str(home), CVFLOW_HUB=hub, **({"CVFLOW_TOKEN": token} if token else {}),
               **(extra_env or {}))
    done = subprocess.run([tool("cvflow"), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"cvflow {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return done


def write_package(root: Path, version: str, shards: dict[str, bool], size: int) -> None:
    """A package dir with ``shards`` as weights; those marked True get ``size`` fresh random bytes."""
    (root / "weights").mkdir(parents=True, exist_ok=True)
    (root / "cvflow.toml").write_text(manifest(NAME, version, weights=list(shards)))
    (root / "solver.py").write_bytes(SOLVER)
    for rel, fresh in shards.items():
        if fresh:
            with (root / rel).open("wb") as f:
                for offset in range(0, size, 64 << 20):  # never the whole file in memory
                    f.write(os.urandom(min(64 << 20, size - offset)))


@dataclass
class Row:
    """One way to fetch the files: what it runs, whose CPU counts as the server's, and the best round."""

    run: Callable[[Path], object]
    server_pid: int
    best_s: float = float("inf")
    server_cpu: float = 0.0  # seconds per round, summed over rounds
    client_cpu: float = 0.0
    rounds: int = 0

    def measure(self, out: Path) -> None:
        server, children, own = tree_cpu(self.server_pid), _children_cpu(), time.process_time()
        start = time.perf_counter()
        self.run(out)
        self.best_s = min(self.best_s, time.perf_counter() - start)
        self.server_cpu += tree_cpu(self.server_pid) - server
        self.client_cpu += _children_cpu() - children + time.process_time() - own
        self.rounds += 1


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def drop(path: Path) -> None:
    """Remove a downloaded copy and flush dirty pages, so the next row does not pay for this one's writeback."""
    shutil.rmtree(path, ignore_errors=True)
    os.sync()


def curl_parallel(urls: list[str], dest: Path | None, sizes: list[int], *, fsync: bool = False) -> None:
    """One curl per URL, all at once, to files in ``dest`` (or /dev/null); ``fsync`` each file after."""
    if dest is not None:
        dest.mkdir(parents=True)
    argvs = [[tool("curl"), "-sf", "-o", str(dest / f"f{i}") if dest else "/dev/null", "-w", "%{size_download}", u]
             for i, u in enumerate(urls)]
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, text=True) for a in argvs]
    outs = [(p.communicate(timeout=300)[0], p.returncode) for p in procs]
    for (out, rc), size, url in zip(outs, sizes, urls, strict=True):
        if rc != 0 or int(out or 0) != size:
            raise RuntimeError(f"curl {url}: exit {rc}, {out} of {size} bytes")
    if fsync and dest is not None:
        for path in sorted(dest.iterdir()):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def pulled(home: Path, name: str, version: str, names: list[str], sizes: list[int]) -> None:
    snap = home / "cache" / "snapshots" / Path(name) / version
    for rel, size in zip(names, sizes, strict=True):
        if (snap / rel).stat().st_size != size:
            raise RuntimeError(f"{snap / rel} has the wrong size")


def curl_list(urls: list[str], dest: Path, sizes: list[int], *, parallel: int) -> None:
    """One ``curl --parallel`` over a config file of every URL (keep-alive connections), to files in ``dest``."""
    dest.mkdir(parents=True)
    config = dest.parent / f"{dest.name}.curl"
    config.write_text("".join(f'url = "{u}"\noutput = "{dest / f"f{i}"}"\n' for i, u in enumerate(urls)))
    done = subprocess.run([tool("curl"), "-sf", "--parallel", "--parallel-max", str(parallel), "--config",
                           str(config)], capture_output=True, timeout=600)
    config.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"curl --parallel exited {done.returncode}: {done.stderr[-500:]!r}")
    got = sorted(p.stat().st_size for p in dest.iterdir())
    if got != sorted(sizes):
        raise RuntimeError(f"curl --parallel fetched {len(got)} files of the wrong sizes")


def write_small_package(root: Path, count: int, size: int) -> list[str]:
    """A package of ``count`` random files of ``size`` bytes under ``data/`` (no weights); their paths."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "cvflow.toml").write_text(manifest(SMALL_NAME, "1.0.0"))
    (root / "solver.py").write_bytes(SOLVER)
    names = [f"data/{i // 1000:02d}/{i:05d}.bin" for i in range(count)]
    for rel in names:
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_bytes(os.urandom(size))
    return names


def seed_small(env: Env, pkg: Path, names: list[str]) -> None:
    """Publish the small-file package in-process: every blob stored, then one ``packages.publish``
    (``--seed-small``: the pull rows without the publish before them)."""
    import hashlib

    from sqlmodel import select

    from hub.context import build_context
    from hub.db import session_scope
    from hub.models import User
    from hub.security import Scopes
    from hub.services import packages
    from hub.services.accounts import Principal
    from hub.services.blobs import grant, insert_blob, user_holder
    from hub.settings import Settings

    settings = Settings.create(data_dir=env.data_dir, environ={})
    ctx = build_context(settings)
    try:
        files: list[dict[str, object]] = []
        sizes: dict[str, int] = {}
        for rel in ["cvflow.toml", "solver.py", *names]:
            data = (pkg / rel).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            ctx.uploads.store.put_bytes(digest, data)
            files.append({"path": rel, "size": len(data), "sha256": digest})
            sizes[digest] = len(data)
        namespace, short = SMALL_NAME.split("/")
        with session_scope(ctx.engine, write=True) as session:
            user = session.exec(select(User).where(User.name == namespace)).one()
            for digest, size in sizes.items():
                insert_blob(session, digest, size)
            grant(session, user_holder(user.id), sizes)
        with session_scope(ctx.engine, write=True) as session:
            packages.publish(session, settings, Principal(user=user, scopes=Scopes.parse("publish")), namespace,
                             short, manifest_toml=(pkg / "cvflow.toml").read_text(), files=files)
    finally:
        ctx.engine.dispose()


def library_pull(home: Path, hub: str, spec: str, *, fsync: bool, workers: int = 4) -> None:
    """``cvflow.pull.pull`` in this process with ``Cache(fsync=...)``."""
    from cvflow.api import HubClient
    from cvflow.cache import Cache
    from cvflow.pull import pull

    with HubClient(hub) as client:
        pull(client, Cache(home / "cache", fsync=fsync), spec, workers=workers)


def proxy_log(log: Path, since: int) -> tuple[int, int, int]:
    """(requests, bytes sent, of which file bodies) logged by the counting proxy after offset ``since``."""
    lines = log.read_bytes()[since:].decode().splitlines()
    total = files = 0
    for line in lines:
        _method, uri, _status, sent = line.split()
        total += int(sent)
        files += int(sent) if "/files/" in uri else 0
    return len(lines), total, files


def blob_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "cache" / "blobs" / "sha256").glob("*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10, help="large files (0: skip that table)")
    parser.add_argument("--size-mib", type=int, default=100, help="size of each large file")
    parser.add_argument("--small-files", type=int, default=10_000, help="4 KiB files (0: skip that table)")
    parser.add_argument("--seed-small", action="store_true",
                        help="seed the small files in-process instead of publishing them with `cvflow publish`")
    parser.add_argument("--dir", help="where the hub, the package and the downloads go (default: the system temp dir)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds over all rows; each keeps its best")
    args = parser.parse_args()
    quiet = Quiet()

    with workdir("client-pull", args.dir) as tmp, Procs(tmp) as procs:
        setup = prepare_hub(tmp / "hub")
        hub_port, nginx_port = free_port(), free_port()
        hub = f"http://127.0.0.1:{hub_port}"
        server = procs.serve("hub", hub_uvicorn_argv(setup, hub_port), hub + "/api/v1/openapi.json")
        # One nginx: the stored blobs directly (the peer), and a proxy to the hub that logs bytes sent.
        proxy_log_path = tmp / "proxy-bytes.log"
        locations = (f"        location /blobs/ {{ alias {setup.storage}/blobs/sha256/; }}\n"
                     f"        location / {{ proxy_pass {hub}; proxy_buffering off; proxy_http_version 1.1;\n"
                     f"            proxy_set_header Connection \"\"; proxy_set_header Host $host;\n"
                     f"            access_log {proxy_log_path} bytes; }}\n")
        conf = nginx_conf(tmp, nginx_port, locations,
                          extra_http="log_format bytes '$request_method $request_uri $status $bytes_sent';")
        proxy = f"http://127.0.0.1:{nginx_port}"
        nginx = procs.serve("nginx", nginx_argv(conf), proxy + "/api/v1/openapi.json")
        env = Env(tmp, setup.data_dir, setup.token, hub, proxy, server.pid, nginx.pid, proxy_log_path, args.rounds)
        if args.files > 0:
            large_files(env, args.files, args.size_mib << 20, quiet)
        if args.small_files > 0:
            small_files(env, args.small_files, quiet, publish=not args.seed_small)


@dataclass
class Env:
    """What both tables share: the work dir, the hub and its token, nginx, the rounds."""

    tmp: Path
    data_dir: Path
    token: str
    hub: str
    proxy: str
    hub_pid: int
    nginx_pid: int
    proxy_log: Path
    rounds: int

    def blob_url(self, digest: str) -> str:
        return f"{self.proxy}/blobs/{digest[:2]}/{digest}"


def large_files(env: Env, count: int, size: int, quiet: Quiet) -> None:
    tmp, hub, proxy, proxy_log_path, setup_token = env.tmp, env.hub, env.proxy, env.proxy_log, env.token
    total = size * count
    size_mib = size >> 20
    names = [f"weights/shard-{i:02d}.dat" for i in range(count)]
    pkg = tmp / "package"
    print(f"writing {count} x {size_mib} MiB of random bytes and publishing {NAME}@1.0.0...", flush=True)
    write_package(pkg, "1.0.0", dict.fromkeys(names, True), size)
    start = time.perf_counter()
    cvflow_run(tmp / "publisher", hub, "publish", str(pkg), "--json", "-q", token=setup_token, timeout=600)
    publish_s = time.perf_counter() - start
    doc = httpx.get(f"{hub}/api/v1/packages/{NAME}/versions/1.0.0").raise_for_status().json()
    digests = {f["path"]: f["sha256"] for f in doc["files"]}
    blob_urls = [env.blob_url(digests[n]) for n in names]

    spec = f"{NAME}@1.0.0"
    server_pid, nginx_pid = env.hub_pid, env.nginx_pid
    rows = {
        "curl-files": Row(lambda out: curl_parallel(blob_urls, out, [size] * count), nginx_pid),
        "curl-fsync": Row(lambda out: curl_parallel(blob_urls, out, [size] * count, fsync=True), nginx_pid),
        "curl-null": Row(lambda out: curl_parallel(blob_urls, None, [size] * count), nginx_pid),
        "cli-j4": Row(lambda out: cvflow_run(out, hub, "pull", spec, "-q"), server_pid),
        "cli-j10": Row(lambda out: cvflow_run(out, hub, "pull", spec, "-q", "-j", str(count)), server_pid),
        "cli-nofsync": Row(lambda out: cvflow_run(out, hub, "pull", spec, "-q",
                                                  extra_env={"CVFLOW_CACHE_FSYNC": "0"}), server_pid),
        "lib-nofsync": Row(lambda out: library_pull(out, hub, spec, fsync=False), server_pid),
    }
    for n in range(env.rounds):
        print(f"round {n + 1} of {env.rounds}...", flush=True)
        for key, row in rows.items():
            out = tmp / f"out-{key}"
            row.measure(out)
            if key.startswith(("cli", "lib")):
                pulled(out, NAME, "1.0.0", names, [size] * count)
            drop(out)

    # The re-pull: 1.0.1 with one shard replaced, pulled after 1.0.0 into the same cache.
    print("publishing 1.0.1 with one file changed, then pulling 1.0.0 and 1.0.1 through the proxy...", flush=True)
    changed = names[count // 2]
    write_package(pkg, "1.0.1", {n: n == changed for n in names}, size)
    published = json.loads(cvflow_run(tmp / "publisher", hub, "publish", str(pkg), "--json", "-q",
                                      token=setup_token).stdout)
    uploaded = [u["path"] for u in published["uploaded"]]
    home = tmp / "repull-home"
    offset = proxy_log_path.stat().st_size if proxy_log_path.exists() else 0
    start = time.perf_counter()
    cvflow_run(home, proxy, "pull", spec, "-q")
    first_s = time.perf_counter() - start
    first, blobs_first = proxy_log(proxy_log_path, offset), blob_bytes(home)
    offset = proxy_log_path.stat().st_size
    start = time.perf_counter()
    cvflow_run(home, proxy, "pull", f"{NAME}@1.0.1", "-q")
    again_s = time.perf_counter() - start
    again, blobs_again = proxy_log(proxy_log_path, offset), blob_bytes(home) - blobs_first
    pulled(home, NAME, "1.0.1", names, [size] * count)

    base = rows["curl-files"].best_s

    def gbps(seconds: float) -> str:
        return f"{total / seconds / 1e9:.2f}"

    def speed_row(label: str, key: str, peer: str | None = None) -> list[str]:
        """``peer``: the row whose speed this one's target is a fraction of."""
        row = rows[key]
        ratio = base / row.best_s
        gib = total / (1 << 30) * row.rounds
        cells = [label, f"{row.best_s:.2f}", gbps(row.best_s), f"{ratio:.2f}",
                 f"{row.server_cpu / gib:.2f} / {row.client_cpu / gib:.2f}", ""]
        if peer is None:
            return [*cells, "", ""]
        of_peer = rows[peer].best_s / row.best_s
        what = "curl" if peer == "curl-files" else "curl + fsync"
        return [*cells, f">= {RATIO_TARGET}x {what} ({of_peer:.2f}x)", verdict(of_peer >= RATIO_TARGET)]

    repull_ok = again[1] <= REPULL_SLACK * size
    table = [
        speed_row(f"nginx + {count} curl at once, to files (the peer)", "curl-files"),
        speed_row(f"nginx + {count} curl at once, to files, then fsync each", "curl-fsync"),
        speed_row(f"nginx + {count} curl at once, to /dev/null", "curl-null"),
        speed_row("**`cvflow pull`** (CLI defaults: -j 4, fsync on)", "cli-j4", peer="curl-fsync"),
        speed_row(f"`cvflow pull -j {count}`", "cli-j10"),
        speed_row("**`CVFLOW_CACHE_FSYNC=0 cvflow pull`**", "cli-nofsync", peer="curl-files"),
        speed_row("library `pull()`, `Cache(fsync=False)`, 4 workers", "lib-nofsync"),
        [f"`cvflow pull {spec}`, fresh cache, through the counting proxy", f"{first_s:.2f}", gbps(first_s), "",
         "", f"{first[1]:,} in {first[0]} requests ({first[2]:,} file bodies)", "", ""],
        [f"**re-pull `@1.0.1`** ({changed} changed), same cache", f"{again_s:.2f}", "", "", "",
         f"{again[1]:,} in {again[0]} requests ({again[2]:,} file bodies); cache blobs +{blobs_again:,}",
         f"<= {REPULL_SLACK} x {size:,}", verdict(repull_ok)],
    ]
    notes = [
        f"{count} random files of {size_mib} MiB ({total / 1e9:.2f} GB) plus `cvflow.toml` and `solver.py`, "
        f"published with `cvflow publish` ({publish_s:.1f} s, {total / publish_s / 1e9:.2f} GB/s) to `cvflow-hub "
        "serve` (uvicorn, one process, data dir on the same disk); the stored blobs are in the page cache. "
        f"GB/s = the {count} files' bytes / wall time (1 GB = 10^9 bytes). "
        f"{env.rounds} rounds over all rows, best kept; each row starts from an empty destination, which is "
        "deleted and `sync`ed afterwards. The cvflow rows run the installed command in a child process "
        "(interpreter start-up included) and check every sha256 while writing; curl checks nothing.",
        "",
        "CPU s/GiB: user + system seconds per GiB fetched, averaged over the rounds: the server's (nginx, or the "
        "hub's process) and the client's (the curl processes, the `cvflow` process, or this process for the "
        "library row). It moves much less under other load than GB/s does; on two CPUs the client's and the "
        "server's CPU together bound the wall time.",
        "",
        "fsync: the cache fsyncs each downloaded blob before renaming it into place unless "
        "`CVFLOW_CACHE_FSYNC=0`; the library row runs `cvflow.pull.pull` with `Cache(fsync=False)` in this "
        "process (no interpreter start-up).",
        "",
        f"Re-pull: a fresh CVFLOW_HOME pulls 1.0.0, then 1.0.1, through an nginx proxy in front of the hub; bytes "
        f"= nginx's `$bytes_sent` (headers + bodies) summed over every request of that pull. `cvflow publish` of "
        f"1.0.1 uploaded {uploaded}.",
        "",
        quiet.note(),
    ]
    report("client_pull", f"`cvflow pull`: {count} x {size_mib} MiB on loopback",
           ["what", "best s", "GB/s", "vs nginx + curl", "CPU s/GiB server / client", "bytes sent by the server",
            "target", "result"],
           table, notes)




def small_files(env: Env, count: int, quiet: Quiet, *, publish: bool) -> None:
    """``count`` files of 4 KiB: cvflow pull against curl --parallel over keep-alive connections."""
    tmp, hub = env.tmp, env.hub
    pkg = tmp / "small-package"
    print(f"writing {count:,} files of {SMALL_SIZE >> 10} KiB and publishing {SMALL_NAME}@1.0.0...", flush=True)
    names = write_small_package(pkg, count - 2, SMALL_SIZE)  # with cvflow.toml and solver.py: count files
    start = time.perf_counter()
    if publish:
        cvflow_run(tmp / "publisher", hub, "publish", str(pkg), "--json", "-q", token=env.token, timeout=3600)
    else:
        seed_small(env, pkg, names)
    publish_s = time.perf_counter() - start
    how = "with `cvflow publish`" if publish else "in-process (blobs stored, then `hub.services.packages.publish`)"
    doc = httpx.get(f"{hub}/api/v1/packages/{SMALL_NAME}/versions/1.0.0", timeout=60).raise_for_status().json()
    files = doc["files"]  # the 4 KiB files, cvflow.toml and solver.py: every row fetches them all
    if not set(names) <= {f["path"] for f in files}:
        raise RuntimeError(f"{SMALL_NAME}@1.0.0 lacks some of the files published")
    urls, sizes = [env.blob_url(f["sha256"]) for f in files], [int(f["size"]) for f in files]
    spec = f"{SMALL_NAME}@1.0.0"

    def curl_then_sync(out: Path) -> None:
        curl_list(urls, out, sizes, parallel=CURL_PARALLEL)
        os.sync()

    rows = {
        "curl": Row(lambda out: curl_list(urls, out, sizes, parallel=CURL_PARALLEL), env.nginx_pid),
        "curl-sync": Row(curl_then_sync, env.nginx_pid),
        "cli": Row(lambda out: cvflow_run(out, hub, "pull", spec, "-q", timeout=1800), env.hub_pid),
        "cli-j16": Row(lambda out: cvflow_run(out, hub, "pull", spec, "-q", "-j", "16", timeout=1800), env.hub_pid),
        "cli-nofsync": Row(lambda out: cvflow_run(out, hub, "pull", spec, "-q", timeout=1800,
                                                  extra_env={"CVFLOW_CACHE_FSYNC": "0"}), env.hub_pid),
    }
    for n in range(env.rounds):
        print(f"{count:,} small files, round {n + 1} of {env.rounds}...", flush=True)
        for key, row in rows.items():
            out = tmp / f"out-small-{key}"
            row.measure(out)
            if key.startswith("cli"):
                pulled(out, SMALL_NAME, "1.0.0", [f["path"] for f in files], sizes)
            drop(out)

    base = rows["curl"].best_s

    def files_row(label: str, key: str) -> list[str]:
        row = rows[key]
        per_file = 1000 / (len(files) * row.rounds)
        return [label, f"{row.best_s:.2f}", f"{len(files) / row.best_s:,.0f}", f"{base / row.best_s:.2f}",
                f"{row.server_cpu * per_file:.2f} / {row.client_cpu * per_file:.2f}"]

    table = [
        files_row(f"nginx + `curl --parallel --parallel-max {CURL_PARALLEL}`, to files (the peer)", "curl"),
        files_row("... then `sync` once", "curl-sync"),
        files_row("**`cvflow pull`** (CLI defaults: -j 4, fsync on)", "cli"),
        files_row("`cvflow pull -j 16`", "cli-j16"),
        files_row("`CVFLOW_CACHE_FSYNC=0 cvflow pull`", "cli-nofsync"),
    ]
    notes = [
        f"{len(files):,} files: {len(names):,} random files of {SMALL_SIZE >> 10} KiB, `cvflow.toml` and "
        "`solver.py` (10,000 files is the most a version may hold), "
        f"published {how} ({publish_s:.1f} s, {len(files) / publish_s:,.0f} files/s) to "
        "`cvflow-hub serve` (uvicorn, one process). curl reads one config file of every stored blob's URL and "
        f"keeps up to {CURL_PARALLEL} transfers (and keep-alive connections) going; it checks nothing. The cvflow "
        "rows run the installed command with a fresh CVFLOW_HOME (interpreter start-up, the version document "
        "and the snapshot of hard links included) and check every sha256. "
        f"{env.rounds} rounds over all rows, best kept; each row's directory is deleted and `sync`ed afterwards.",
        "",
        "CPU ms per file: user + system milliseconds per file fetched, averaged over the rounds: the server's "
        "(nginx, or the hub's process) and the client's (curl, or the `cvflow` process).",
        "",
        quiet.note(),
    ]
    report("client_pull_small", f"`cvflow pull`: {count:,} x {SMALL_SIZE >> 10} KiB on loopback",
           ["what", "best s", "files/s", "vs nginx + curl", "CPU ms/file server / client"], table, notes)


if __name__ == "__main__":
    main()

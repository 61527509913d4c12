"""`cvflow pull` of a package of 10 files x 100 MiB from the hub on loopback, side by side with
curl fetching the same 10 stored files in parallel from nginx (sendfile), then the bytes a
re-pull moves after one of the 10 files changed.

The package is published once with `cvflow publish` to `cvflow-hub serve`. In each round every
row downloads all 10 files into a fresh directory (a fresh CVFLOW_HOME for cvflow), which is
removed and synced away before the next row; each row keeps its best round. Target: `cvflow
pull` >= 0.8x the GB/s of nginx + curl writing the files to disk. Then 1.0.1 is published with
one file replaced, and a fresh cache pulls 1.0.0 and then 1.0.1 through an nginx proxy that
logs `$bytes_sent`: the re-pull must move about one file (<= 1.05x of 100 MiB).

    .venv/bin/python bench/client_pull.py [--files 10] [--size-mib 100] [--dir PATH] [--rounds 2]
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


def pulled(home: Path, version: str, names: list[str], size: int) -> None:
    snap = home / "cache" / "snapshots" / Path(NAME) / version
    for rel in names:
        if (snap / rel).stat().st_size != size:
            raise RuntimeError(f"{snap / rel} has the wrong size")


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
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--size-mib", type=int, default=100, help="size of each file")
    parser.add_argument("--dir", help="where the hub, the package and the downloads go (default: the system temp dir)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds over all rows; each keeps its best")
    args = parser.parse_args()
    size, count = args.size_mib << 20, args.files
    total = size * count
    quiet = Quiet()

    with workdir("client-pull", args.dir) as tmp, Procs(tmp) as procs:
        setup = prepare_hub(tmp / "hub")
        hub_port, nginx_port = free_port(), free_port()
        hub = f"http://127.0.0.1:{hub_port}"
        server = procs.serve("hub", hub_uvicorn_argv(setup, hub_port), hub + "/api/v1/openapi.json")

        names = [f"weights/shard-{i:02d}.dat" for i in range(count)]
        pkg = tmp / "package"
        print(f"writing {count} x {args.size_mib} MiB of random bytes and publishing {NAME}@1.0.0...", flush=True)
        write_package(pkg, "1.0.0", dict.fromkeys(names, True), size)
        start = time.perf_counter()
        cvflow_run(tmp / "publisher", hub, "publish", str(pkg), "--json", "-q", token=setup.token, timeout=600)
        publish_s = time.perf_counter() - start
        doc = httpx.get(f"{hub}/api/v1/packages/{NAME}/versions/1.0.0").raise_for_status().json()
        digests = {f["path"]: f["sha256"] for f in doc["files"]}
        blob_urls = [f"http://127.0.0.1:{nginx_port}/blobs/{digests[n][:2]}/{digests[n]}" for n in names]

        # One nginx: the stored blobs directly (the peer), and a proxy to the hub that logs bytes sent.
        proxy_log_path = tmp / "proxy-bytes.log"
        locations = (f"        location /blobs/ {{ alias {setup.storage}/blobs/sha256/; }}\n"
                     f"        location / {{ proxy_pass {hub}; proxy_buffering off; proxy_http_version 1.1;\n"
                     f"            proxy_set_header Connection \"\"; proxy_set_header Host $host;\n"
                     f"            access_log {proxy_log_path} bytes; }}\n")
        conf = nginx_conf(tmp, nginx_port, locations,
                          extra_http="log_format bytes '$request_method $request_uri $status $bytes_sent';")
        proxy = f"http://127.0.0.1:{nginx_port}"
        nginx = procs.serve("nginx", nginx_argv(conf), blob_urls[0])

        spec = f"{NAME}@1.0.0"
        rows = {
            "curl-files": Row(lambda out: curl_parallel(blob_urls, out, [size] * count), nginx.pid),
            "curl-fsync": Row(lambda out: curl_parallel(blob_urls, out, [size] * count, fsync=True), nginx.pid),
            "curl-null": Row(lambda out: curl_parallel(blob_urls, None, [size] * count), nginx.pid),
            "cli-j4": Row(lambda out: cvflow_run(out, hub, "pull", spec, "-q"), server.pid),
            "cli-j10": Row(lambda out: cvflow_run(out, hub, "pull", spec, "-q", "-j", str(count)), server.pid),
            "cli-nofsync": Row(lambda out: cvflow_run(out, hub, "pull", spec, "-q",
                                                      extra_env={"CVFLOW_CACHE_FSYNC": "0"}), server.pid),
            "lib-nofsync": Row(lambda out: library_pull(out, hub, spec, fsync=False), server.pid),
        }
        for n in range(args.rounds):
            print(f"round {n + 1} of {args.rounds}...", flush=True)
            for key, row in rows.items():
                out = tmp / f"out-{key}"
                row.measure(out)
                if key.startswith(("cli", "lib")):
                    pulled(out, "1.0.0", names, size)
                drop(out)

        # The re-pull: 1.0.1 with one shard replaced, pulled after 1.0.0 into the same cache.
        print("publishing 1.0.1 with one file changed, then pulling 1.0.0 and 1.0.1 through the proxy...", flush=True)
        changed = names[count // 2]
        write_package(pkg, "1.0.1", {n: n == changed for n in names}, size)
        published = json.loads(cvflow_run(tmp / "publisher", hub, "publish", str(pkg), "--json", "-q",
                                          token=setup.token).stdout)
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
        pulled(home, "1.0.1", names, size)

    base = rows["curl-files"].best_s

    def gbps(seconds: float) -> str:
        return f"{total / seconds / 1e9:.2f}"

    def speed_row(label: str, key: str, target: bool = False) -> list[str]:
        row = rows[key]
        ratio = base / row.best_s
        gib = total / (1 << 30) * row.rounds
        return [label, f"{row.best_s:.2f}", gbps(row.best_s), f"{ratio:.2f}",
                f"{row.server_cpu / gib:.2f} / {row.client_cpu / gib:.2f}", "",
                f">= {RATIO_TARGET}x" if target else "", verdict(ratio >= RATIO_TARGET) if target else ""]

    repull_ok = again[1] <= REPULL_SLACK * size
    table = [
        speed_row(f"nginx + {count} curl at once, to files (the peer)", "curl-files"),
        speed_row(f"nginx + {count} curl at once, to files, then fsync each", "curl-fsync"),
        speed_row(f"nginx + {count} curl at once, to /dev/null", "curl-null"),
        speed_row("**`cvflow pull`** (CLI defaults: -j 4, fsync on)", "cli-j4", target=True),
        speed_row(f"`cvflow pull -j {count}`", "cli-j10"),
        speed_row("`CVFLOW_CACHE_FSYNC=0 cvflow pull`", "cli-nofsync"),
        speed_row("library `pull()`, `Cache(fsync=False)`, 4 workers", "lib-nofsync"),
        [f"`cvflow pull {spec}`, fresh cache, through the counting proxy", f"{first_s:.2f}", gbps(first_s), "",
         "", f"{first[1]:,} in {first[0]} requests ({first[2]:,} file bodies)", "", ""],
        [f"**re-pull `@1.0.1`** ({changed} changed), same cache", f"{again_s:.2f}", "", "", "",
         f"{again[1]:,} in {again[0]} requests ({again[2]:,} file bodies); cache blobs +{blobs_again:,}",
         f"<= {REPULL_SLACK} x {size:,}", verdict(repull_ok)],
    ]
    notes = [
        f"{count} random files of {args.size_mib} MiB ({total / 1e9:.2f} GB) plus `cvflow.toml` and `solver.py`, "
        f"published with `cvflow publish` ({publish_s:.1f} s, {total / publish_s / 1e9:.2f} GB/s) to `cvflow-hub "
        "serve` (uvicorn, one process, data dir on the same disk); the stored blobs are in the page cache. "
        f"GB/s = the {count} files' bytes / wall time (1 GB = 10^9 bytes). "
        f"{args.rounds} rounds over all rows, best kept; each row starts from an empty destination, which is "
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
    report("client_pull", f"`cvflow pull`: {count} x {args.size_mib} MiB on loopback",
           ["what", "best s", "GB/s", "vs nginx + curl", "CPU s/GiB server / client", "bytes sent by the server",
            "target", "result"],
           table, notes)


if __name__ == "__main__":
    main()

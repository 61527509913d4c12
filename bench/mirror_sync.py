"""Mirrors: how long `cvflow-hub mirror sync` takes for 200 packages, and what pull-through costs
on a blob it has cached compared with a blob published on the same hub.

Three hubs run side by side as `cvflow-hub serve` processes on loopback: an upstream, a
pull-through hub (``CVFLOW_HUB_UPSTREAMS`` = the upstream) and, for the sync rows, a fresh
data dir that `mirror sync` fills (the command as users run it, process start included).

Sync rows: the first sync of N packages (one version each: cvflow.toml, solver.py and a
weights file), a second sync with nothing new (the change feed's cost), and a sync after 10
new versions. Pull-through rows: the same-sized blob published on the pull-through hub
itself ("local") and one it fetched from the upstream earlier ("cached"), each read with
wrk (small blob: requests/s) and with curl (large blob: GB/s), plus the upstream serving
it directly for reference. Target: cached >= 0.9x local. Takes about 1.5 minutes.

    .venv/bin/python bench/mirror_sync.py [--packages 200] [--weight-kib 64] [--big-mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Procs,
    Quiet,
    free_port,
    hub_client,
    hub_uvicorn_argv,
    manifest,
    prepare_hub,
    random_pieces,
    report,
    tool,
    upload_blob,
    verdict,
    workdir,
    wrk,
)

RATIO_TARGET = 0.9
SOLVER = b"class Detector:\n    def infer(self, x):\n        return {}\n"


def publish(url: str, token: str, name: str, version: str, files: dict[str, bytes]) -> None:
    text = manifest(name, version, weights=[p for p in files if p.endswith(".safetensors")]).encode()
    entries = []
    with hub_client(url, token) as client:
        for path, data in {"cvflow.toml": text, **files}.items():
            digest = hashlib.sha256(data).hexdigest()
            upload_blob(client, [data], digest)
            entries.append({"path": path, "size": len(data), "sha256": digest})
        r = client.post(f"/api/v1/packages/{name}/versions", json={"manifest": text.decode(), "files": entries})
        if r.status_code != 201:
            raise RuntimeError(f"publishing {name}@{version} failed: {r.status_code} {r.text}")


def publish_many(url: str, token: str, names: list[str], version: str, weight: int) -> None:
    def one(name: str) -> None:
        publish(url, token, name, version, {"solver.py": SOLVER, "weights.safetensors": os.urandom(weight)})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, names))


def sync(data_dir: Path, upstream: str) -> tuple[float, dict]:  # type: ignore[type-arg]
    start = time.perf_counter()
    done = subprocess.run([tool("cvflow-hub"), "--data-dir", str(data_dir), "mirror", "sync", "--upstream", upstream,
                           "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"mirror sync failed: {done.stdout}{done.stderr}")
    return wall, json.loads(done.stdout.splitlines()[-1])


def curl_gbps(url: str, size: int, rounds: int = 3) -> float:
    best = 0.0
    for _ in range(rounds):
        out = subprocess.run([tool("curl"), "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} "
                              "%{speed_download}", url], check=True, capture_output=True, text=True).stdout.split()
        if out[0] != "200" or int(out[1]) != size:
            raise RuntimeError(f"{url}: HTTP {out[0]}, {out[1]} of {size} bytes")
        best = max(best, float(out[2]) / 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packages", type=int, default=200)
    parser.add_argument("--weight-kib", type=int, default=64, help="weights file of each synced package")
    parser.add_argument("--big-mib", type=int, default=256, help="the large blob of the pull-through rows")
    parser.add_argument("--rounds", type=int, default=3, help="pull-through rounds; each row keeps its best")
    parser.add_argument("--dir", help="where the data dirs go (default: the system temp dir)")
    args = parser.parse_args()
    quiet = Quiet()
    small, big = args.weight_kib << 10, args.big_mib << 20

    with workdir("mirror", args.dir) as tmp, Procs(tmp) as procs:
        up = prepare_hub(tmp / "upstream")
        proxy = prepare_hub(tmp / "proxy")
        ports = {name: free_port() for name in ("upstream", "proxy")}
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        ready = "/api/v1/openapi.json"
        procs.serve("upstream", hub_uvicorn_argv(up, ports["upstream"]), url["upstream"] + ready)
        procs.serve("proxy", hub_uvicorn_argv(proxy, ports["proxy"]), url["proxy"] + ready,
                    env={"CVFLOW_HUB_UPSTREAMS": url["upstream"]})

        print(f"publishing {args.packages} packages on the upstream...", flush=True)
        t0 = time.perf_counter()
        names = [f"bench/model-{i:04d}" for i in range(args.packages)]
        publish_many(url["upstream"], up.token, names, "1.0.0", small)
        publish_seconds = time.perf_counter() - t0

        mirror_dir = tmp / "mirror"
        print("syncing...", flush=True)
        first_wall, first = sync(mirror_dir, url["upstream"])
        noop_wall, noop = sync(mirror_dir, url["upstream"])
        publish_many(url["upstream"], up.token, names[:10], "1.1.0", small)
        inc_wall, inc = sync(mirror_dir, url["upstream"])
        assert len(first["versions"]) == args.packages and noop["versions"] == [] and len(inc["versions"]) == 10

        print("pull-through...", flush=True)
        rows_pt = []
        for label, size in (("small", small), ("big", big)):
            pieces, _ = random_pieces(size)
            data = b"".join(pieces)
            publish(url["upstream"], up.token, f"bench/remote-{label}", "1.0.0",
                    {"solver.py": SOLVER, "weights.safetensors": data})
            publish(url["proxy"], proxy.token, f"bench/local-{label}", "1.0.0",
                    {"solver.py": SOLVER, "weights.safetensors": os.urandom(size)})
            path = "/versions/1.0.0/files/weights.safetensors"
            remote = f"/api/v1/packages/bench/remote-{label}{path}"
            local = url["proxy"] + f"/api/v1/packages/bench/local-{label}{path}"
            cached = url["proxy"] + remote
            # The first request is the miss: the proxy fetches, verifies and stores the blob.
            with hub_client(url["proxy"], None) as client:
                for f in ("cvflow.toml", "solver.py"):
                    client.get(f"/api/v1/packages/bench/remote-{label}/versions/1.0.0/files/{f}").raise_for_status()
                start = time.perf_counter()
                got = client.get(remote)
                miss = time.perf_counter() - start
                if got.status_code != 200 or hashlib.sha256(got.content).digest() != hashlib.sha256(data).digest():
                    raise RuntimeError(f"pull-through of {remote} failed: {got.status_code}")
            rows_pt.append((label, size, miss, local, cached, url["upstream"] + remote))

        results = []
        for label, size, miss, local, cached, direct in rows_pt:
            best: dict[str, tuple[float, float]] = {}
            for _ in range(args.rounds):  # interleaved: a burst of other load hits one round of each row
                for key, target in (("local", local), ("cached", cached), ("direct", direct)):
                    if label == "small":
                        w = wrk(target, seconds=3)
                        if w.errors:
                            raise RuntimeError(f"wrk saw {w.errors} errors on {target}")
                        value = (w.rps, w.p50_ms)
                    else:
                        value = (curl_gbps(target, size, rounds=1), 0.0)
                    best[key] = max(best.get(key, (0.0, 0.0)), value)
            if label == "small":
                cells = [f"{best[k][0]:,.0f} ({best[k][1]:.2f})" for k in ("local", "cached", "direct")]
                what = f"{size >> 10} KiB blob, requests/s (p50 ms)"
            else:
                cells = [f"{best[k][0]:.2f}" for k in ("local", "cached", "direct")]
                what = f"{size >> 20} MiB blob, GB/s"
            results.append((what, *cells, best["cached"][0] / best["local"][0], miss))

    n = args.packages
    sync_rows = [
        [f"first sync, {n} packages ({3 * n} blobs, {first['bytes'] / 1e6:.1f} MB)", f"{first_wall:.2f}",
         f"{first['seconds']:.2f}", f"{n / first['seconds']:.0f} packages/s"],
        ["second sync, nothing new", f"{noop_wall:.2f}", f"{noop['seconds']:.3f}", "one feed page"],
        ["sync after 10 new versions", f"{inc_wall:.2f}", f"{inc['seconds']:.2f}", f"{len(inc['versions'])} copied"],
    ]
    pt_rows = [[what, lo, ca, di, f"{ratio:.2f}", f"{miss * 1000:.0f} ms", f">= {RATIO_TARGET}x",
                verdict(ratio >= RATIO_TARGET)] for what, lo, ca, di, ratio, miss in results]
    notes = [f"Publishing the {n} packages on the upstream took {publish_seconds:.1f} s (4 clients). "
             "`mirror sync` wall time includes starting the command (Python, imports, migrations check); "
             "`in sync` is the run itself as the report measures it. Each blob is downloaded to a partial file, "
             "hashed, then streamed into the store (hashed again) and recorded; versions are written one "
             "transaction each, with their change-feed event.",
             "Pull-through: `local` is a blob published on the pull-through hub, `cached` one it fetched from the "
             "upstream (the miss column: that first request, which fetched, verified and stored it); `upstream` "
             "is the same blob read from the upstream directly. Once all of a version's blobs are here it is "
             "served by the very same code path as a local one. wrk: 1 thread, 16 connections, 3 s; curl to "
             f"/dev/null; {args.rounds} interleaved rounds, each row keeps its best.",
             quiet.note()]
    report("mirror_sync", "Mirror sync and pull-through", ["mirror sync", "wall s (command)", "in sync s", "rate"],
           sync_rows)
    report("mirror_pull_through", "Pull-through: cached vs local blob on the same hub",
           ["blob", "local", "cached (pull-through)", "upstream direct", "cached / local", "miss (first request)",
            "target", "result"], pt_rows, notes)


if __name__ == "__main__":
    main()

"""Download GB/s of a 1 GiB published file: nginx sending the stored blob directly (sendfile),
side by side with the hub on uvicorn (FileResponse), the hub on Granian (ASGI pathsend) and
the hub behind nginx with X-Accel-Redirect, all running at once.

In each round every server gets one download and then four concurrent ones (curl to
/dev/null); each row keeps its best round. The server's resident memory (process tree) is
sampled every 100 ms during the concurrent downloads. Targets: >= 0.8x nginx's GB/s (one and
four downloads) and the hub under 150 MB RSS.

    .venv/bin/python bench/blob_download.py [--size-mib 1024] [--dir PATH] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Procs,
    Quiet,
    RssSampler,
    free_port,
    granian_argv,
    hub_client,
    hub_uvicorn_argv,
    manifest,
    nginx_argv,
    nginx_conf,
    prepare_hub,
    random_pieces,
    report,
    tool,
    tree_cpu,
    tree_rss,
    upload_blob,
    verdict,
    workdir,
)

RATIO_TARGET = 0.8
RSS_TARGET_MB = 150
CONCURRENT = 4
ROUNDS = 2
NAME = "bench/weights"
FILE = "model.onnx"
URL_PATH = f"/api/v1/packages/{NAME}/versions/1.0.0/files/{FILE}"


@dataclass
class Target:
    """One way to download the blob, and the best seen over the rounds."""

    url: str
    pid: int  # whose memory and CPU the row reports
    seq_gbps: float = 0.0
    conc_gbps: float = 0.0
    idle_mb: float = 0.0
    peak_mb: float = 0.0
    cpu_s: float = 0.0
    gib: float = 0.0

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu_s / self.gib if self.gib else 0.0


def curl_argv(url: str) -> list[str]:
    return [tool("curl"), "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}", url]


def _check(out: str, size: int, url: str) -> float:
    code, got, speed = out.split()
    if code != "200" or int(got) != size:
        raise RuntimeError(f"{url}: HTTP {code}, {got} of {size} bytes")
    return float(speed)


def measure(t: Target, size: int) -> None:
    """One round: a single download, then CONCURRENT at once while RSS is sampled."""
    if not t.idle_mb:
        t.idle_mb = tree_rss(t.pid) / 1e6
    out = subprocess.run(curl_argv(t.url), check=True, capture_output=True, text=True).stdout
    t.seq_gbps = max(t.seq_gbps, _check(out, size, t.url) / 1e9)
    cpu = tree_cpu(t.pid)
    with RssSampler(t.pid) as rss:
        start = time.perf_counter()
        clients = [subprocess.Popen(curl_argv(t.url), stdout=subprocess.PIPE, text=True) for _ in range(CONCURRENT)]
        outs = [c.communicate(timeout=120)[0] for c in clients]
        wall = time.perf_counter() - start
    for out in outs:
        _check(out, size, t.url)
    t.cpu_s += tree_cpu(t.pid) - cpu
    t.gib += CONCURRENT * size / (1 << 30)
    t.conc_gbps = max(t.conc_gbps, CONCURRENT * size / wall / 1e9)
    t.peak_mb = max(t.peak_mb, rss.peak / 1e6)


def publish_blob(url: str, token: str, size: int) -> str:
    """Upload ``size`` random bytes in 64 MiB chunks and publish them as FILE; returns the digest."""
    pieces, digest = random_pieces(size)
    text = manifest(NAME, "1.0.0", weights=[FILE]).encode()
    toml_digest = hashlib.sha256(text).hexdigest()
    with hub_client(url, token) as client:
        upload_blob(client, pieces, digest)
        del pieces
        upload_blob(client, [text], toml_digest)
        r = client.post(f"/api/v1/packages/{NAME}/versions", json={"manifest": text.decode(), "files": [
            {"path": "cvflow.toml", "size": len(text), "sha256": toml_digest},
            {"path": FILE, "size": size, "sha256": digest}]})
        if r.status_code != 201:
            raise RuntimeError(f"publishing failed: {r.status_code} {r.text}")
    return digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="blob size (default 1 GiB)")
    parser.add_argument("--dir", help="where the hub's data dir goes (default: the system temp dir)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds over all servers; each keeps its best")
    args = parser.parse_args()
    size = args.size_mib << 20
    quiet = Quiet()

    with workdir("download", args.dir) as tmp, Procs(tmp) as procs:
        setup = prepare_hub(tmp / "hub")
        ports = {name: free_port() for name in ("uvicorn", "granian", "accel", "nginx")}
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        ready = "/api/v1/openapi.json"

        hub = procs.serve("hub-uvicorn", hub_uvicorn_argv(setup, ports["uvicorn"]), url["uvicorn"] + ready)
        print(f"uploading and publishing a {size >> 20} MiB blob...", flush=True)
        digest = publish_blob(url["uvicorn"], setup.token, size)
        blob_path = setup.storage / "blobs" / "sha256" / digest[:2] / digest
        assert blob_path.stat().st_size == size, blob_path

        granian = procs.serve("hub-granian", granian_argv("hub.app:app_from_env", ports["granian"]),
                              url["granian"] + ready, env=setup.env)
        accel = procs.serve("hub-accel", hub_uvicorn_argv(setup, ports["accel"]), url["accel"] + ready,
                            env={"CVFLOW_HUB_ACCEL_REDIRECT_PREFIX": "/_blobs/"})
        # One nginx: the stored file directly, and the X-Accel-Redirect front of the "accel" hub.
        locations = (f"        location = /blob {{ alias {blob_path}; }}\n"
                     f"        location /_blobs/ {{ internal; alias {setup.storage}/; }}\n"
                     f"        location / {{ proxy_pass {url['accel']}; proxy_set_header Host $host; }}\n")
        nginx = procs.serve("nginx", nginx_argv(nginx_conf(tmp, ports["nginx"], locations)), url["nginx"] + "/blob")

        targets = {
            "nginx": Target(url["nginx"] + "/blob", nginx.pid),
            "hub-uvicorn": Target(url["uvicorn"] + URL_PATH, hub.pid),
            "hub-granian": Target(url["granian"] + URL_PATH, granian.pid),
            "hub-accel": Target(url["nginx"] + URL_PATH, accel.pid),
        }
        for n in range(args.rounds):
            print(f"round {n + 1} of {args.rounds}...", flush=True)
            for t in targets.values():
                measure(t, size)

    base = targets["nginx"]
    rows = [["nginx, the stored file (sendfile)", f"{base.seq_gbps:.2f}", f"{base.conc_gbps:.2f}", "1.00 / 1.00",
             f"{base.idle_mb:.0f} → {base.peak_mb:.0f} (nginx)", f"{base.cpu_per_gib:.2f}", "", ""]]
    for key, label in (("hub-uvicorn", "**hub, uvicorn** (`cvflow-hub serve`, FileResponse)"),
                       ("hub-granian", "hub, Granian (pathsend)"),
                       ("hub-accel", "hub behind nginx (X-Accel-Redirect)")):
        t = targets[key]
        ratio_seq, ratio_conc = t.seq_gbps / base.seq_gbps, t.conc_gbps / base.conc_gbps
        ok = min(ratio_seq, ratio_conc) >= RATIO_TARGET and t.peak_mb < RSS_TARGET_MB
        rows.append([label, f"{t.seq_gbps:.2f}", f"{t.conc_gbps:.2f}", f"{ratio_seq:.2f} / {ratio_conc:.2f}",
                     f"{t.idle_mb:.0f} → {t.peak_mb:.0f} (hub)", f"{t.cpu_per_gib:.2f}",
                     f">= {RATIO_TARGET}x both, < {RSS_TARGET_MB} MB", verdict(ok)])
    notes = [
        f"A {size >> 20} MiB random blob published through the API (64 MiB chunks), read from the page cache. "
        f"curl to /dev/null on loopback; {args.rounds} rounds over all servers, each round one download and then "
        f"{CONCURRENT} at once (aggregate = bytes / wall time); the best round is shown. All servers run side by "
        "side; nginx has one worker with sendfile on and also fronts the X-Accel hub. RSS: the process tree, idle → "
        "max sampled every 100 ms during the concurrent downloads (the X-Accel row: the hub's). CPU s/GiB: the "
        "server's user+system CPU during the concurrent downloads per GiB sent (the X-Accel row: the hub's, so "
        "nginx's sending is not in it). Every hub download also records a download count (one DB write).",
        quiet.note(),
    ]
    report("blob_download", f"Blob download, {size >> 20} MiB (GB/s, 1 GB = 10^9 bytes)",
           ["server", "1 download GB/s", f"{CONCURRENT} concurrent GB/s", "vs nginx (1 / 4)", "RSS MB idle → max",
            "server CPU s/GiB", "target", "result"], rows, notes)


if __name__ == "__main__":
    main()

"""Upload MB/s of a 1 GiB blob through the hub's resumable protocol (open a session, PATCH
64 MiB chunks from memory, finish with the sha256; the hub hashes while it streams and
fsyncs each chunk), side by side in the same run with:

- the hub with its data dir on tmpfs (/dev/shm: fsync is free, so it shows the software alone);
- a sink: a raw ASGI app on uvicorn that reads the body and drops it, fed by curl -T (the
  loopback ceiling for a Python server) and by the same httpx chunks as the hub;
- nginx (its dav module, when the build has one) writing a PUT of the file to disk;
- hashlib.sha256 and sha256sum (the hashing ceiling) and writing 1 GiB with an fsync per
  64 MiB chunk, on disk and on tmpfs (the storage ceiling).

Every server runs side by side; the rows are measured in rounds and keep their best.
Target: the hub on disk >= 500 MB/s.

    .venv/bin/python bench/blob_upload.py [--size-mib 1024] [--dir PATH] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH,
    Procs,
    Quiet,
    free_port,
    hub_client,
    hub_uvicorn_argv,
    nginx_argv,
    nginx_conf,
    patch_chunk,
    prepare_hub,
    random_pieces,
    report,
    tool,
    tree_cpu,
    upload_blob,
    verdict,
    workdir,
)

from cvflow.api import HubClient  # noqa: E402

TARGET_MBPS = 500
GiB = 1 << 30
CHUNK = 64 << 20


@dataclass
class Row:
    """One way to move the bytes; ``run`` returns its seconds. ``pid``: the server whose CPU counts."""

    label: str
    run: Callable[[], float]
    pid: int | None = None
    once: bool = False  # slow and only there for contrast: measured in the first round only
    target: bool = False
    best: float = float("inf")
    cpu_s: float = 0.0
    runs: int = 0

    def measure(self) -> None:
        cpu = tree_cpu(self.pid) if self.pid else 0.0
        self.best = min(self.best, self.run())
        self.cpu_s += tree_cpu(self.pid) - cpu if self.pid else 0.0
        self.runs += 1


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def curl_put(url: str, path: Path, size: int) -> float:
    """Seconds for curl to send ``path`` (streamed from the file, not loaded in memory)."""
    out = subprocess.run([tool("curl"), "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_upload} %{time_total}",
                          "-T", str(path), "-H", "Expect:", url], check=True, capture_output=True, text=True).stdout
    code, sent, seconds = out.split()
    if code[0] != "2" or int(sent) != size:
        raise RuntimeError(f"{url}: HTTP {code}, sent {sent} of {size} bytes")
    return float(seconds)


def fsync_write(pieces: list[bytes], path: Path) -> None:
    """What the file store does with an upload: write each chunk, then fsync it."""
    with path.open("wb") as f:
        for piece in pieces:
            f.write(piece)
            f.flush()
            os.fsync(f.fileno())
    path.unlink()


def start_hub(procs: Procs, data_dir: Path, name: str) -> tuple[str, str, int]:
    """A hub with a user; returns its URL, a publishing token and its pid."""
    setup = prepare_hub(data_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub = procs.serve(name, hub_uvicorn_argv(setup, port), url + "/api/v1/openapi.json")
    return url, setup.token, hub.pid


def hub_upload(url: str, token: str, pieces: list[bytes], digest: str, *, whole: bool = False) -> float:
    """Seconds for one whole upload: session, chunks, finish. A repeat is a new session whose
    commit finds the blob already stored, which costs nothing measurable."""
    with hub_client(url, token) as client:
        return timed(lambda: upload_blob(client, pieces, digest, whole=whole))


def client_upload(url: str, token: str, source: Path, size: int, digest: str) -> float:
    """Seconds for ``cvflow publish``'s upload of one file: HubClient.upload_file reading it from disk."""
    with HubClient(url, token) as client, source.open("rb") as f:
        return timed(lambda: client.upload_file(f, size, digest, chunk_size=CHUNK))


def httpx_chunks(url: str, pieces: list[bytes], *, whole: bool) -> float:
    with hub_client(url, None) as client:
        def send() -> None:
            offset = 0
            for piece in pieces:
                patch_chunk(client, "/sink", piece, offset, whole=whole).raise_for_status()
                offset += len(piece)
        return timed(send)


def nginx_put_url(procs: Procs, tmp: Path) -> str | None:
    """nginx writing PUT bodies to disk with its dav module; None when the build lacks it."""
    dav = tmp / "dav"
    dav.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    put = (f"        location /put/ {{ alias {dav}/; dav_methods PUT; create_full_put_path on;"
           " client_max_body_size 0; client_body_buffer_size 1m; }\n"
           "        location = /ready { return 204; }\n")
    conf = nginx_conf(tmp, port, put)
    if subprocess.run([*nginx_argv(conf), "-t"], capture_output=True).returncode != 0:
        return None
    procs.serve("nginx", nginx_argv(conf), url + "/ready")
    return url + "/put/blob.bin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="blob size (default 1 GiB)")
    parser.add_argument("--dir", help="where the on-disk hub and files go (default: the system temp dir)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all rows; each row keeps its best")
    args = parser.parse_args()
    size = args.size_mib << 20
    quiet = Quiet()
    shm: Path | None = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK) and os.statvfs(shm).f_bavail * os.statvfs(shm).f_frsize > 2 * size):
        shm = None

    with workdir("upload", args.dir) as tmp, workdir("upload", str(shm) if shm else None) as mem, \
            Procs(tmp) as procs:
        print(f"making {size >> 20} MiB of random bytes...", flush=True)
        pieces, digest = random_pieces(size, CHUNK)
        source = tmp / "blob.bin"
        with source.open("wb") as f:
            for piece in pieces:
                f.write(piece)

        print("starting the servers...", flush=True)
        disk_url, disk_token, disk_pid = start_hub(procs, tmp / "hub", "hub-disk")
        rows = {"hub-disk": Row(f"**hub, uvicorn**, data dir on disk ({args.dir or 'system temp dir'})",
                                lambda: hub_upload(disk_url, disk_token, pieces, digest), disk_pid, target=True)}
        if shm:
            shm_url, shm_token, shm_pid = start_hub(procs, mem / "hub", "hub-shm")
            rows["hub-shm"] = Row("hub, uvicorn, data dir on tmpfs (/dev/shm)",
                                  lambda: hub_upload(shm_url, shm_token, pieces, digest), shm_pid, target=True)
        rows["hub-client"] = Row("hub, uvicorn, on disk, sent by `cvflow`'s `HubClient.upload_file` from the file",
                                 lambda: client_upload(disk_url, disk_token, source, size, digest), disk_pid)
        rows["hub-whole"] = Row("hub, uvicorn, on disk, each chunk one 64 MiB `bytes` body",
                                lambda: hub_upload(disk_url, disk_token, pieces, digest, whole=True), disk_pid, once=True)

        port = free_port()
        sink_url = f"http://127.0.0.1:{port}"
        sink = procs.serve("sink", [sys.executable, str(BENCH / "_servers.py"), "sink", str(port)], sink_url)
        rows["sink-curl"] = Row("sink ASGI app on uvicorn, `curl -T` (loopback ceiling)",
                                lambda: curl_put(sink_url + "/sink", source, size), sink.pid)
        rows["sink-httpx"] = Row("sink ASGI app on uvicorn, httpx, 64 MiB chunks in 1 MiB views (the hub rows' client)",
                                 lambda: httpx_chunks(sink_url, pieces, whole=False), sink.pid)
        rows["sink-whole"] = Row("sink ASGI app on uvicorn, httpx, 64 MiB chunks as one `bytes` body",
                                 lambda: httpx_chunks(sink_url, pieces, whole=True), sink.pid, once=True)
        put_url = nginx_put_url(procs, tmp)
        if put_url:
            rows["nginx-put"] = Row("nginx `dav_methods PUT` to disk (no fsync), `curl -T`",
                                    lambda: curl_put(put_url, source, size))
        rows["hashlib"] = Row("`hashlib.sha256` over the bytes in memory (the hub's hash, OpenSSL)",
                              lambda: timed(lambda: [hashlib.sha256(p).digest() for p in pieces]))
        rows["sha256sum"] = Row("`sha256sum` of the file (coreutils)", lambda: timed(
            lambda: subprocess.run(["sha256sum", str(source)], check=True, capture_output=True)), once=True)
        rows["fsync-disk"] = Row("write + fsync per 64 MiB chunk, disk (storage ceiling)",
                                 lambda: timed(lambda: fsync_write(pieces, tmp / "fsync.bin")))
        if shm:
            rows["fsync-shm"] = Row("write + fsync per 64 MiB chunk, tmpfs",
                                    lambda: timed(lambda: fsync_write(pieces, mem / "fsync.bin")))

        for n in range(args.rounds):
            print(f"round {n + 1} of {args.rounds}...", flush=True)
            for row in rows.values():
                if n == 0 or not row.once:
                    row.measure()
        for blob in (tmp / "hub", mem / "hub"):
            stored = blob / "storage" / "blobs" / "sha256" / digest[:2] / digest
            if blob.exists() and stored.stat().st_size != size:
                raise RuntimeError(f"{stored} has the wrong size")

    table = []
    for row in rows.values():
        rate = size / row.best / 1e6
        cpu = f"{row.cpu_s / (row.runs * size / GiB):.2f}" if row.pid else ""
        table.append([row.label, f"{rate:,.0f}", f"{row.best:.2f}", cpu, f">= {TARGET_MBPS}" if row.target else "",
                      verdict(rate >= TARGET_MBPS) if row.target else ""])
    notes = [f"{size >> 20} MiB of random bytes. Hub: POST /api/v1/uploads, {size // CHUNK} PATCHes of 64 MiB from "
             "memory with httpx (each handed over in 1 MiB views unless said otherwise), POST .../finish with the "
             "sha256 (computed before the clock starts); the hub hashes while streaming, writes to its staging file, "
             "fsyncs each chunk and links the blob into place. "
             f"MB = 10^6 bytes. {args.rounds} rounds over all rows, best shown (the whole-body rows and sha256sum: "
             "first round only). Server CPU: user+system seconds of the server process per GiB received, averaged "
             "over the rounds (the client's CPU is not counted); it is less noisy than MB/s on a shared machine.",
             quiet.note()]
    report("blob_upload", f"Blob upload, {size >> 20} MiB (MB/s)",
           ["path", "MB/s", "seconds", "server CPU s/GiB", "target", "result"], table, notes)


if __name__ == "__main__":
    main()

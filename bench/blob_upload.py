"""Upload MB/s of a 1 GiB blob through the hub's resumable protocol (open a session, PATCH
64 MiB chunks from memory, finish with the sha256; the hub hashes while it streams and
fsyncs each chunk), side by side in the same run with:

- the hub with its data dir on tmpfs (/dev/shm: fsync is free, so it shows the software alone);
- a sink: a raw ASGI app on uvicorn that reads the body and drops it, fed by curl -T (the
  loopback ceiling for a Python server) and by the same httpx chunks as the hub;
- nginx (its dav module, when the build has one) writing a PUT of the file to disk;
- hashlib.sha256 and sha256sum (the hashing ceiling) and writing 1 GiB with an fsync per
  64 MiB chunk, on disk and on tmpfs (the storage ceiling);
- `cvflow publish` of a package of 10 files x 100 MiB (hashing, checking, uploading, committing),
  each round as a new user and as a private package, so every blob is missing to that user.

Every server runs side by side; the rows are measured in rounds and keep their best.
Targets: the hub >= 500 MB/s (on disk and on tmpfs), `cvflow publish` >= 500 MB/s.

    .venv/bin/python bench/blob_upload.py [--size-mib 1024] [--dir PATH] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH,
    Procs,
    Quiet,
    free_port,
    hub_client,
    hub_uvicorn_argv,
    manifest,
    nginx_argv,
    nginx_conf,
    patch_chunk,
    prepare_hub,
    random_pieces,
    report,
    sliced,
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
    size: int = 0  # bytes moved, when not the blob's size
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


def bytes_pieces(pieces: list[bytes], step: int = 1 << 20) -> list[list[bytes]]:
    """Each chunk as ``step``-sized ``bytes`` (made before the clock starts): the body pieces
    `HubClient.upload_file` sends. h11 hands a lone ``bytes`` to the socket as it is, where it
    copies a view first, and httpcore re-slices only the rest of a partly sent 1 MiB piece."""
    return [[bytes(view) for view in sliced(piece, step)] for piece in pieces]


def send_chunks(client: httpx.Client, url: str, chunks: list[list[bytes]]) -> None:
    """PATCH each chunk (a list of pieces) with Upload-Offset and Content-Length."""
    offset = 0
    for chunk in chunks:
        length = sum(map(len, chunk))
        r = client.patch(url, content=iter(chunk), headers={"upload-offset": str(offset), "content-length": str(length)})
        if r.status_code != 200:
            raise RuntimeError(f"chunk at {offset} failed: {r.status_code} {r.text}")
        offset += length


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


def hub_upload(url: str, token: str, chunks: list[list[bytes]], digest: str) -> float:
    """Seconds for one whole upload: session, chunks, finish. A repeat is a new session whose
    commit finds the blob already stored, which costs nothing measurable."""
    size = sum(len(p) for chunk in chunks for p in chunk)

    def upload(client: httpx.Client) -> None:
        created = client.post("/api/v1/uploads", json={"size": size})
        if created.status_code != 201:
            raise RuntimeError(f"opening an upload failed: {created.status_code} {created.text}")
        location = created.json()["location"]
        send_chunks(client, location, chunks)
        done = client.post(location + "/finish", json={"sha256": digest})
        if done.status_code != 201:
            raise RuntimeError(f"finishing the upload failed: {done.status_code} {done.text}")

    with hub_client(url, token) as client:
        return timed(lambda: upload(client))


def hub_upload_whole(url: str, token: str, pieces: list[bytes], digest: str) -> float:
    with hub_client(url, token) as client:
        return timed(lambda: upload_blob(client, pieces, digest, whole=True))


class Publisher:
    """``cvflow publish --private`` of one package directory, each round as a new user of the hub
    (a user holds no grant for blobs others uploaded, and cannot read the earlier rounds' private
    versions, so every blob is missing to them and travels)."""

    def __init__(self, name: str, package: Path, data_dir: Path, url: str, home: Path) -> None:
        self.name, self.package, self.data_dir, self.url, self.home = name, package, data_dir, url, home
        self.rounds = itertools.count(1)

    def __call__(self) -> float:
        n = next(self.rounds)
        user = f"{self.name}-{n}"
        token = prepare_hub(self.data_dir, user=user).token
        (self.package / "cvflow.toml").write_text(manifest(f"{user}/shards", "1.0.0", weights=shard_names()))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CVFLOW_") and k != "XDG_DATA_HOME"}
        env.update(CVFLOW_HOME=str(self.home / user), CVFLOW_HUB=self.url, CVFLOW_TOKEN=token)
        start = time.perf_counter()
        # Private: a public version would make its blobs "present" to the next round's user.
        done = subprocess.run([tool("cvflow"), "publish", str(self.package), "--private", "--json", "-q"],
                              capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"cvflow publish exited {done.returncode}:\n{done.stderr[-2000:]}")
        sent = {u["path"] for u in json.loads(done.stdout)["uploaded"]}
        if not sent >= set(shard_names()):
            raise RuntimeError(f"cvflow publish as {user} did not upload every file: {sorted(sent)}")
        return seconds


SHARDS, SHARD = 10, 100 << 20
# A small process's glibc heap is trimmed back after every freed 256 KiB body chunk and
# grown again for the next, faulting in fresh zeroed pages for each byte received; fixed
# thresholds stop that (the hub, whose thresholds have grown, has few such faults).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(4 << 20), "MALLOC_TRIM_THRESHOLD_": str(8 << 20)}


def shard_names() -> list[str]:
    return [f"weights/shard-{i:02d}.dat" for i in range(SHARDS)]


def write_shards(root: Path, pieces: list[bytes]) -> int:
    """The package's 10 x 100 MiB files, cut from the random bytes (a smaller run: smaller files)."""
    data = b"".join(pieces)
    shard = min(SHARD, len(data) // SHARDS)
    (root / "weights").mkdir(parents=True)
    (root / "solver.py").write_bytes(b"class Detector:\n    def infer(self, image):\n        return []\n")
    for i, name in enumerate(shard_names()):
        (root / name).write_bytes(data[i * shard : (i + 1) * shard])
    return shard * SHARDS


def client_upload(url: str, token: str, source: Path, size: int, digest: str) -> float:
    """Seconds for ``cvflow publish``'s upload of one file: HubClient.upload_file reading it from disk."""
    with HubClient(url, token) as client, source.open("rb") as f:
        return timed(lambda: client.upload_file(f, size, digest, chunk_size=CHUNK))


def httpx_chunks(url: str, chunks: list[list[bytes]]) -> float:
    with hub_client(url, None) as client:
        return timed(lambda: send_chunks(client, "/sink", chunks))


def httpx_whole(url: str, pieces: list[bytes]) -> float:
    with hub_client(url, None) as client:
        def send() -> None:
            offset = 0
            for piece in pieces:
                patch_chunk(client, "/sink", piece, offset, whole=True).raise_for_status()
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
    tmpfs = Path("/dev/shm")
    roomy = tmpfs.is_dir() and os.access(tmpfs, os.W_OK) and os.statvfs(tmpfs).f_bavail * os.statvfs(tmpfs).f_frsize > 3 * size
    shm = tmpfs if roomy else None

    with workdir("upload", args.dir) as tmp, workdir("upload", str(shm) if shm else None) as mem, \
            Procs(tmp) as procs:
        print(f"making {size >> 20} MiB of random bytes...", flush=True)
        pieces, digest = random_pieces(size, CHUNK)
        chunks = bytes_pieces(pieces)
        source = tmp / "blob.bin"
        with source.open("wb") as f:
            for piece in pieces:
                f.write(piece)
        package = tmp / "package"
        package_size = write_shards(package, pieces)

        print("starting the servers...", flush=True)
        disk_url, disk_token, disk_pid = start_hub(procs, tmp / "hub", "hub-disk")
        rows = {"hub-disk": Row(f"**hub, uvicorn**, data dir on disk ({args.dir or 'system temp dir'})",
                                lambda: hub_upload(disk_url, disk_token, chunks, digest), disk_pid, target=True)}
        if shm:
            shm_url, shm_token, shm_pid = start_hub(procs, mem / "hub", "hub-shm")
            rows["hub-shm"] = Row("hub, uvicorn, data dir on tmpfs (/dev/shm)",
                                  lambda: hub_upload(shm_url, shm_token, chunks, digest), shm_pid, target=True)
        rows["hub-client"] = Row("hub, uvicorn, on disk, sent by `cvflow`'s `HubClient.upload_file` from the file",
                                 lambda: client_upload(disk_url, disk_token, source, size, digest), disk_pid)
        rows["hub-whole"] = Row("hub, uvicorn, on disk, each chunk one 64 MiB `bytes` body",
                                lambda: hub_upload_whole(disk_url, disk_token, pieces, digest), disk_pid, once=True)
        rows["publish-disk"] = Row(f"**`cvflow publish`**, {SHARDS} files x {package_size // SHARDS >> 20} MiB, to the hub "
                                   "on disk", Publisher("pub-disk", package, tmp / "hub", disk_url, tmp / "homes"),
                                   disk_pid, size=package_size, target=True)
        if shm:
            rows["publish-shm"] = Row(f"`cvflow publish`, {SHARDS} files x {package_size // SHARDS >> 20} MiB, to the "
                                      "hub on tmpfs", Publisher("pub-shm", package, mem / "hub", shm_url, tmp / "homes"),
                                      shm_pid, size=package_size)

        port = free_port()
        sink_url = f"http://127.0.0.1:{port}"
        sink = procs.serve("sink", [sys.executable, str(BENCH / "_servers.py"), "sink", str(port)], sink_url)
        rows["sink-curl"] = Row("sink ASGI app on uvicorn, `curl -T` (loopback ceiling)",
                                lambda: curl_put(sink_url + "/sink", source, size), sink.pid)
        rows["sink-httpx"] = Row("sink ASGI app on uvicorn, httpx, 64 MiB chunks in 1 MiB `bytes` (the hub rows' "
                                 "client; the peer of the hub and `cvflow publish` rows)",
                                 lambda: httpx_chunks(sink_url, chunks), sink.pid)
        rows["sink-whole"] = Row("sink ASGI app on uvicorn, httpx, 64 MiB chunks as one `bytes` body",
                                 lambda: httpx_whole(sink_url, pieces), sink.pid, once=True)
        port = free_port()
        tuned_url = f"http://127.0.0.1:{port}"
        tuned = procs.serve("sink-malloc", [sys.executable, str(BENCH / "_servers.py"), "sink", str(port)], tuned_url,
                            env=MALLOC_ENV)
        rows["sink-malloc"] = Row("sink as above, glibc malloc thresholds set (" + ", ".join(
            f"`{k}={int(v) >> 20} MiB`" for k, v in MALLOC_ENV.items()) + ")",
                                  lambda: httpx_chunks(tuned_url, chunks), tuned.pid)
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
        moved = row.size or size
        rate = moved / row.best / 1e6
        cpu = f"{row.cpu_s / (row.runs * moved / GiB):.2f}" if row.pid else ""
        table.append([row.label, f"{rate:,.0f}", f"{row.best:.2f}", cpu, f">= {TARGET_MBPS}" if row.target else "",
                      verdict(rate >= TARGET_MBPS) if row.target else ""])
    notes = [f"{size >> 20} MiB of random bytes. Hub: POST /api/v1/uploads, {size // CHUNK} PATCHes of 64 MiB from "
             "memory with httpx (each handed over as 1 MiB `bytes` unless said otherwise), POST .../finish with the "
             "sha256 (computed before the clock starts); the hub hashes while streaming, writes to its staging file, "
             "fsyncs each chunk and links the blob into place. `cvflow publish`: the command's whole run (start, "
             f"hashing and checking the {package_size >> 20} MiB, uploads, the version's commit), each round as a new "
             "user and a private package, so every blob travels. "
             f"MB = 10^6 bytes. {args.rounds} rounds over all rows, best shown (the whole-body rows and sha256sum: "
             "first round only). Server CPU: user+system seconds of the server process per GiB received, averaged "
             "over the rounds (the client's CPU is not counted); it is less noisy than MB/s on a shared machine.",
             quiet.note()]
    report("blob_upload", f"Blob upload, {size >> 20} MiB (MB/s)",
           ["path", "MB/s", "seconds", "server CPU s/GiB", "target", "result"], table, notes)


if __name__ == "__main__":
    main()

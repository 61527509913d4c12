"""Races and crashes: concurrent publishers, gc beside uploads, a hub killed mid-upload."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlmodel import select

from hub.db import session_scope
from hub.models import Blob, File
from hub.services.gc import collect_garbage
from tests.conftest import free_port
from tests.helpers import PASSWORD, error_code, manifest, publish, sha256, upload

MiB = 1 << 20


def _gc(hub, grace: int = 0):  # type: ignore[no-untyped-def]
    ctx = hub.context
    return collect_garbage(ctx.engine, ctx.store, dataclasses.replace(ctx.settings, gc_grace=grace))


def _stored(hub) -> set[str]:  # type: ignore[no-untyped-def]
    return {b.digest for b in hub.context.store.iter_blobs()}


def test_sixteen_publishers_of_one_version_one_wins_and_gc_leaves_no_orphans(hub, alice):
    clients = [hub.client(alice.headers["authorization"].split()[1]) for _ in range(16)]
    barrier = threading.Barrier(16, timeout=60)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def race(i: int, client: httpx.Client) -> None:
        text = manifest(weights=("weights/w.safetensors",))
        files = {"cvflow.toml": text.encode(), "solver.py": b"class Detector: pass\n",
                 "weights/w.safetensors": f"weights of publisher {i}".encode() * 100}
        entries = [{"path": p, "size": len(b), "sha256": upload(client, b)} for p, b in files.items()]
        barrier.wait()
        r = client.post("/api/v1/packages/alice/detector/versions", json={"manifest": text, "files": entries})
        with lock:
            results.append(r)

    threads = [threading.Thread(target=race, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [409] * 15, [r.text for r in results if r.status_code not in (201, 409)]
    assert all(error_code(r) == "version_exists" for r in results if r.status_code == 409)

    winner = next(r for r in results if r.status_code == 201).json()
    report = _gc(hub)
    assert len(report.blobs_removed) == 15
    referenced = {f["sha256"] for f in winner["files"]}
    assert _stored(hub) == referenced
    with session_scope(hub.context.engine) as session:
        assert set(session.exec(select(Blob.sha256)).all()) == referenced
        assert set(session.exec(select(File.sha256)).all()) == referenced
    got = hub.client().get("/api/v1/packages/alice/detector/versions/1.0.0/files/weights/w.safetensors")
    assert sha256(got.content) == next(f["sha256"] for f in winner["files"] if f["path"] == "weights/w.safetensors")


def test_gc_spares_uploads_in_flight_and_recent_blobs(hub, alice):
    early = upload(alice, b"uploaded, not yet published")
    data = os.urandom(6 * MiB)
    location = alice.post("/api/v1/uploads", json={"size": len(data)}).json()["location"]
    assert alice.patch(location, content=data[: 5 * MiB], headers={"upload-offset": "0"}).status_code == 200

    report = _gc(hub, grace=3600)
    assert report.blobs_removed == [] and report.staging_removed == 0 and report.uploads_expired == 0

    assert alice.patch(location, content=data[5 * MiB :], headers={"upload-offset": str(5 * MiB)}).status_code == 200
    assert alice.post(location + "/finish", json={"sha256": sha256(data)}).status_code == 201
    r = publish(alice, files={"solver.py": b"uploaded, not yet published", "weights/w.safetensors": data},
                weights=("weights/w.safetensors",))
    assert r.status_code == 201, r.text
    assert early in _stored(hub)
    # Once published, even a zero-grace collection keeps everything.
    assert _gc(hub).blobs_removed == []


def _cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    exe = Path(sys.executable).parent / "cvflow-hub"
    out = subprocess.run([str(exe), "--data-dir", str(data_dir), *args], input=stdin, capture_output=True,
                         text=True, timeout=60, check=True)
    return out.stdout.strip()


def _serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "cvflow-hub"
    proc = subprocess.Popen([str(exe), "--data-dir", str(data_dir), "serve", "--port", str(port),
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the hub did not become ready")


def test_a_hub_killed_mid_upload_loses_nothing_committed_and_the_upload_resumes(tmp_path):
    data_dir = tmp_path / "hub"
    _cli(data_dir, "user", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    token = _cli(data_dir, "token", "create", "--user", "alice")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    weights = os.urandom(3 * MiB)
    blob = os.urandom(8 * MiB)

    proc = _serve(data_dir, port)
    try:
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=30) as c:
            assert publish(c, files={"solver.py": b"x", "weights/w.safetensors": weights},
                           weights=("weights/w.safetensors",)).status_code == 201
            location = c.post("/api/v1/uploads", json={"size": len(blob)}).json()["location"]
            assert c.patch(location, content=blob[: 4 * MiB], headers={"upload-offset": "0"}).status_code == 200
        # Half of the second chunk is on the wire when the hub dies.
        url = urlsplit(base)
        with socket.create_connection((url.hostname, url.port)) as sock:
            sock.sendall((f"PATCH {location} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
                          f"Upload-Offset: {4 * MiB}\r\nContent-Length: {4 * MiB}\r\n\r\n").encode()
                         + blob[4 * MiB : 6 * MiB])
            time.sleep(0.3)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()

    proc = _serve(data_dir, port)
    try:
        with httpx.Client(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=30) as c:
            got = c.get("/api/v1/packages/alice/detector/versions/1.0.0/files/weights/w.safetensors")
            assert got.status_code == 200 and got.content == weights
            offset = c.get(location).json()["offset"]
            assert offset == 4 * MiB
            assert c.patch(location, content=blob[offset:], headers={"upload-offset": str(offset)}).status_code == 200
            done = c.post(location + "/finish", json={"sha256": sha256(blob)})
            assert done.status_code == 201, done.text
            r = publish(c, version="1.1.0", files={"solver.py": b"x", "weights/w.safetensors": blob},
                        weights=("weights/w.safetensors",))
            assert r.status_code == 201
            got = c.get("/api/v1/packages/alice/detector/versions/1.1.0/files/weights/w.safetensors")
            assert got.content == blob
    finally:
        proc.kill()
        proc.wait(10)

"""Blob uploads (chunked, resumable, verified) and downloads (Range, ETag, counting)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import start_hub
from tests.helpers import error_code, publish, sha256, upload

MiB = 1 << 20


def _open(client: httpx.Client, size: int) -> str:
    r = client.post("/api/v1/uploads", json={"size": size})
    assert r.status_code == 201, r.text
    assert r.json()["offset"] == 0
    return str(r.json()["location"])


def _chunk(client: httpx.Client, location: str, offset: int, data: bytes) -> httpx.Response:
    return client.patch(location, content=data, headers={"upload-offset": str(offset)})


def test_check_reports_only_missing_blobs(hub, alice):
    have = upload(alice, b"present")
    r = alice.post("/api/v1/blobs/check", json={"digests": [have, sha256(b"absent")]})
    assert r.json() == {"missing": [sha256(b"absent")], "present": [have]}
    r = alice.post("/api/v1/blobs/check", json={"digests": ["not-a-digest"]})
    assert r.status_code == 400 and error_code(r) == "invalid_digest"
    assert hub.client().post("/api/v1/blobs/check", json={"digests": [have]}).status_code == 401


def test_chunked_upload_resumes_from_the_reported_offset(hub, alice):
    data = os.urandom(11 * MiB)
    location = _open(alice, len(data))
    first = 5 * MiB
    assert _chunk(alice, location, 0, data[:first]).json()["offset"] == first

    # The client lost track; the hub tells it where to resume.
    status = alice.get(location)
    assert status.json()["offset"] == first and status.headers["upload-offset"] == str(first)
    # A chunk at the wrong offset is refused and changes nothing.
    r = _chunk(alice, location, 0, data[:first])
    assert r.status_code == 409 and error_code(r) == "upload_offset_mismatch"
    assert r.json()["error"]["details"]["offset"] == first

    assert _chunk(alice, location, first, data[first : 2 * first]).status_code == 200
    assert _chunk(alice, location, 2 * first, data[2 * first :]).status_code == 200
    done = alice.post(location + "/finish", json={"sha256": sha256(data)})
    assert done.status_code == 201 and done.json() == {"sha256": sha256(data), "size": len(data)}
    assert alice.get(location).status_code == 404

    published = publish(alice, files={"solver.py": b"x", "weights/model.safetensors": data},
                        weights=("weights/model.safetensors",))
    assert published.status_code == 201, published.text
    got = hub.client().get("/api/v1/packages/alice/detector/versions/1.0.0/files/weights/model.safetensors",
                           follow_redirects=True)
    assert got.content == data


def test_a_chunk_cut_mid_way_counts_for_nothing_and_can_be_resent(hub, alice):
    data = os.urandom(6 * MiB)
    location = _open(alice, len(data))
    # Send headers for the whole blob but only half the bytes, then hang up.
    url = urlsplit(hub.url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        head = (f"PATCH {location} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                f"Authorization: {alice.headers['authorization']}\r\nUpload-Offset: 0\r\n"
                f"Content-Length: {len(data)}\r\n\r\n")
        sock.sendall(head.encode() + data[: 3 * MiB])
    status = alice.get(location)
    assert status.json()["offset"] == 0
    assert _chunk(alice, location, 0, data).status_code == 200
    assert alice.post(location + "/finish", json={"sha256": sha256(data)}).status_code == 201
    assert alice.post("/api/v1/blobs/check", json={"digests": [sha256(data)]}).json()["missing"] == []


def test_bytes_that_do_not_match_the_digest_never_become_a_blob(hub, alice):
    data = b"the real bytes"
    location = _open(alice, len(data))
    _chunk(alice, location, 0, data)
    wrong = sha256(b"something else")
    r = alice.post(location + "/finish", json={"sha256": wrong})
    assert r.status_code == 400 and error_code(r) == "digest_mismatch"
    assert r.json()["error"]["details"]["actual"] == sha256(data)
    check = alice.post("/api/v1/blobs/check", json={"digests": [wrong, sha256(data)]}).json()
    assert sorted(check["missing"]) == sorted([wrong, sha256(data)])
    assert not list(hub.context.store.iter_blobs())


def test_finishing_early_is_refused(hub, alice):
    location = _open(alice, 10)
    _chunk(alice, location, 0, b"12345")
    r = alice.post(location + "/finish", json={"sha256": sha256(b"1234567890")})
    assert r.status_code == 400 and error_code(r) == "size_mismatch"


def test_uploads_over_the_limits_are_refused(hub, alice):
    r = alice.post("/api/v1/uploads", json={"size": hub.context.settings.max_blob_size + 1})
    assert r.status_code == 413 and error_code(r) == "upload_too_large"
    location = _open(alice, 4)
    r = _chunk(alice, location, 0, b"12345")
    assert r.status_code == 413 and error_code(r) == "upload_too_large"
    assert alice.get(location).json()["offset"] == 0


def test_uploads_belong_to_their_user_and_need_a_publish_scope(hub, alice):
    location = _open(alice, 3)
    bob = hub.user_client("bob")
    assert error_code(bob.get(location)) == "upload_not_found"
    assert error_code(_chunk(bob, location, 0, b"abc")) == "upload_not_found"
    reader = hub.client(hub.create_user("carol", scopes="read"))
    r = reader.post("/api/v1/uploads", json={"size": 3})
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    assert alice.delete(location).status_code == 204
    assert alice.get(location).status_code == 404


@pytest.fixture
def published(hub, alice):
    data = bytes(range(256)) * 64  # 16 KiB
    r = publish(alice, files={"solver.py": b"x", "weights/w.safetensors": data}, weights=("weights/w.safetensors",))
    assert r.status_code == 201, r.text
    return data, "/api/v1/packages/alice/detector/versions/1.0.0/files/weights/w.safetensors"


def _downloads(hub) -> int:
    # The version document is never cached; the package document may lag by the cache TTL.
    hub.context.downloads.flush()  # downloads are counted in memory and written in batches
    return int(hub.client().get("/api/v1/packages/alice/detector/versions/1.0.0").json()["downloads"])


def test_download_sends_etag_ranges_and_304(hub, published):
    data, url = published
    anon = hub.client()
    full = anon.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["etag"] == f'"{sha256(data)}"'
    assert anon.get(url, headers={"if-none-match": full.headers["etag"]}).status_code == 304

    part = anon.get(url, headers={"range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = anon.get(url, headers={"range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    r = anon.get(url, headers={"range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and error_code(r) == "invalid_range"
    assert error_code(anon.get(url.replace("w.safetensors", "nope"))) == "file_not_found"


def test_a_download_is_counted_per_fetch_of_the_manifest(hub, published):
    data, url = published
    manifest_url = url.rsplit("/files/", 1)[0] + "/files/cvflow.toml"
    anon = hub.client()
    assert _downloads(hub) == 0
    etag = anon.get(manifest_url).headers["etag"]
    anon.get(manifest_url, headers={"range": "bytes=0-9"})
    anon.get(manifest_url, headers={"range": "bytes=10-"})  # a resumed download is not a new one
    anon.get(manifest_url, headers={"if-none-match": etag})
    anon.get(url)  # other files of the version do not count again
    assert _downloads(hub) == 2
    history = anon.get("/api/v1/packages/alice/detector/downloads").json()
    assert history["total"] == 2 and sum(d["downloads"] for d in history["days"]) == 2


def test_s3_downloads_can_redirect_to_presigned_urls(make_settings, aws_credentials):
    hub, server = start_hub(make_settings("sqlite-s3", s3_presign=True))
    try:
        alice = hub.user_client("alice")
        data = os.urandom(100_000)
        publish(alice, files={"solver.py": b"x", "weights/w.safetensors": data}, weights=("weights/w.safetensors",))
        url = "/api/v1/packages/alice/detector/versions/1.0.0/files/weights/w.safetensors"
        r = hub.client().get(url)
        assert r.status_code == 302 and r.headers["etag"] == f'"{sha256(data)}"'
        assert not r.headers["location"].startswith(hub.url)
        assert httpx.get(r.headers["location"]).content == data
        hub.client().get(url.rsplit("/files/", 1)[0] + "/files/cvflow.toml", follow_redirects=True)
        assert _downloads(hub) == 1
    finally:
        hub.close_clients()
        server.__exit__()


def test_file_downloads_can_hand_off_to_nginx(make_settings):
    hub, server = start_hub(make_settings("sqlite-file", accel_redirect_prefix="/_blobs/"))
    try:
        alice = hub.user_client("alice")
        data = os.urandom(10_000)
        publish(alice, files={"solver.py": b"x", "weights/w.safetensors": data}, weights=("weights/w.safetensors",))
        r = hub.client().get("/api/v1/packages/alice/detector/versions/1.0.0/files/weights/w.safetensors")
        assert r.status_code == 200 and r.content == b"" and r.headers["etag"] == f'"{sha256(data)}"'
        location = r.headers["x-accel-redirect"]
        assert location.startswith("/_blobs/")
        # nginx serves the alias of /_blobs/ (the store's root) joined with the rest.
        assert (hub.context.store.root / location.removeprefix("/_blobs/")).read_bytes() == data
    finally:
        hub.close_clients()
        server.__exit__()

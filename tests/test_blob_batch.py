"""Batch uploads of small blobs (``POST /api/v1/blobs``): many blobs, one request, one transaction.

Each test runs against a live hub over a real socket, on SQLite + files and PostgreSQL + S3.
A batch is all or nothing: a blob that does not hash to its digest, a bad record or a limit
refuses the whole request and stores nothing. Stored blobs are granted to the uploader only,
like an upload session's: another user still cannot reference them by digest.
"""

from __future__ import annotations

import os

import httpx
import pytest

from hub.services.blobs import BATCH_BLOB_LIMIT, BATCH_COUNT
from tests.helpers import error_code, manifest, publish, sha256, upload

PKG = "/api/v1/packages"


def batch(*blobs: bytes, digests: list[str] | None = None, sizes: list[int] | None = None) -> bytes:
    """The batch body: a ``<sha256> <size>`` line before each blob's bytes."""
    out = bytearray()
    for i, data in enumerate(blobs):
        digest = digests[i] if digests else sha256(data)
        size = sizes[i] if sizes else len(data)
        out += f"{digest} {size}\n".encode() + data
    return bytes(out)


def post(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post("/api/v1/blobs", content=body, headers={"content-type": "application/octet-stream"})


def missing(client: httpx.Client, *blobs: bytes) -> list[str]:
    r = client.post("/api/v1/blobs/check", json={"digests": [sha256(b) for b in blobs]})
    assert r.status_code == 200, r.text
    return list(r.json()["missing"])


def test_a_batch_stores_every_blob_and_a_version_can_use_them(hub, alice) -> None:
    images = {f"images/{i:03d}.png": os.urandom(100 + i) for i in range(50)}
    empty = b""
    r = post(alice, batch(*images.values(), empty, images["images/000.png"]))  # a duplicate, an empty blob
    assert r.status_code == 201, r.text
    assert r.json()["blobs"][:2] == [{"sha256": sha256(b), "size": len(b)} for b in list(images.values())[:2]]
    assert len(r.json()["blobs"]) == 52
    assert missing(alice, *images.values(), empty) == []
    files = {"solver.py": b"class Detector: pass\n", **images}
    assert publish(alice, files=files).status_code == 201  # publish() uploads only what is missing
    for path, data in list(images.items())[:3]:
        got = hub.client().get(f"{PKG}/alice/detector/versions/1.0.0/files/{path}")
        assert got.status_code == 200 and got.content == data


def test_blobs_uploaded_in_a_batch_are_the_uploaders_alone(hub, alice, make_user) -> None:
    secret = os.urandom(64)
    assert post(alice, batch(secret)).status_code == 201
    bob = make_user("bob")
    assert missing(bob, secret) == [sha256(secret)], "knowing a digest is not holding the bytes"
    text = manifest("bob/thief", "1.0.0")
    files = [{"path": "cvflow.toml", "size": len(text.encode()), "sha256": upload(bob, text.encode())},
             {"path": "solver.py", "size": len(secret), "sha256": sha256(secret)}]
    r = bob.post(f"{PKG}/bob/thief/versions", json={"manifest": text, "files": files})
    assert r.status_code == 422 and error_code(r) == "missing_blobs", r.text
    assert post(bob, batch(secret)).status_code == 201  # holding the bytes: now bob may use them too
    assert missing(bob, secret) == []


def test_one_bad_blob_refuses_the_whole_batch_and_stores_nothing(hub, alice) -> None:
    good, bad = os.urandom(300), os.urandom(300)
    r = post(alice, batch(good, bad, digests=[sha256(good), sha256(b"something else")]))
    assert r.status_code == 400 and error_code(r) == "digest_mismatch"
    assert r.json()["error"]["details"]["expected"] == sha256(b"something else")
    assert missing(alice, good) == [sha256(good)]


@pytest.mark.parametrize("body, code", [
    (b"", "bad_request"),  # no blob
    (b"not a record\n", "bad_request"),
    (batch(b"abc", sizes=[4]), "bad_request"),  # ends inside the blob
    (batch(b"abc") + b"trailing", "bad_request"),
    (f"{sha256(b'abc')} 3".encode() + b"abc", "bad_request"),  # no newline
    (f"{sha256(b'abc').upper()} 3\n".encode() + b"abc", "invalid_digest"),
    (f"{'z' * 64} 3\n".encode() + b"abc", "invalid_digest"),
    (f"{sha256(b'abc')} -3\n".encode() + b"abc", "bad_request"),
    (f"{sha256(b'x')} {BATCH_BLOB_LIMIT + 1}\n".encode(), "upload_too_large"),
    (batch(*[b"%d" % i for i in range(BATCH_COUNT + 1)]), "body_too_large"),
    (b"\xff\xfe\x00 12\n", "invalid_digest"),
])
def test_malformed_batches_get_a_code_and_store_nothing(hub, alice, body: bytes, code: str) -> None:
    before = {b.digest for b in hub.context.store.iter_blobs()}
    r = post(alice, body)
    assert r.status_code in (400, 413), r.text
    assert error_code(r) == code
    assert {b.digest for b in hub.context.store.iter_blobs()} == before


def test_a_body_over_the_limit_is_refused_before_it_is_read(hub, alice) -> None:
    from hub.services.blobs import BATCH_BODY_LIMIT

    r = alice.post("/api/v1/blobs", content=b"x" * (BATCH_BODY_LIMIT + 1))
    assert r.status_code == 413 and error_code(r) == "body_too_large"
    assert r.json()["error"]["details"]["limit"] == BATCH_BODY_LIMIT


def test_a_batch_needs_a_token_with_a_publish_scope(hub) -> None:
    body = batch(b"data")
    r = post(hub.client(), body)
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    reader = hub.client(hub.create_user("carol", scopes="read"))
    r = post(reader, body)
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"

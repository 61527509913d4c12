"""Blob store behaviour, run against the file and the S3 backend alike."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import boto3
import httpx
import pytest

from hub.storage import (
    BlobNotFound,
    BlobStore,
    ChunkTooSmall,
    FileBlobStore,
    S3BlobStore,
    StorageError,
    UploadNotFound,
    open_store,
)
from hub.storage.s3 import client_config

MiB = 1 << 20
PART = 5 * MiB  # the smallest non-final chunk both backends accept


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pattern(size: int, seed: int = 0) -> bytes:
    """Bytes that differ at every offset a bug could confuse (not one repeated byte)."""
    block = hashlib.sha256(str(seed).encode()).digest() * 4096
    return (block * (size // len(block) + 1))[:size]


def read(store: BlobStore, digest: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.open_range(digest, start, end, chunk_size=64 * 1024))


def upload(store: BlobStore, upload_id: str, pieces: list[bytes]) -> tuple[str, str, int]:
    """Stage ``pieces`` as consecutive chunks, the last one final; return token, digest, size."""
    token = store.begin_upload(upload_id)
    offset = 0
    hasher = hashlib.sha256()
    for index, piece in enumerate(pieces):
        hasher.update(piece)
        n = store.write_chunk(
            upload_id,
            token,
            offset=offset,
            index=index,
            chunks=[piece],
            final=index == len(pieces) - 1,
        )
        assert n == len(piece)
        offset += n
    return token, hasher.hexdigest(), offset


def cut_after(data: bytes, n: int) -> Iterator[bytes]:
    """A client body that dies after ``n`` bytes."""
    yield data[:n]
    raise ConnectionResetError("client went away")


# --- blobs


def test_put_stat_and_ranges(store: BlobStore) -> None:
    data = pattern(200_000)
    digest = sha(data)
    store.put_bytes(digest, data)
    info = store.stat(digest)
    assert (info.digest, info.size) == (digest, len(data))
    assert info.modified.tzinfo is not None and info.modified.utcoffset() == UTC.utcoffset(None)
    assert read(store, digest) == data
    assert read(store, digest, 10, 20) == data[10:20]
    assert read(store, digest, 150_000) == data[150_000:]
    assert read(store, digest, 7, 7) == b""
    assert read(store, digest, 199_990, 10**9) == data[199_990:]
    assert read(store, digest, len(data)) == b""
    assert read(store, digest, len(data) + 5) == b""
    pieces = list(store.open_range(digest, 0, None, chunk_size=65_536))
    assert len(pieces) > 1 and b"".join(pieces) == data
    with pytest.raises(ValueError):
        store.open_range(digest, 10, 5)


def test_put_bytes_verifies_the_digest(store: BlobStore) -> None:
    with pytest.raises(StorageError):
        store.put_bytes(sha(b"right"), b"wrong")
    assert not store.exists(sha(b"right"))
    assert not store.exists(sha(b"wrong"))


def test_empty_blob(store: BlobStore) -> None:
    store.put_bytes(sha(b""), b"")
    assert store.stat(sha(b"")).size == 0
    assert read(store, sha(b"")) == b""
    store.delete(sha(b""))
    token, digest, size = upload(store, "empty", [b""])
    store.commit("empty", token, digest=digest, size=size)
    assert store.stat(digest).size == 0


def test_exists_and_delete(store: BlobStore) -> None:
    digest = sha(b"hello")
    assert not store.exists(digest)
    store.put_bytes(digest, b"hello")
    assert store.exists(digest)
    store.delete(digest)
    assert not store.exists(digest)
    store.delete(digest)  # missing is fine


def test_missing_blob_raises_blob_not_found(store: BlobStore) -> None:
    digest = sha(b"never stored")
    with pytest.raises(BlobNotFound):
        store.stat(digest)
    # Raised by the call itself, so a web handler fails before sending headers.
    with pytest.raises(FileNotFoundError):
        store.open_range(digest)
    with pytest.raises(BlobNotFound):
        store.open_range(digest, 3, 3)
    if isinstance(store, FileBlobStore):
        with pytest.raises(BlobNotFound):
            store.local_path(digest)


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, "g" * 64, "a" * 63 + "\n", "../" + "a" * 61])
def test_invalid_digests_are_rejected(store: BlobStore, bad: str) -> None:
    for call in (store.exists, store.stat, store.delete, store.open_range):
        with pytest.raises(ValueError):
            call(bad)
    with pytest.raises(ValueError):
        store.put_bytes(bad, b"x")


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a.b", "x" * 65, "é"])
def test_invalid_upload_ids_are_rejected(store: BlobStore, bad: str) -> None:
    with pytest.raises(ValueError):
        store.begin_upload(bad)
    with pytest.raises(ValueError):
        store.abort_upload(bad, "")


def test_on_storage_layout(store: BlobStore, backend: str, request: pytest.FixtureRequest) -> None:
    digest = sha(b"layout")
    store.put_bytes(digest, b"layout")
    relative = f"blobs/sha256/{digest[:2]}/{digest}"
    if isinstance(store, FileBlobStore):
        path = store.root / relative
        assert path.read_bytes() == b"layout"
        assert store.local_path(digest) == path
        token, _, _ = upload(store, "linked", [b"layout"])
        store.commit("linked", token, digest=digest, size=6)
        assert path.stat().st_mode & 0o222 == 0  # committed blobs are read-only
        # A crash between linking the blob and unlinking staging: the retried commit tidies up.
        os.link(path, store.root / "uploads" / "linked")
        store.commit("linked", token, digest=digest, size=6)
        assert list(store.iter_staged()) == [] and path.read_bytes() == b"layout"
        assert store.presigned_url(digest) is None
    else:
        assert isinstance(store, S3BlobStore)
        client = request.getfixturevalue("s3_client")
        body = client.get_object(Bucket=store.bucket, Key=f"hub/prefix/{relative}")["Body"]
        assert body.read() == b"layout"
        assert store.local_path(digest) is None


# --- uploads


def test_resumable_upload_then_commit(store: BlobStore) -> None:
    pieces = [pattern(PART, 1), pattern(PART, 2), pattern(1234, 3)]
    token, digest, size = upload(store, "up1", pieces)
    assert not store.exists(digest)  # nothing visible before commit
    store.commit("up1", token, digest=digest, size=size)
    assert store.stat(digest).size == size
    assert sha(read(store, digest)) == digest
    assert list(store.iter_staged()) == []
    store.commit("up1", token, digest=digest, size=size)  # a retried commit succeeds
    with pytest.raises(UploadNotFound):
        store.commit("up1", token, digest=sha(b"other"), size=size)


def test_retry_after_a_cut_replaces_the_partial_chunk(store: BlobStore) -> None:
    first, second = pattern(PART, 4), pattern(3 * MiB, 5)
    token = store.begin_upload("cut")
    store.write_chunk("cut", token, offset=0, index=0, chunks=[first], final=False)
    with pytest.raises(ConnectionResetError):
        store.write_chunk("cut", token, offset=PART, index=1, chunks=cut_after(b"junk" * MiB, MiB), final=True)
    if isinstance(store, FileBlobStore):
        assert (store.root / "uploads" / "cut").stat().st_size == PART + MiB  # junk on disk
    store.write_chunk("cut", token, offset=PART, index=1, chunks=[second[:MiB], second[MiB:]], final=True)
    store.commit("cut", token, digest=sha(first + second), size=len(first + second))
    assert read(store, sha(first + second)) == first + second


def test_resume_replaces_chunks_that_were_never_committed(store: BlobStore) -> None:
    """A crash after staging chunks 1 and 2 but before the hub recorded them."""
    first, tail = pattern(PART, 6), pattern(777, 7)
    token = store.begin_upload("stale")
    store.write_chunk("stale", token, offset=0, index=0, chunks=[first], final=False)
    store.write_chunk("stale", token, offset=PART, index=1, chunks=[pattern(PART, 8)], final=False)
    store.write_chunk("stale", token, offset=2 * PART, index=2, chunks=[pattern(PART, 9)], final=False)
    store.write_chunk("stale", token, offset=PART, index=1, chunks=[tail], final=True)
    store.commit("stale", token, digest=sha(first + tail), size=len(first + tail))
    assert read(store, sha(first + tail)) == first + tail


def test_read_staged_after_restart(make_store: Callable[[], BlobStore]) -> None:
    store = make_store()
    pieces = [pattern(PART, 10), pattern(2 * MiB, 11)]
    token, digest, size = upload(store, "restart", pieces)
    restarted = make_store()
    rehashed = hashlib.sha256()
    for piece in restarted.read_staged("restart", token, size=size, chunk_size=MiB):
        rehashed.update(piece)
    assert rehashed.hexdigest() == digest
    assert b"".join(restarted.read_staged("restart", token, size=size)) == b"".join(pieces)
    with pytest.raises(StorageError):
        restarted.read_staged("restart", token, size=size + 1)
    restarted.commit("restart", token, digest=digest, size=size)
    assert sha(read(make_store(), digest)) == digest


def test_read_staged_mid_upload(store: BlobStore) -> None:
    first = pattern(PART, 12)
    token = store.begin_upload("mid")
    store.write_chunk("mid", token, offset=0, index=0, chunks=[first], final=False)
    if isinstance(store, FileBlobStore):
        assert b"".join(store.read_staged("mid", token, size=PART)) == first
        store.write_chunk("mid", token, offset=PART, index=1, chunks=[b"end"], final=True)
        store.commit("mid", token, digest=sha(first + b"end"), size=PART + 3)
        assert read(store, sha(first + b"end")) == first + b"end"
    else:
        # S3 can only read parts back by completing the upload: it is sealed afterwards.
        assert b"".join(store.read_staged("mid", token, size=PART)) == first
        with pytest.raises(StorageError, match="sealed"):
            store.write_chunk("mid", token, offset=PART, index=1, chunks=[b"end"], final=True)
        assert [(s.upload_id, s.size) for s in store.iter_staged()] == [("mid", PART)]
        store.abort_upload("mid", token)
        assert list(store.iter_staged()) == []
    with pytest.raises(UploadNotFound):
        store.read_staged("nope", token, size=1)


def test_commit_never_overwrites_an_existing_blob(store: BlobStore) -> None:
    original = pattern(4096, 13)
    digest = sha(original)
    store.put_bytes(digest, original)
    if isinstance(store, FileBlobStore):
        os.utime(store.local_path(digest), (1_000_000_000, 1_000_000_000))
    before = store.stat(digest)
    # Even different staged bytes (a caller bug) must not replace what is stored.
    token, _, size = upload(store, "dup", [b"x" * 4096])
    store.commit("dup", token, digest=digest, size=size)
    assert store.stat(digest) == before
    assert read(store, digest) == original
    assert list(store.iter_staged()) == []
    store.put_bytes(digest, original)
    assert store.stat(digest) == before


def test_commit_with_too_few_staged_bytes_fails(store: BlobStore) -> None:
    token, digest, size = upload(store, "short", [b"abc"])
    with pytest.raises(StorageError):
        store.commit("short", token, digest=digest, size=size + 1)
    assert not store.exists(digest)


def test_abort_upload(store: BlobStore) -> None:
    store.begin_upload("gone")  # a begin whose token the hub never saved (a crash)
    token = store.begin_upload("gone")
    store.write_chunk("gone", token, offset=0, index=0, chunks=[b"abc"], final=True)
    store.abort_upload("gone", token)
    assert list(store.iter_staged()) == []
    store.abort_upload("gone", token)  # missing is fine
    with pytest.raises(UploadNotFound):
        store.write_chunk("gone", token, offset=0, index=0, chunks=[b"abc"], final=True)
    with pytest.raises(UploadNotFound):
        store.commit("gone", token, digest=sha(b"abc"), size=3)
    with pytest.raises(UploadNotFound):
        store.read_staged("gone", token, size=3)


def test_iter_blobs_and_iter_staged(store: BlobStore) -> None:
    blobs = {sha(bytes([i]) * 100): bytes([i]) * 100 for i in range(5)}
    for digest, data in blobs.items():
        store.put_bytes(digest, data)
    assert {(b.digest, b.size) for b in store.iter_blobs()} == {(d, 100) for d in blobs}
    assert all(b.modified.tzinfo is not None for b in store.iter_blobs())
    upload(store, "staged-a", [b"a" * 10])
    token = store.begin_upload("staged-b")
    staged = {s.upload_id: s for s in store.iter_staged()}
    assert {k: s.size for k, s in staged.items()} == {"staged-a": 10, "staged-b": 0}
    assert all(s.modified.tzinfo is not None for s in staged.values())
    store.abort_upload("staged-b", token)
    assert [s.upload_id for s in store.iter_staged()] == ["staged-a"]


def test_concurrent_uploads_from_threads(store: BlobStore) -> None:
    errors: list[Exception] = []

    def work(i: int) -> None:
        try:
            data = pattern(50_000 + i, 100 + i)
            token, digest, size = upload(store, f"thread-{i}", [data])
            store.commit(f"thread-{i}", token, digest=digest, size=size)
            assert read(store, digest) == data
        except Exception as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(store.iter_blobs())) == 8


# --- backend specifics


def test_small_non_final_chunk(store: BlobStore) -> None:
    token = store.begin_upload("small")
    consumed: list[bytes] = []

    def body() -> Iterator[bytes]:
        for piece in (b"a" * 1000, b"b" * 1000):
            consumed.append(piece)
            yield piece

    if isinstance(store, S3BlobStore):
        with pytest.raises(ChunkTooSmall):
            store.write_chunk("small", token, offset=0, index=0, chunks=body(), final=False)
        assert len(consumed) == 2  # consumed once, so the caller's hash saw every byte
    else:
        assert store.write_chunk("small", token, offset=0, index=0, chunks=body(), final=False) == 2000


def test_s3_two_chunk_upload_of_12_mib(s3_store: S3BlobStore, s3_client: object) -> None:
    first, second = pattern(5 * MiB, 20), pattern(7 * MiB, 21)
    token, digest, size = upload(s3_store, "big", [first, second])
    s3_store.commit("big", token, digest=digest, size=size)
    assert s3_store.stat(digest).size == 12 * MiB
    assert sha(read(s3_store, digest)) == digest
    assert read(s3_store, digest, 5 * MiB - 3, 5 * MiB + 3) == (first + second)[5 * MiB - 3 : 5 * MiB + 3]
    listed = s3_client.list_objects_v2(Bucket=s3_store.bucket)  # type: ignore[attr-defined]
    assert [o["Key"] for o in listed["Contents"]] == [f"blobs/sha256/{digest[:2]}/{digest}"]


def test_presigned_url(store: BlobStore, request: pytest.FixtureRequest) -> None:
    data = pattern(3000, 30)
    digest = sha(data)
    store.put_bytes(digest, data)
    if isinstance(store, FileBlobStore):
        assert store.presigned_url(digest, filename="model.bin") is None
        return
    url = store.presigned_url(digest, expires=60, filename="résumé model.bin")
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "r%C3%A9sum%C3%A9%20model.bin" in disposition
    assert isinstance(store, S3BlobStore)
    plain = S3BlobStore(request.getfixturevalue("s3_client"), store.bucket, store.prefix)
    assert plain.exists(digest)
    assert plain.presigned_url(digest) is None  # presigning is opt-in


def test_check_passes_on_a_usable_store(store: BlobStore) -> None:
    store.check()


def test_check_fails_for_a_missing_bucket(s3_endpoint: str, aws_env: None) -> None:
    store = open_store(f"s3://no-such-bucket-here?endpoint={s3_endpoint}&region=us-east-1")
    with pytest.raises(StorageError, match="does not exist"):
        store.check()


def test_check_fails_for_an_unreachable_endpoint(aws_env: None) -> None:
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        config=client_config(path_style=True, max_attempts=1),
    )
    with pytest.raises(StorageError, match="cannot be reached"):
        S3BlobStore(client, "bucket").check()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_check_fails_for_an_unwritable_directory(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(StorageError):
            FileBlobStore(root).check()
    finally:
        root.chmod(0o700)


def test_check_fails_when_the_root_cannot_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError):
        FileBlobStore(tmp_path / "file" / "store").check()


# --- open_store


def test_open_store_file_urls(tmp_path: Path) -> None:
    root = tmp_path / "with space"
    store = open_store(root.as_uri())
    assert isinstance(store, FileBlobStore) and store.root == root
    assert store.url == root.as_uri()
    assert isinstance(open_store(str(root)), FileBlobStore)
    for bad in ("relative/path", "file://host/x", "file:relative", "ftp://x/y", "gs://b"):
        with pytest.raises(ValueError):
            open_store(bad)


def test_open_store_s3_urls(aws_env: None) -> None:
    store = open_store("s3://AKIA:s3cret@bucket/some/prefix/?endpoint=http://127.0.0.1:9&region=eu-west-1")
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("bucket", "some/prefix")
    assert store.url == "s3://bucket/some/prefix"
    assert "s3cret" not in repr(store)
    assert store.presigned_url(sha(b"")) is None
    store = open_store("s3://bucket", s3_endpoint_url="http://127.0.0.1:9", s3_region="us-east-1")
    assert store.url == "s3://bucket"
    with pytest.raises(ValueError, match="unknown S3 URL options"):
        open_store("s3://bucket?endpiont=http://x")
    with pytest.raises(ValueError, match="twice"):
        open_store("s3://bucket?region=a", s3_region="b")
    with pytest.raises(ValueError, match="no bucket"):
        open_store("s3:///prefix")

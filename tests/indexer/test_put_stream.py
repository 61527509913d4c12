"""``UploadService.put_stream``: a stream becomes a blob only when whole and verified, on both backends."""

from __future__ import annotations

import os

import pytest

from hub.db import session_scope
from hub.errors import HubError
from hub.services.blobs import find_blobs
from tests.helpers import sha256

MiB = 1 << 20


def _pieces(data: bytes, size: int = MiB):  # type: ignore[no-untyped-def]
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _nothing_staged(hub) -> bool:  # type: ignore[no-untyped-def]
    return list(hub.context.store.iter_staged()) == []


def test_a_stream_is_stored_in_parts_and_verified(ihub):
    uploads = ihub.context.uploads
    data = os.urandom(11 * MiB + 123)
    digest, size = uploads.put_stream(_pieces(data), len(data), sha256=sha256(data), part_size=5 * MiB, grant_to=None)
    assert (digest, size) == (sha256(data), len(data))
    assert b"".join(ihub.context.store.open_range(digest)) == data
    with session_scope(ihub.context.engine) as session:
        assert find_blobs(session, [digest], touch=False) == {digest: len(data)}
    assert uploads.put_stream(iter([b""]), 0, grant_to=None) == (sha256(b""), 0)
    assert _nothing_staged(ihub)


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"sha256": "0" * 64}, "digest_mismatch"),
    ({"size": 100}, "size_mismatch"),
    ({"max_size": 6 * MiB}, "upload_too_large"),
])
def test_a_stream_that_does_not_verify_stores_nothing(ihub, kwargs, code):
    data = os.urandom(7 * MiB)
    with pytest.raises(HubError) as caught:
        ihub.context.uploads.put_stream(_pieces(data), part_size=5 * MiB, grant_to=None, **kwargs)
    assert caught.value.code == code
    assert not ihub.context.store.exists(sha256(data))
    assert _nothing_staged(ihub)

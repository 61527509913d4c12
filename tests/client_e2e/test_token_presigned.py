"""A private package's download, redirected to a presigned S3 URL, leaves the token at the hub.

A real hub on S3 (moto's server) with ``s3_presign`` answers each file download with a 302 to
the store. The hub must get the token (the package is private); the store must not: its
presigned URL is the credential there, and S3 refuses a request that carries two.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cvflow.api import HubClient
from cvflow.cache import Cache
from cvflow.pull import pull
from tests.conftest import start_hub
from tests.helpers import LiveHub, publish


@pytest.fixture
def presigning_hub(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    live, server = start_hub(make_settings("sqlite-s3", s3_presign=True))
    yield live
    live.close_clients()
    server.__exit__()
    live.context.engine.dispose()


def test_the_token_stays_at_the_hub_when_a_download_is_redirected(presigning_hub: LiveHub, tmp_path: Path) -> None:
    token = presigning_hub.create_user("alice")
    weights = bytes(range(256)) * 1000
    r = publish(presigning_hub.client(token), files={"weights/w.bin": weights}, private=True)
    assert r.status_code == 201, r.text
    sent: list[tuple[str, str | None]] = []
    http = httpx.Client(base_url=presigning_hub.url, follow_redirects=True)

    with HubClient(presigning_hub.url, token, client=http) as client:
        client.http.event_hooks["request"].append(lambda q: sent.append((str(q.url), q.headers.get("authorization"))))
        path = pull(client, Cache(tmp_path / "cache"), "alice/detector")

    assert (path / "weights" / "w.bin").read_bytes() == weights
    hub_origin = httpx.URL(presigning_hub.url)
    at_hub = [auth for url, auth in sent if httpx.URL(url).netloc == hub_origin.netloc]
    at_store = [(url, auth) for url, auth in sent if httpx.URL(url).netloc != hub_origin.netloc]
    assert at_hub and set(at_hub) == {f"Bearer {token}"}
    assert at_store, "the downloads were redirected to the store"
    assert all("X-Amz-Signature" in url and auth is None for url, auth in at_store), at_store

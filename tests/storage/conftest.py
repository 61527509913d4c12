"""Fixtures that run every storage test against both backends over real I/O.

The S3 backend talks HTTP over a loopback socket to moto's threaded server, one per
session, with a fresh bucket per test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from hub.storage import BlobStore, S3BlobStore, open_store
from hub.storage.s3 import client_config

REGION = "us-east-1"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials, and no profile or config file of the machine's user."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_client(s3_endpoint: str, aws_env: None) -> object:
    """A raw client, to set up buckets and look behind the store's back."""
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION, config=client_config(path_style=True))


@pytest.fixture
def s3_bucket(s3_client: object) -> str:
    name = f"cvflow-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], BlobStore]:
    """Build a new store object over the same directory or bucket on every call.

    A second call stands in for a hub restart: no state but what the backend persisted.
    """
    if backend == "file":
        root = tmp_path / "store"
        return lambda: open_store(root.as_uri())
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    url = f"s3://{bucket}/hub/prefix?endpoint={endpoint}&region={REGION}"
    return lambda: open_store(url, s3_presign=True)


@pytest.fixture
def store(make_store: Callable[[], BlobStore]) -> BlobStore:
    return make_store()


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str) -> S3BlobStore:
    store = open_store(f"s3://{s3_bucket}?endpoint={s3_endpoint}&region={REGION}", s3_presign=True)
    assert isinstance(store, S3BlobStore)
    return store

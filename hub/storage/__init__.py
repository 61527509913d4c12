"""Blob storage: one small interface, a ``file://`` and an ``s3://`` backend.

The hub builds its store once at start-up with :func:`open_store` from the configured URL
and reaches it through the app; nothing else imports a backend directly.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from .base import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    ChunkTooSmall,
    StagedInfo,
    StorageError,
    UploadNotFound,
    blob_key,
    content_disposition,
    is_digest,
    is_upload_id,
    staging_key,
    validate_digest,
    validate_upload_id,
)
from .filesystem import FileBlobStore

if TYPE_CHECKING:
    from .s3 import S3BlobStore

__all__ = [
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "ChunkTooSmall",
    "FileBlobStore",
    "S3BlobStore",
    "StagedInfo",
    "StorageError",
    "UploadNotFound",
    "blob_key",
    "content_disposition",
    "is_digest",
    "is_upload_id",
    "open_store",
    "redact_url",
    "staging_key",
    "validate_digest",
    "validate_upload_id",
]

def __getattr__(name: str) -> Any:
    if name == "S3BlobStore":
        from .s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(name)


_S3_QUERY = {"endpoint", "region"}


def open_store(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    s3_presign: bool = False,
) -> BlobStore:
    """Build the blob store a URL names.

    ``file:///abs/path`` or a bare absolute path gives a :class:`FileBlobStore`;
    ``s3://bucket/optional/prefix[?endpoint=http://host:9000&region=us-east-1]`` an
    :class:`S3BlobStore` whose credentials come from boto3's chain (``AWS_ACCESS_KEY_ID``
    ...) unless the URL carries ``key:secret@``. Nothing is contacted here; call
    ``check()`` for that. Raises ValueError for an unknown scheme or a malformed URL.
    """
    if url.startswith("/"):
        return FileBlobStore(url)
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file storage URLs must be local: {redact_url(url)}")
        path = urllib.parse.unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"file storage URLs need an absolute path: {redact_url(url)}")
        return FileBlobStore(path)
    if scheme == "s3":
        return _open_s3(url, parts, s3_endpoint_url, s3_region, s3_presign)
    raise ValueError(f"unsupported storage URL {redact_url(url)!r}: use file:///absolute/path or s3://bucket/prefix")


def _open_s3(
    url: str,
    parts: urllib.parse.SplitResult,
    endpoint: str | None,
    region: str | None,
    presign: bool,
) -> S3BlobStore:
    bucket = parts.hostname
    if not bucket:
        raise ValueError(f"S3 storage URL has no bucket: {redact_url(url)}")
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(query) - _S3_QUERY
    if unknown:
        raise ValueError(f"unknown S3 URL options {sorted(unknown)}; known: {sorted(_S3_QUERY)}")
    endpoint = _one_of("endpoint", query.get("endpoint"), endpoint)
    region = _one_of("region", query.get("region"), region)
    access_key = secret_key = None
    if parts.username is not None:
        access_key = urllib.parse.unquote(parts.username)
        secret_key = urllib.parse.unquote(parts.password or "")
    from .s3 import S3BlobStore  # boto3 takes ~0.3 s and ~30 MB to import: only when used

    # parts.hostname is lower-cased; bucket names are lower-case anyway, but keep the prefix.
    return S3BlobStore.create(
        bucket,
        urllib.parse.unquote(parts.path),
        endpoint_url=endpoint,
        region=region,
        presign=presign,
        access_key=access_key,
        secret_key=secret_key,
    )


def _one_of(name: str, from_url: str | None, from_settings: str | None) -> str | None:
    if from_url and from_settings and from_url != from_settings:
        raise ValueError(f"S3 {name} given twice, differently, in the URL and the settings")
    return from_url or from_settings or None


def redact_url(url: str) -> str:
    """``url`` without user info (credentials), for logs and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))

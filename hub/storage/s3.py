"""Blob store in an S3-compatible bucket (``s3://bucket/prefix``; AWS, MinIO, Ceph).

Layout under the prefix: ``blobs/sha256/<aa>/<digest>`` and staging ``uploads/<id>``. A
staged upload is a multipart upload whose part ``n`` is client chunk ``n - 1``; it is
completed ("sealed") to the staging key, then copied to the blob key.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from urllib3.exceptions import HTTPError as Urllib3Error

from .base import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    ChunkTooSmall,
    StagedInfo,
    StorageError,
    UploadNotFound,
    blob_key,
    check_range,
    content_disposition,
    is_digest,
    is_upload_id,
    staging_key,
    validate_digest,
)

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
_SPOOL_SIZE = 8 * MiB  # chunks bigger than this spill to disk while they are staged
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


def client_config(*, path_style: bool = False, max_attempts: int = 5) -> Config:
    """Botocore settings for a client shared by the hub's worker threads."""
    return Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=32,
        connect_timeout=10,
        read_timeout=60,
        signature_version="s3v4",
        # S3-compatible servers (MinIO, Ceph) and IP endpoints want /bucket/key URLs.
        s3={"addressing_style": "path"} if path_style else {},
        # Trailing CRC checksums break many S3-compatible servers; parts carry
        # Content-MD5 instead and the hub verifies sha256 of every blob itself.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _translate(what: str, missing: type[StorageError] = BlobNotFound) -> Iterator[None]:
    """Turn botocore errors into the store's errors, keeping the original as the cause."""
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code == "NoSuchUpload":
            raise UploadNotFound(f"{what}: no such upload") from exc
        if code in _NOT_FOUND:
            raise missing(f"{what}: not found") from exc
        if code == "NoSuchBucket":
            raise StorageError(f"{what} failed: the bucket does not exist") from exc
        raise StorageError(f"{what} failed ({code or 'unknown error'})") from exc
    except NoCredentialsError as exc:
        raise StorageError(f"{what} failed: no S3 credentials are configured") from exc
    except BotoCoreError as exc:  # connection refused, timeouts, bad endpoint
        raise StorageError(f"{what} failed: the storage endpoint cannot be reached") from exc


def _stream(body: Any, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk_size)
    except (BotoCoreError, Urllib3Error, OSError) as exc:
        raise StorageError("reading from storage failed") from exc
    finally:
        body.close()


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class S3BlobStore(BlobStore):
    """Blobs as objects in ``bucket`` under ``prefix``; takes a ready boto3 S3 client.

    boto3 clients are thread-safe, so one store serves all worker threads.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        presign: bool = False,
        transfer_config: TransferConfig | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.presign = presign
        self._transfer = transfer_config or TransferConfig(multipart_chunksize=64 * MiB)
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

    @classmethod
    def create(
        cls,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        presign: bool = False,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> S3BlobStore:
        """Build the client from boto3's credential chain (or explicit keys)."""
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=client_config(path_style=endpoint_url is not None),
        )
        return cls(client, bucket, prefix, presign=presign)

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r})"

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _blob(self, digest: str) -> str:
        return self._key(blob_key(digest))

    def _staged(self, upload_id: str) -> str:
        return self._key(staging_key(upload_id))

    def _call(self, what: str, operation: str, missing: type[StorageError] = BlobNotFound, **kw: Any) -> Any:
        with _translate(what, missing):
            return getattr(self._client, operation)(Bucket=self.bucket, **kw)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._call("reading object metadata", "head_object", Key=key)
            return head
        except BlobNotFound:
            return None

    def _items(self, what: str, operation: str, field: str, **kw: Any) -> Iterator[dict[str, Any]]:
        """Every ``field`` entry of every page of a paginated listing."""
        pages = iter(self._client.get_paginator(operation).paginate(Bucket=self.bucket, **kw))
        while True:
            with _translate(what):
                page = next(pages, None)
            if page is None:
                return
            yield from page.get(field, [])

    # --- blobs

    def exists(self, digest: str) -> bool:
        return self._head(self._blob(digest)) is not None

    def stat(self, digest: str) -> BlobInfo:
        head = self._call(f"blob {digest}", "head_object", Key=self._blob(digest))
        return BlobInfo(digest, head["ContentLength"], _utc(head["LastModified"]))

    def open_range(
        self, digest: str, start: int = 0, end: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        check_range(start, end, chunk_size)
        key = self._blob(digest)
        if end == start:
            self.stat(digest)  # nothing to read, but a missing blob must still fail
            return iter(())
        kw: dict[str, Any] = {}
        # No Range for a whole read: S3 answers 416 to any range on an empty object.
        if start or end is not None:
            kw["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        with _translate(f"blob {digest}"):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=key, **kw)
            except ClientError as exc:
                if _code(exc) == "InvalidRange":  # start at or past the end: nothing to send
                    return iter(())
                raise
        return _stream(response["Body"], chunk_size)

    def local_path(self, digest: str) -> None:
        validate_digest(digest)

    def presigned_url(self, digest: str, *, expires: int = 300, filename: str | None = None) -> str | None:
        """A presigned GET URL, or None unless the store was built with ``presign=True``."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._blob(digest)}
        if not self.presign:
            return None
        if not 1 <= expires <= 7 * 24 * 3600:
            raise ValueError("expires must be between 1 second and 7 days")
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        with _translate("signing a download URL"):
            url: str = self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
            return url

    def delete(self, digest: str) -> None:
        self._call(f"deleting blob {digest}", "delete_object", Key=self._blob(digest))

    def iter_blobs(self) -> Iterator[BlobInfo]:
        prefix = self._key("blobs/sha256/")
        for obj in self._items("listing blobs", "list_objects_v2", "Contents", Prefix=prefix):
            fan, _, digest = obj["Key"][len(prefix) :].partition("/")
            if is_digest(digest) and digest[:2] == fan:  # skip foreign objects
                yield BlobInfo(digest, obj["Size"], _utc(obj["LastModified"]))

    def check(self) -> None:
        """Raise StorageError if the bucket is missing, forbidden or unreachable."""
        try:
            self._call("storage check", "head_bucket")
        except BlobNotFound as exc:  # head_bucket's 404 carries no error code name
            raise StorageError(f"bucket {self.bucket!r} does not exist") from exc

    # --- staging

    def begin_upload(self, upload_id: str) -> str:
        response = self._call("starting an upload", "create_multipart_upload", Key=self._staged(upload_id))
        return str(response["UploadId"])

    def write_chunk(
        self,
        upload_id: str,
        token: str,
        *,
        offset: int,
        index: int,
        chunks: Iterable[bytes],
        final: bool,
    ) -> int:
        key = self._staged(upload_id)
        if offset < 0 or index < 0:
            raise ValueError("offset and index must not be negative")
        if index >= MAX_PARTS:
            raise StorageError(f"an upload may have at most {MAX_PARTS} chunks")
        if not token:
            raise UploadNotFound(f"no staged upload {upload_id}")
        md5 = hashlib.md5(usedforsecurity=False)
        written = 0
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_SIZE) as spool:
            for piece in chunks:
                written += len(piece)
                if written > MAX_PART_SIZE:
                    raise StorageError("a chunk may be at most 5 GiB")
                try:
                    spool.write(piece)
                except OSError as exc:
                    raise StorageError("spooling a chunk failed") from exc
                md5.update(piece)
            if not final and written < MIN_PART_SIZE:
                raise ChunkTooSmall(f"non-final chunks must be at least {MIN_PART_SIZE} bytes")
            spool.seek(0)
            try:
                self._call(
                    "staging a chunk",
                    "upload_part",
                    UploadNotFound,
                    Key=key,
                    UploadId=token,
                    PartNumber=index + 1,  # a retry overwrites it
                    Body=spool,
                    ContentLength=written,
                    ContentMD5=_b64(md5.digest()),
                )
            except StorageError as exc:
                # Servers differ in what they answer for a completed or aborted upload
                # (S3: NoSuchUpload, some a 500), so look before blaming the server.
                if self._head(key) is not None:
                    raise StorageError(f"upload {upload_id} was sealed; restart it") from exc
                if not isinstance(exc, UploadNotFound) and not self._upload_exists(key, token):
                    raise UploadNotFound(f"no staged upload {upload_id}") from exc
                raise
        return written

    def _upload_exists(self, key: str, token: str) -> bool:
        try:
            self._call("reading an upload", "list_parts", Key=key, UploadId=token, MaxParts=1)
        except UploadNotFound:
            return False
        except StorageError:
            return True  # unknown: let the original error stand
        return True

    def _seal(self, upload_id: str, token: str, size: int) -> int:
        """Complete the multipart upload to the staging key (once); return its size."""
        key = self._staged(upload_id)
        head = self._head(key)
        if head is not None:
            return int(head["ContentLength"])
        if not token:
            raise UploadNotFound(f"no staged upload {upload_id}")
        try:
            parts = list(self._items("reading an upload", "list_parts", "Parts", Key=key, UploadId=token))
            if not parts and size == 0:
                # A multipart upload cannot complete without parts; stage an empty object.
                self.abort_upload(upload_id, token)
                self._call("sealing an upload", "put_object", Key=key, Body=b"")
                return 0
            # Parts past `size` are chunks the hub never committed (a crash, then a resume
            # with a different final chunk): leave them out.
            chosen: list[dict[str, Any]] = []
            total = 0
            for number, part in enumerate(sorted(parts, key=lambda p: p["PartNumber"]), 1):
                if chosen and total >= size:
                    break
                if part["PartNumber"] != number:
                    raise StorageError(f"upload {upload_id} is missing chunk {number - 1}")
                chosen.append({"PartNumber": number, "ETag": part["ETag"]})
                total += part["Size"]
            if total != size:
                raise StorageError(f"upload {upload_id} has {total} staged bytes, not {size}")
            self._call(
                "sealing an upload",
                "complete_multipart_upload",
                Key=key,
                UploadId=token,
                MultipartUpload={"Parts": chosen},
            )
            return size
        except UploadNotFound:
            head = self._head(key)  # sealed meanwhile by a racing call
            if head is None:
                raise
            return int(head["ContentLength"])

    def read_staged(self, upload_id: str, token: str, *, size: int, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        sealed = self._seal(upload_id, token, size)
        if sealed < size:
            raise StorageError(f"upload {upload_id} has {sealed} staged bytes, not {size}")
        if size == 0:
            return iter(())
        response = self._call(
            f"reading upload {upload_id}",
            "get_object",
            UploadNotFound,
            Key=self._staged(upload_id),
            Range=f"bytes=0-{size - 1}",
        )
        return _stream(response["Body"], chunk_size)

    def commit(self, upload_id: str, token: str, *, digest: str, size: int) -> None:
        target, staged = self._blob(digest), self._staged(upload_id)
        try:
            sealed = self._seal(upload_id, token, size)
        except UploadNotFound:
            # A retried commit whose first attempt finished: the blob is there already.
            head = self._head(target)
            if head is not None and head["ContentLength"] == size:
                return
            raise
        if sealed != size:
            raise StorageError(f"upload {upload_id} has {sealed} staged bytes, not {size}")
        if self._head(target) is None:
            # A commit racing on the same digest could copy too, but only identical
            # verified bytes; an existing blob is never touched. Managed copy: > 5 GiB.
            self._call(
                "committing an upload",
                "copy",
                UploadNotFound,
                CopySource={"Bucket": self.bucket, "Key": staged},
                Key=target,
                Config=self._transfer,
            )
        self._call("committing an upload", "delete_object", Key=staged)

    def abort_upload(self, upload_id: str, token: str) -> None:
        key = self._staged(upload_id)
        # Also abort uploads begun for this id whose token was never persisted.
        tokens = {token} if token else set()
        uploads = self._items("aborting an upload", "list_multipart_uploads", "Uploads", Prefix=key)
        tokens.update(u["UploadId"] for u in uploads if u["Key"] == key)
        for each in sorted(tokens):
            with contextlib.suppress(UploadNotFound):
                self._call("aborting an upload", "abort_multipart_upload", Key=key, UploadId=each)
        self._call("aborting an upload", "delete_object", Key=key)

    def iter_staged(self) -> Iterator[StagedInfo]:
        prefix = self._key("uploads/")
        multipart = self._items("listing uploads", "list_multipart_uploads", "Uploads", Prefix=prefix)
        for upload in multipart:
            size, modified = 0, upload["Initiated"]
            try:
                for part in self._items(
                    "listing uploads",
                    "list_parts",
                    "Parts",
                    Key=upload["Key"],
                    UploadId=upload["UploadId"],
                ):
                    size, modified = size + part["Size"], max(modified, part["LastModified"])
            except UploadNotFound:
                continue  # completed or aborted while we listed
            name = upload["Key"][len(prefix) :]
            if is_upload_id(name):
                yield StagedInfo(name, size, _utc(modified))
        # Sealed by read_staged but not committed yet.
        for obj in self._items("listing uploads", "list_objects_v2", "Contents", Prefix=prefix):
            name = obj["Key"][len(prefix) :]
            if is_upload_id(name):
                yield StagedInfo(name, obj["Size"], _utc(obj["LastModified"]))

    # --- convenience

    def _put_verified(self, digest: str, data: bytes) -> None:
        try:
            self._call(
                f"storing blob {digest}",
                "put_object",
                Key=self._blob(digest),
                Body=data,
                ContentMD5=_b64(hashlib.md5(data, usedforsecurity=False).digest()),
                ContentType="application/octet-stream",
                IfNoneMatch="*",  # atomic no-overwrite where the server supports it
            )
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _code(cause) in {"PreconditionFailed", "412"}:
                return  # stored meanwhile by someone else: same verified bytes
            raise

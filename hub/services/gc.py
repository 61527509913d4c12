"""Garbage collection of blobs nothing references and of abandoned uploads.

Safe while the hub serves: a blob is removed only when no file and no annotation project's
item references it *and* it was neither stored nor reported present within ``gc_grace``
seconds, so a client between uploading blobs and publishing their version (or adding them to
a project) keeps them. The row is deleted first, in a
statement that re-checks both conditions, and the bytes only if that delete won; staging of
uploads still being written is left alone until ``upload_expiry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from hub.db import session_scope
from hub.models import AnnotationItem, Blob, File, TrainingJob, Upload, utcnow
from hub.settings import Settings
from hub.storage import BlobStore


@dataclass
class GcReport:
    blobs_removed: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    stray_objects_removed: list[str] = field(default_factory=list)
    uploads_expired: int = 0
    staging_removed: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "blobs_removed": len(self.blobs_removed),
            "bytes_freed": self.bytes_freed,
            "stray_objects_removed": len(self.stray_objects_removed),
            "uploads_expired": self.uploads_expired,
            "staging_removed": self.staging_removed,
        }


def collect_garbage(
    engine: Engine, store: BlobStore, settings: Settings, *, now: datetime | None = None, dry_run: bool = False
) -> GcReport:
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.gc_grace)
    report = GcReport()
    unreferenced = sa.and_(~sa.exists().where(col(File.sha256) == Blob.sha256),
                           ~sa.exists().where(col(AnnotationItem.sha256) == Blob.sha256),
                           ~sa.exists().where(col(TrainingJob.checkpoint_sha256) == Blob.sha256),
                           ~sa.exists().where(col(TrainingJob.preview_sha256) == Blob.sha256))

    with session_scope(engine) as session:
        candidates = session.exec(
            select(Blob.sha256, Blob.size).where(Blob.created_at < cutoff, Blob.touched_at < cutoff, unreferenced)
        ).all()
        known = set(session.exec(select(Blob.sha256)).all())
        live_uploads = {u.id: u for u in session.exec(select(Upload)).all()}

    for digest, size in candidates:
        if dry_run:
            report.blobs_removed.append(digest)
            report.bytes_freed += size
            continue
        with session_scope(engine, write=True) as session:
            gone = session.exec(
                sa.delete(Blob).where(
                    col(Blob.sha256) == digest, col(Blob.created_at) < cutoff, col(Blob.touched_at) < cutoff, unreferenced
                )
            ).rowcount
        if gone == 1:
            store.delete(digest)
            report.blobs_removed.append(digest)
            report.bytes_freed += size

    # Bytes in the store with no row: a hub killed between storing and recording them.
    for info in store.iter_blobs():
        if info.digest not in known and info.modified < cutoff:
            report.stray_objects_removed.append(info.digest)
            if not dry_run:
                with session_scope(engine) as session:
                    if session.get(Blob, info.digest) is not None:
                        continue  # recorded since we looked
                store.delete(info.digest)

    expiry = now - timedelta(seconds=settings.upload_expiry)
    for upload in live_uploads.values():
        if upload.updated_at < expiry:
            report.uploads_expired += 1
            if not dry_run:
                store.abort_upload(upload.id, upload.storage_token)
                with session_scope(engine, write=True) as session:
                    session.exec(sa.delete(Upload).where(col(Upload.id) == upload.id, col(Upload.updated_at) < expiry))
    for staged in store.iter_staged():
        if staged.upload_id not in live_uploads and staged.modified < cutoff:
            report.staging_removed += 1
            if not dry_run:
                store.abort_upload(staged.upload_id, "")
    return report

"""An upstream that lies, and a feed with a gap: each is detected, reported, and nothing of it is stored."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import select

from hub.db import session_scope
from hub.mirror import feed as change_feed
from hub.models import ChangeEvent, File, Package, Version
from tests.helpers import upload
from tests.mirror._helpers import blob_rows, publish_ok, stored_blobs, sync, version_doc


def _weights(live, name, version):  # type: ignore[no-untyped-def]
    return next(f for f in version_doc(live, name, version)["files"] if f["path"] == "weights.safetensors")


def _overwrite(live, digest, data):  # type: ignore[no-untyped-def]
    path = live.context.store.local_path(digest)
    path.chmod(0o644)
    path.write_bytes(data)


def _nothing_of(mirror, name, digest):  # type: ignore[no-untyped-def]
    assert mirror.client().get(f"/api/v1/packages/{name}").status_code == 404
    assert digest not in stored_blobs(mirror) and digest not in blob_rows(mirror)
    partial = mirror.context.settings.data_dir / "mirror" / "partial"
    assert not partial.exists() or not any(partial.iterdir())


def test_wrong_bytes_and_truncated_blobs_are_refused_and_the_rest_is_copied(spawn_hub):
    upstream = spawn_hub()
    alice = upstream.user_client("alice")
    for name in ("alice/good", "alice/forged", "alice/short"):
        publish_ok(alice, name, "1.0.0")
    forged, short = _weights(upstream, "alice/forged", "1.0.0"), _weights(upstream, "alice/short", "1.0.0")
    _overwrite(upstream, forged["sha256"], b"X" * forged["size"])  # same size, other bytes
    _overwrite(upstream, short["sha256"], b"alice" * 10)  # cut short
    mirror = spawn_hub()

    report = sync(mirror, upstream, ok=False)
    assert report["versions"] == ["alice/good@1.0.0"]
    failures = {f["package"]: f for f in report["failures"]}
    assert set(failures) == {"alice/forged", "alice/short"}
    assert failures["alice/forged"]["code"] == "upstream_invalid" and "sha256" in failures["alice/forged"]["message"]
    assert failures["alice/short"]["code"] == "upstream_invalid" and "50 bytes" in failures["alice/short"]["message"]
    _nothing_of(mirror, "alice/forged", forged["sha256"])
    _nothing_of(mirror, "alice/short", short["sha256"])

    # The failures are tried again on the next run, and still refused.
    again = sync(mirror, upstream, ok=False)
    assert {f["package"] for f in again["failures"]} == {"alice/forged", "alice/short"}
    _nothing_of(mirror, "alice/forged", forged["sha256"])


def test_a_version_whose_content_changed_upstream_keeps_the_copy_taken_before(spawn_hub):
    upstream = spawn_hub()
    alice = upstream.user_client("alice")
    publish_ok(alice, "alice/det", "1.0.0")
    mirror = spawn_hub()
    sync(mirror, upstream)
    before = version_doc(mirror, "alice/det", "1.0.0")

    # The upstream rewrites 1.0.0 in place (a compromised or restored server) and says so on its feed.
    evil = b"backdoored weights"
    digest = upload(alice, evil)
    with session_scope(upstream.context.engine, write=True) as session:
        package = session.exec(select(Package).where(Package.full_name == "alice/det")).one()
        version = session.exec(select(Version).where(Version.package_id == package.id)).one()
        weights = sa.update(File).where(File.version_id == version.id, File.path == "weights.safetensors")
        session.exec(weights.values(sha256=digest, size=len(evil)))  # type: ignore[call-overload]
        change_feed.emit(session, "publish", "alice/det", "1.0.0")
    upstream.context.cache.clear()

    report = sync(mirror, upstream, ok=False)
    assert [f["code"] for f in report["failures"]] == ["upstream_changed"]
    assert "alice/det@1.0.0 differs from the copy taken earlier" in report["failures"][0]["message"]
    assert version_doc(mirror, "alice/det", "1.0.0")["files"] == before["files"]
    assert digest not in stored_blobs(mirror) and digest not in blob_rows(mirror)


def test_a_feed_with_a_gap_stops_the_sync_before_anything_is_copied(spawn_hub):
    upstream = spawn_hub()
    alice = upstream.user_client("alice")
    for i in range(3):
        publish_ok(alice, f"alice/p{i}", "1.0.0")
    with session_scope(upstream.context.engine, write=True) as session:
        session.exec(sa.delete(ChangeEvent).where(ChangeEvent.serial == 2))  # type: ignore[call-overload]
    mirror = spawn_hub()

    report = sync(mirror, upstream, ok=False)
    assert report["error"]["code"] == "feed_gap" and "from serial 1 to 3" in report["error"]["message"]
    assert report["versions"] == [] and report["serial"] == 0
    assert mirror.client().get("/api/v1/packages", params={"q": "alice"}).json()["total"] == 0
    assert stored_blobs(mirror) == set()


def test_a_feed_that_went_backwards_is_a_gap_too(spawn_hub):
    upstream = spawn_hub()
    alice = upstream.user_client("alice")
    for i in range(3):
        publish_ok(alice, f"alice/p{i}", "1.0.0")
    mirror = spawn_hub()
    sync(mirror, upstream)
    with session_scope(upstream.context.engine, write=True) as session:  # restored from an older backup
        session.exec(sa.delete(ChangeEvent).where(ChangeEvent.serial > 1))  # type: ignore[call-overload]
        session.exec(sa.text("UPDATE feed_counters SET value = 1"))
    report = sync(mirror, upstream, ok=False)
    assert report["error"]["code"] == "feed_gap" and "went back from 3 to 1" in report["error"]["message"]

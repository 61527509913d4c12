"""Copies the hub makes itself (mirror sync, pull-through, bundle import) follow the blob rule.

An upstream (or a bundle) may list a file by the digest of a blob that only a private package
on this hub holds. The copy must not be made from this hub's bytes: the upstream must send
them (or the bundle hold them), verified, before a version references them. The lying
upstream is a real hub whose database was edited to list a digest it has no bytes for, the
way an old or compromised hub would answer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from cvflow.bundle import BundleManifest, write_bundle
from hub.db import session_scope
from hub.models import Blob, BlobGrant, File, Package, Version
from hub.services.blobs import insert_blob
from tests.conftest import BACKENDS, reset
from tests.helpers import LiveHub, publish, sha256
from tests.mirror._helpers import SOLVER, publish_ok, sync, version_doc
from tests.mirror.conftest import hub_cli

SECRET = b"private weights on the mirror " + os.urandom(200)


def _victim(live: LiveHub) -> None:
    reset(live)  # a PostgreSQL + S3 hub shares the session's database and bucket
    alice = live.user_client("alice")
    r = publish(alice, "alice/secret", files={"solver.py": SOLVER, "weights.safetensors": SECRET}, private=True,
                weights=("weights.safetensors",))
    assert r.status_code == 201, r.text


def _lying_upstream(spawn_hub) -> LiveHub:  # type: ignore[no-untyped-def]
    """A hub whose public ``mallory/steal@1.0.0`` lists ``weights.safetensors`` as SECRET's
    digest and size, without having SECRET's bytes."""
    upstream = spawn_hub()
    publish_ok(upstream.user_client("mallory"), "mallory/steal", "1.0.0")
    with session_scope(upstream.context.engine, write=True) as session:
        insert_blob(session, sha256(SECRET), len(SECRET))
        version_id = session.exec(select(Version.id).join(Package, Package.id == Version.package_id)  # type: ignore[arg-type]
                                  .where(Package.full_name == "mallory/steal")).one()
        session.exec(sa.update(File).where(File.version_id == version_id, File.path == "weights.safetensors")  # type: ignore[call-overload]
                     .values(sha256=sha256(SECRET), size=len(SECRET)))
    upstream.context.cache.clear()
    return upstream


def _tell_truth(upstream: LiveHub) -> None:
    """The upstream gets the bytes it lists: now it can prove it has them."""
    upstream.context.store.put_bytes(sha256(SECRET), SECRET)


def _hub_holders(live: LiveHub) -> set[str]:
    with session_scope(live.context.engine) as session:
        return set(session.exec(select(BlobGrant.holder).where(BlobGrant.sha256 == sha256(SECRET))).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_mirror_sync_does_not_copy_a_version_from_this_hub_s_private_bytes(spawn_hub, backend):
    upstream = _lying_upstream(spawn_hub)
    mirror = spawn_hub(backend)
    _victim(mirror)
    report = sync(mirror, upstream, ok=False)
    assert [f["package"] for f in report["failures"]] == ["mallory/steal"], report
    assert report["failures"][0]["code"] == "upstream_invalid"
    anyone = mirror.client()
    assert anyone.get("/api/v1/packages/mallory/steal/versions/1.0.0/files/weights.safetensors").status_code == 404

    _tell_truth(upstream)
    report = sync(mirror, upstream)
    assert report["versions"] == ["mallory/steal@1.0.0"], report
    assert anyone.get("/api/v1/packages/mallory/steal/versions/1.0.0/files/weights.safetensors").content == SECRET
    assert "hub:mirror" in _hub_holders(mirror)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pull_through_does_not_serve_this_hub_s_private_bytes_for_an_upstream_digest(spawn_hub, backend):
    upstream = _lying_upstream(spawn_hub)
    proxy = spawn_hub(backend, upstreams=upstream.url, upstream_metadata_ttl=0)
    _victim(proxy)
    anyone = proxy.client()
    path = "/api/v1/packages/mallory/steal/versions/1.0.0/files/weights.safetensors"
    r = anyone.get(path)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_invalid", r.text
    with session_scope(proxy.context.engine) as session:
        assert session.exec(select(Package).where(Package.full_name == "mallory/steal")).first() is None

    _tell_truth(upstream)
    assert anyone.get(path).content == SECRET
    assert "hub:pull-through" in _hub_holders(proxy)
    assert version_doc(proxy, "mallory/steal", "1.0.0")["origin"]["via"] == "pull-through"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bundle_must_hold_the_bytes_it_lists(spawn_hub, tmp_path: Path, backend):
    source = _lying_upstream(spawn_hub)
    target = spawn_hub(backend)
    _victim(target)
    doc = version_doc(source, "mallory/steal", "1.0.0")
    manifest = BundleManifest.build({"mallory/steal": [doc]}, source="a tampered bundle")

    def blob(digest: str, forged: bytes) -> list[bytes]:
        if digest == sha256(SECRET):
            return [forged]
        return [b"".join(source.context.store.open_range(digest))]

    # The bundle lists SECRET's digest with other bytes of the same size; the hub has SECRET.
    forged = tmp_path / "forged.cvbundle"
    write_bundle(forged, manifest, lambda d: blob(d, os.urandom(len(SECRET))))
    result = hub_cli(target, "import", str(forged))
    assert result.exit_code == 1 and "bundle_invalid" in result.output, result.output
    target.context.cache.clear()
    assert target.client().get("/api/v1/packages/mallory/steal").status_code == 404

    # A bundle that holds the bytes proves it: then the version is imported.
    honest = tmp_path / "honest.cvbundle"
    write_bundle(honest, manifest, lambda d: blob(d, SECRET))
    result = hub_cli(target, "import", str(honest), "--json")
    assert result.exit_code == 0, result.output
    target.context.cache.clear()
    got = target.client().get("/api/v1/packages/mallory/steal/versions/1.0.0/files/weights.safetensors")
    assert got.content == SECRET
    assert "hub:bundle" in _hub_holders(target)
    with session_scope(target.context.engine) as session:
        assert session.get(Blob, sha256(SECRET)) is not None

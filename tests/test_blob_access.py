"""Knowing a digest never gives the bytes; what a version shows is the cvflow.toml it ships.

Blob rule (docs/api.md, "Blobs and private packages"): a version may reference a blob only if
its publisher uploaded the bytes in an upload session of their own, or may read a version that
references it already; ``blobs/check`` answers "present" under the same rule. These tests
drive the publish API over a real socket on both backends; the indexer's, mirror sync's,
pull-through's and bundle import's paths are held by tests/indexer/test_indexer_blob_access.py
and tests/mirror/test_mirror_blob_access.py.
"""

from __future__ import annotations

import os

import httpx
import pytest
from sqlmodel import select

from hub.db import session_scope
from hub.models import BlobGrant, User
from tests.helpers import error_code, manifest, publish, sha256, upload

SECRET = b"the victim's private weights " + os.urandom(64)


def _check(client: httpx.Client, *digests: str) -> dict[str, list[str]]:
    r = client.post("/api/v1/blobs/check", json={"digests": list(digests)})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _publish_naming(client: httpx.Client, name: str, version: str, digest: str, size: int, *,
                    private: bool = False, **manifest_kw: object) -> httpx.Response:
    """Publish ``name@version`` whose ``weights.safetensors`` is only *named* by digest and size: the
    manifest and solver are uploaded, the weight's bytes are not."""
    text = manifest(name, version, weights=("weights.safetensors",), **manifest_kw)  # type: ignore[arg-type]
    files = [{"path": "cvflow.toml", "size": len(text.encode()), "sha256": upload(client, text.encode())},
             {"path": "solver.py", "size": 22, "sha256": upload(client, b"class Detector: pass\n\n")},
             {"path": "weights.safetensors", "size": size, "sha256": digest}]
    ns, pkg = name.split("/", 1)
    return client.post(f"/api/v1/packages/{ns}/{pkg}/versions",
                       json={"manifest": text, "files": files, "private": private})


@pytest.fixture
def victim(hub):  # type: ignore[no-untyped-def]
    """alice, with a private package whose weights only she has uploaded."""
    alice = hub.user_client("alice")
    r = publish(alice, "alice/secret", files={"solver.py": b"class Detector: pass\n", "weights.safetensors": SECRET},
                private=True, weights=("weights.safetensors",))
    assert r.status_code == 201, r.text
    return alice


def test_a_digest_of_someone_else_s_private_blob_cannot_be_published_or_probed(hub, victim):
    digest = sha256(SECRET)
    mallory = hub.user_client("mallory")
    # The check endpoint answers per caller: present for the uploader, missing for anyone else.
    assert _check(victim, digest) == {"missing": [], "present": [digest]}
    assert _check(mallory, digest) == {"missing": [digest], "present": []}
    assert hub.client().post("/api/v1/blobs/check", json={"digests": [digest]}).status_code == 401

    # Naming the digest in a version is answered exactly as for a blob the hub lacks, with the
    # true size and with a wrong one alike (a size check must not tell that the blob exists).
    absent = sha256(b"bytes nobody ever uploaded")
    answers = []
    for d, size in ((digest, len(SECRET)), (digest, 1), (absent, len(SECRET))):
        r = _publish_naming(mallory, "mallory/steal", "1.0.0", d, size)
        assert r.status_code == 422, r.text
        assert error_code(r) == "missing_blobs" and r.json()["error"]["details"] == {"missing": [d]}
        answers.append(r.json()["error"]["message"])
    assert len(set(answers)) == 1
    assert mallory.get("/api/v1/packages/mallory/steal").status_code == 404

    # Uploading the bytes proves she has them: then the blob is hers to reference too.
    assert upload(mallory, SECRET) == digest
    assert _check(mallory, digest)["present"] == [digest]
    r = _publish_naming(mallory, "mallory/steal", "1.0.0", digest, len(SECRET))
    assert r.status_code == 201, r.text
    assert mallory.get("/api/v1/packages/mallory/steal/versions/1.0.0/files/weights.safetensors").content == SECRET
    # The victim's package stays hers alone.
    assert mallory.get("/api/v1/packages/alice/secret").status_code == 404


def test_a_blob_in_a_version_the_publisher_may_read_can_be_referenced(hub, victim):
    digest = sha256(SECRET)
    bob = hub.user_client("bob")
    assert _check(bob, digest)["missing"] == [digest]
    # Once the package is public, every publisher may reference its blobs without uploading them;
    # private again, they may not.
    assert victim.patch("/api/v1/packages/alice/secret", json={"private": False}).status_code == 200
    assert _check(bob, digest)["present"] == [digest]
    assert victim.patch("/api/v1/packages/alice/secret", json={"private": True}).status_code == 200
    assert _check(bob, digest)["missing"] == [digest]
    assert victim.patch("/api/v1/packages/alice/secret", json={"private": False}).status_code == 200
    r = _publish_naming(bob, "bob/derived", "1.0.0", digest, len(SECRET))
    assert r.status_code == 201, r.text
    assert bob.get("/api/v1/packages/bob/derived/versions/1.0.0/files/weights.safetensors").content == SECRET
    # bob's public version references the blob now: it reaches others through that one.
    assert victim.patch("/api/v1/packages/alice/secret", json={"private": True}).status_code == 200
    carol = hub.user_client("carol")
    assert _check(carol, digest)["present"] == [digest]
    assert _publish_naming(carol, "carol/late", "1.0.0", digest, len(SECRET)).status_code == 201


def test_an_organisation_s_private_blobs_are_shared_with_its_members_only(hub):
    owner = hub.user_client("olga")
    member_token = hub.create_user("mia")
    outsider = hub.user_client("oscar")
    assert owner.post("/api/v1/orgs", json={"name": "acme"}).status_code == 201
    assert owner.put("/api/v1/orgs/acme/members/mia", json={"role": "member"}).status_code in (200, 204)
    r = publish(owner, "acme/model", files={"solver.py": b"class Detector: pass\n", "weights.safetensors": SECRET},
                private=True, weights=("weights.safetensors",))
    assert r.status_code == 201, r.text
    digest = sha256(SECRET)
    member = hub.client(member_token)
    # A member may read acme/model, so may reference its blobs (in a package of their own too:
    # they could download and upload the bytes anyway).
    assert _check(member, digest)["present"] == [digest]
    assert _publish_naming(member, "mia/tuned", "1.0.0", digest, len(SECRET), private=True).status_code == 201
    assert _check(outsider, digest)["missing"] == [digest]
    assert error_code(_publish_naming(outsider, "oscar/tuned", "1.0.0", digest, len(SECRET))) == "missing_blobs"
    # A token scoped to another package reads nothing private, so it is refused too.
    scoped = hub.client(hub.create_user("mila", scopes="publish:mila/one"))
    assert _check(scoped, digest)["missing"] == [digest]


def test_uploads_record_who_holds_the_bytes(hub, victim):
    digest = sha256(SECRET)

    def holders() -> set[str]:
        with session_scope(hub.context.engine) as session:
            names = dict(session.exec(select(User.id, User.name)).all())
            rows = session.exec(select(BlobGrant.holder).where(BlobGrant.sha256 == digest)).all()
        return {names[int(h.split(":")[1])] for h in rows}

    assert holders() == {"alice"}
    mallory = hub.user_client("mallory")
    upload(mallory, SECRET)
    assert holders() == {"alice", "mallory"}


# --- what is shown is what is shipped -------------------------------------------------------


def test_the_manifest_shown_is_the_cvflow_toml_shipped(hub):
    alice = hub.user_client("alice")
    shipped = manifest("alice/detector", "1.0.0", description="What the files say")
    shown = manifest("alice/detector", "1.0.0", description="What the JSON says")
    files = [{"path": "cvflow.toml", "size": len(shipped.encode()), "sha256": upload(alice, shipped.encode())},
             {"path": "solver.py", "size": 22, "sha256": upload(alice, b"class Detector: pass\n\n")}]
    r = alice.post("/api/v1/packages/alice/detector/versions", json={"manifest": shown, "files": files})
    assert r.status_code == 422, r.text
    assert error_code(r) == "manifest_mismatch"
    assert r.json()["error"]["details"]["file_sha256"] == sha256(shipped.encode())
    assert alice.get("/api/v1/packages/alice/detector").status_code == 404

    # A version without a cvflow.toml among its files has nothing to show.
    r = alice.post("/api/v1/packages/alice/detector/versions", json={"manifest": shipped, "files": files[1:]})
    assert r.status_code == 422 and error_code(r) in ("invalid_files", "manifest_mismatch")

    # The same bytes in both places publish, and what is shown is the file.
    r = alice.post("/api/v1/packages/alice/detector/versions", json={"manifest": shipped, "files": files})
    assert r.status_code == 201, r.text
    doc = alice.get("/api/v1/packages/alice/detector/versions/1.0.0").json()
    assert doc["manifest_toml"] == shipped
    assert alice.get("/api/v1/packages/alice/detector").json()["description"] == "What the files say"
    assert alice.get("/api/v1/packages/alice/detector/versions/1.0.0/files/cvflow.toml").text == shipped

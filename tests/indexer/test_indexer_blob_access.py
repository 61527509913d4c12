"""The git indexer publishes as a repository's registrant, under the blob rule of docs/api.md.

A manifest may name a URL weight by its sha256. Were the hub to skip the download because it
has a blob of that digest, anyone who knows the digest of a private package's weights could
publish them under their own name. Real git over git://, real HTTP for the weights, both
backends.
"""

from __future__ import annotations

import os

from sqlmodel import select

from hub.db import session_scope
from hub.models import BlobGrant, User
from tests.helpers import publish, sha256
from tests.indexer._helpers import SOLVER, manifest, published, register, repository, run_jobs, url_weight

SECRET = b"private weights " + os.urandom(256)


def test_a_url_weight_naming_someone_else_s_private_blob_is_downloaded_not_borrowed(ihub, make_repo, git_daemon,
                                                                                    weights):
    alice = ihub.user_client("alice")
    r = publish(alice, "alice/secret", files={"solver.py": SOLVER, "model.safetensors": SECRET}, private=True,
                weights=("model.safetensors",))
    assert r.status_code == 201, r.text

    mallory = ihub.user_client("mallory")
    url = weights.url(f"{ihub.backend}/{os.urandom(4).hex()}/model.safetensors")  # nothing there yet
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest("mallory/steal", weights=url_weight("model.safetensors", url, sha256(SECRET),
                                                                            len(SECRET))),
                "solver.py": SOLVER})
    repo.commit("release")
    repo.tag("v1.0.0")
    doc = register(mallory, git_daemon.url(name))
    assert run_jobs(ihub) == 1
    # The hub went to the URL (which has nothing) instead of using alice's blob.
    [error] = repository(mallory, doc["id"])["last_result"]["errors"]
    assert error["tag"] == "v1.0.0" and error["code"] == "weight_unavailable", error
    assert published(ihub, "mallory/steal") == {}

    # Bytes the indexer fetched itself are the registrant's to publish.
    weights.add(url.split("/", 3)[3], SECRET)
    assert mallory.post(f"/api/v1/repositories/{doc['id']}/reindex").status_code == 202
    assert run_jobs(ihub) == 1
    assert repository(mallory, doc["id"])["last_result"]["errors"] == []
    assert sorted(published(ihub, "mallory/steal")) == ["1.0.0"]
    got = mallory.get("/api/v1/packages/mallory/steal/versions/1.0.0/files/model.safetensors")
    assert got.content == SECRET
    with session_scope(ihub.context.engine) as session:
        mallory_id = session.exec(select(User.id).where(User.name == "mallory")).one()
        holders = set(session.exec(select(BlobGrant.holder).where(BlobGrant.sha256 == sha256(SECRET))).all())
        tree = set(session.exec(select(BlobGrant.holder).where(BlobGrant.sha256 == sha256(SOLVER))).all())
    assert f"user:{mallory_id}" in holders and f"user:{mallory_id}" in tree


def test_a_url_weight_of_a_public_blob_is_not_downloaded_again(ihub, make_repo, git_daemon, weights):
    alice = ihub.user_client("alice")
    r = publish(alice, "alice/open", files={"solver.py": SOLVER, "model.safetensors": SECRET},
                weights=("model.safetensors",))
    assert r.status_code == 201, r.text
    bob = ihub.user_client("bob")
    url = weights.url(f"{ihub.backend}/{os.urandom(4).hex()}/gone.safetensors")  # never served
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest("bob/reuse", weights=url_weight("model.safetensors", url, sha256(SECRET),
                                                                        len(SECRET))),
                "solver.py": SOLVER})
    repo.commit("release")
    repo.tag("v1.0.0")
    doc = register(bob, git_daemon.url(name))
    assert run_jobs(ihub) == 1
    assert repository(bob, doc["id"])["last_result"]["errors"] == []
    assert bob.get("/api/v1/packages/bob/reuse/versions/1.0.0/files/model.safetensors").content == SECRET

"""Indexing real repositories served over git:// and smart HTTP into a live hub, on both backends."""

from __future__ import annotations

import hashlib
import json

from sqlmodel import select

from hub.db import session_scope
from hub.models import RepositoryTag
from tests.helpers import publish, sha256
from tests.indexer._helpers import (
    SOLVER,
    by_tag,
    jobs,
    manifest,
    published,
    register,
    repository,
    run_jobs,
    url_weight,
)

BIG = hashlib.sha256(b"big").digest() * (48 * 1024)  # 1.5 MiB


def test_tags_become_versions_with_their_files_weights_and_source_commit(ihub, make_repo, git_daemon, weights):
    alice = ihub.user_client("alice")
    model = hashlib.sha256(b"weights for " + ihub.backend.encode()).digest() * 4096  # 128 KiB
    weight_url = weights.add(f"{ihub.backend}/model.safetensors", model)
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(weights=url_weight("weights/model.safetensors", weight_url, sha256(model),
                                                            len(model))),
                "solver.py": SOLVER, "README.md": "# Detector\n", "data/labels.txt": "cat\ndog\n",
                ".github/workflows/ci.yml": "on: push\n", "__pycache__/solver.cpython-311.pyc": b"\0"})
    first = repo.commit("first release")
    repo.tag("v1.0.0", annotated=True)
    repo.write({"cvflow.toml": manifest(version="1.0.1", weights=url_weight(
        "weights/model.safetensors", weight_url, sha256(model), len(model))), "solver.py": SOLVER + b"# fixed\n"})
    second = repo.commit("fix")
    repo.tag("1.0.1")
    repo.tag("latest")

    doc = register(alice, git_daemon.url(name))
    assert doc["status"] == "queued" and doc["package"] is None
    assert doc["url"] == git_daemon.url(name) and len(doc["webhook_secret"]) == 64
    assert run_jobs(ihub) == 1

    versions = published(ihub, "alice/detector")
    assert sorted(versions) == ["1.0.0", "1.0.1"]
    assert versions["1.0.0"].source_commit == first and versions["1.0.1"].source_commit == second
    assert versions["1.0.0"].source_repository == git_daemon.url(name)
    v1 = alice.get("/api/v1/packages/alice/detector/versions/1.0.0").json()
    files = {f["path"]: f for f in v1["files"]}
    # Hidden files and caches never go into a package, as with `cvflow publish`.
    assert sorted(files) == ["README.md", "cvflow.toml", "data/labels.txt", "solver.py", "weights/model.safetensors"]
    assert files["weights/model.safetensors"]["sha256"] == sha256(model)
    got = alice.get("/api/v1/packages/alice/detector/versions/1.0.1/files/solver.py")
    assert got.content == SOLVER + b"# fixed\n"
    got = alice.get("/api/v1/packages/alice/detector/versions/1.0.0/files/weights/model.safetensors")
    assert got.content == model

    doc = repository(alice, doc["id"])
    assert doc["status"] == "ok" and doc["package"] == "alice/detector"
    result = doc["last_result"]
    assert {t: v["version"] for t, v in by_tag(result["versions"]).items()} == {"v1.0.0": "1.0.0", "1.0.1": "1.0.1"}
    assert all(v["new"] for v in result["versions"])
    assert "not a SemVer version" in by_tag(result["skipped"])["latest"]["reason"]
    assert result["errors"] == [] and result["moved"] == []
    # The registrant owns the package.
    assert alice.patch("/api/v1/packages/alice/detector", json={"private": False}).status_code == 200

    # Indexing again publishes nothing new and changes nothing.
    r = alice.post(f"/api/v1/repositories/{doc['id']}/reindex")
    assert r.status_code == 202 and r.json()["queued"] is True
    assert run_jobs(ihub) == 1
    again = repository(alice, doc["id"])["last_result"]
    assert sorted((v["tag"], v["new"]) for v in again["versions"]) == [("1.0.1", False), ("v1.0.0", False)]
    assert published(ihub, "alice/detector").keys() == versions.keys()
    assert [j.state for j in jobs(ihub)] == ["done", "done"]
    with session_scope(ihub.context.engine) as session:
        assert len(session.exec(select(RepositoryTag)).all()) == 2


def test_smart_http_and_a_subdirectory_with_a_tag_pattern(ihub, make_repo, smart_http):
    alice = ihub.user_client("alice")
    repo, name = make_repo()
    repo.write({"README.md": "monorepo\n", "models/edge/cvflow.toml": manifest("alice/edge", "0.1.0"),
                "models/edge/solver.py": SOLVER, "models/other/cvflow.toml": manifest("alice/other", "0.1.0")})
    repo.commit()
    repo.tag("edge/v0.1.0")
    repo.tag("other/v0.1.0")
    repo.tag("v0.1.0")

    doc = register(alice, smart_http.url(name), subdir="models/edge/", tag_pattern="edge/*")
    assert doc["subdir"] == "models/edge" and doc["tag_pattern"] == "edge/*"
    run_jobs(ihub)
    assert any(p.endswith("/info/refs") for p in smart_http.requests)
    doc = repository(alice, doc["id"])
    assert doc["last_result"]["errors"] == [], doc["last_result"]
    assert list(published(ihub, "alice/edge")) == ["0.1.0"]
    assert published(ihub, "alice/other") == {}
    files = [f["path"] for f in alice.get("/api/v1/packages/alice/edge/versions/0.1.0").json()["files"]]
    assert files == ["cvflow.toml", "solver.py"]
    # The package points back at its repository, for everyone who may read it.
    r = ihub.client().get("/api/v1/packages/alice/edge/repository")
    assert r.status_code == 200 and r.json()["id"] == doc["id"] and "webhook_secret" not in r.json()
    assert json.dumps(r.json()).count("edge/v0.1.0") == 1


def test_a_tag_moved_after_indexing_is_reported_and_never_rewrites_the_version(ihub, make_repo, git_daemon):
    alice = ihub.user_client("alice")
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER}).commit()
    original = repo.tag("v1.0.0")
    doc = register(alice, git_daemon.url(name))
    run_jobs(ihub)

    repo.write({"solver.py": b"class Detector:\n    pass  # rewritten history\n"}).commit("sneaky")
    moved_to = repo.tag("v1.0.0", force=True)
    assert moved_to != original
    alice.post(f"/api/v1/repositories/{doc['id']}/reindex")
    run_jobs(ihub)

    [moved] = repository(alice, doc["id"])["last_result"]["moved"]
    assert moved["tag"] == "v1.0.0" and moved["version"] == "1.0.0"
    assert (moved["published_commit"], moved["commit"]) == (original, moved_to)
    assert "immutable" in moved["message"]
    # Shown with the package, and the version is the one first published.
    shown = ihub.client().get("/api/v1/packages/alice/detector/repository").json()
    assert shown["last_result"]["moved"] == [moved]
    version = published(ihub, "alice/detector")["1.0.0"]
    assert version.source_commit == original
    assert alice.get("/api/v1/packages/alice/detector/versions/1.0.0/files/solver.py").content == SOLVER


def test_a_branch_pattern_indexes_only_tags_on_matching_branches(one_hub, make_repo, git_daemon):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(version="1.0.0"), "solver.py": SOLVER}).commit()
    repo.tag("v1.0.0")
    repo.git("checkout", "-q", "-b", "experiment")
    repo.write({"cvflow.toml": manifest(version="2.0.0-beta.1")}).commit("try something")
    repo.tag("v2.0.0-beta.1")
    repo.git("checkout", "-q", "main")
    doc = register(alice, git_daemon.url(name), branch_pattern="main")
    run_jobs(one_hub)
    result = repository(alice, doc["id"])["last_result"]
    assert list(published(one_hub, "alice/detector")) == ["1.0.0"]
    assert by_tag(result["skipped"])["v2.0.0-beta.1"]["reason"] == "not on a branch matching 'main'"


def test_an_organisation_s_repository_makes_the_registrant_owner(one_hub, make_repo, git_daemon):
    alice = one_hub.user_client("alice")
    one_hub.create_user("bob")
    assert alice.post("/api/v1/orgs", json={"name": "lab"}).status_code == 201
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest("lab/segmenter"), "solver.py": SOLVER, "data/big.bin": BIG}).commit()
    repo.tag("v1.0.0")
    register(alice, git_daemon.url(name), namespace="lab", private=True)
    run_jobs(one_hub)
    assert list(published(one_hub, "lab/segmenter")) == ["1.0.0"]
    assert one_hub.client().get("/api/v1/packages/lab/segmenter").status_code == 404  # registered private
    # Only owners grant roles: the registrant is one.
    assert alice.put("/api/v1/packages/lab/segmenter/roles/bob", json={"role": "maintainer"}).status_code == 204
    # A file over 1 MiB streams out of git into the store.
    big = alice.get("/api/v1/packages/lab/segmenter/versions/1.0.0/files/data/big.bin")
    assert big.status_code == 200 and big.content == BIG


def test_a_version_published_another_way_is_skipped_not_overwritten(one_hub, make_repo, git_daemon):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(version="1.0.0"), "solver.py": SOLVER}).commit()
    repo.tag("v1.0.0")
    repo.tag("1.0.0")  # the same version twice
    repo.write({"cvflow.toml": manifest(version="1.1.0")}).commit()
    repo.tag("v1.1.0")
    assert publish(alice, "alice/detector", "1.1.0").status_code == 201  # by hand, before the repository
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)
    result = repository(alice, doc["id"])["last_result"]
    assert [v["tag"] for v in result["versions"]] == ["1.0.0"]
    skipped = by_tag(result["skipped"])
    assert sorted(skipped) == ["v1.0.0", "v1.1.0"]
    assert "already published, but not from this tag" in skipped["v1.1.0"]["reason"]
    assert published(one_hub, "alice/detector")["1.1.0"].source_commit is None

"""Every kind of bad input gets a clear error on its repository, and nothing of it is published."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import pytest

from hub.db import session_scope
from hub.services.blobs import find_blobs
from indexer.fetch import cache_path
from tests.helpers import error_code, sha256
from tests.indexer._helpers import (
    SOLVER,
    by_tag,
    manifest,
    package_count,
    published,
    register,
    repository,
    run_jobs,
    url_weight,
)
from tests.indexer._servers import FileServer, GitRepo

Build = Callable[[GitRepo, FileServer], dict[str, Any]]


def _tagged(repo: GitRepo, files: dict[str, Any], tag: str = "v1.0.0") -> None:
    repo.write(files).commit()
    repo.tag(tag)


def _no_manifest(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    _tagged(repo, {"solver.py": SOLVER, "README.md": "no manifest here\n"})
    return {}


def _invalid_manifest(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    text = manifest(extra='task = "juggling"\nlicence = "MIT"').replace('task = "detection"\n', "")
    _tagged(repo, {"cvflow.toml": text, "solver.py": SOLVER})
    return {}


def _broken_toml(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    _tagged(repo, {"cvflow.toml": "[package\nname = ", "solver.py": SOLVER})
    return {}


def _version_mismatch(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    _tagged(repo, {"cvflow.toml": manifest(version="1.0.1"), "solver.py": SOLVER})
    return {}


def _weight_404(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    url = weights.url("nowhere/model.safetensors")
    _tagged(repo, {"cvflow.toml": manifest(weights=url_weight("weights/model.safetensors", url, "a" * 64, 10)),
                   "solver.py": SOLVER})
    return {}


def _weight_wrong_digest(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    data = b"these are not the weights you declared" * 10
    url = weights.add(f"wrong/{repo.path.name}.safetensors", data)
    text = manifest(weights=url_weight("weights/model.safetensors", url, sha256(b"the real weights"), len(data)))
    _tagged(repo, {"cvflow.toml": text, "solver.py": SOLVER})
    return {"wrong_digest": sha256(data)}


def _symlink_out(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER}).symlink("secrets.txt", "../../etc/passwd")
    repo.commit()
    repo.tag("v1.0.0")
    return {}


def _absolute_symlink(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER}).symlink("weights/model.bin", "/etc/passwd")
    repo.commit()
    repo.tag("v1.0.0")
    return {}


def _oversized_file(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    _tagged(repo, {"cvflow.toml": manifest(), "solver.py": SOLVER, "data/big.bin": os.urandom(5000)})
    return {"settings": {"indexer_max_file_size": 4096}}


def _too_many_files(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    _tagged(repo, {"cvflow.toml": manifest(), "solver.py": SOLVER, **{f"data/{i}.txt": str(i) for i in range(10)}})
    return {"settings": {"indexer_max_files": 8}}


def _huge_repository(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    _tagged(repo, {"cvflow.toml": manifest(), "solver.py": SOLVER, "data/noise.bin": os.urandom(2 << 20)})
    return {"settings": {"indexer_max_repo_size": 256 * 1024}}


def _lfs_weight(repo: GitRepo, weights: FileServer) -> dict[str, Any]:
    pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{'b' * 64}\nsize 123456789\n")
    text = manifest(weights='\n[[weights]]\npath = "weights/model.safetensors"\n')
    _tagged(repo, {"cvflow.toml": text, "solver.py": SOLVER, "weights/model.safetensors": pointer})
    return {}


CASES: list[tuple[str, Build, str | None, str, str]] = [
    # (id, build, tag (None: the whole repository), code, words of the message)
    ("missing-manifest", _no_manifest, "v1.0.0", "missing_manifest", "no cvflow.toml (or legacy cvpm.toml)"),
    ("invalid-manifest", _invalid_manifest, "v1.0.0", "invalid_manifest", "problems"),
    ("manifest-not-toml", _broken_toml, "v1.0.0", "invalid_manifest", "not valid TOML"),
    ("version-disagrees-with-tag", _version_mismatch, "v1.0.0", "version_mismatch",
     "the manifest says version 1.0.1, but the tag v1.0.0 says 1.0.0"),
    ("weight-url-404", _weight_404, "v1.0.0", "weight_unavailable", "404"),
    ("weight-wrong-digest", _weight_wrong_digest, "v1.0.0", "weight_mismatch", "not the"),
    ("symlink-out-of-tree", _symlink_out, "v1.0.0", "symlink_out_of_tree", "secrets.txt points out of the package"),
    ("absolute-symlink", _absolute_symlink, "v1.0.0", "symlink_out_of_tree", "points out of the package"),
    ("oversized-file", _oversized_file, "v1.0.0", "file_too_large", "data/big.bin is 5000 bytes"),
    ("too-many-files", _too_many_files, "v1.0.0", "too_many_files", "the limit is 8"),
    ("huge-repository", _huge_repository, None, "repository_too_large", "larger than the limit"),
    ("lfs-pointer-weight", _lfs_weight, "v1.0.0", "lfs_pointer", "Git LFS pointer"),
]


@pytest.mark.parametrize(("build", "tag", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_reported_on_the_repository_and_nothing_is_published(one_hub, make_repo, git_daemon, weights,
                                                                          build, tag, code, words):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    facts = build(repo, weights)
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub, **facts.get("settings", {}))

    doc = repository(alice, doc["id"])
    assert doc["status"] == "error"
    errors = doc["last_result"]["errors"]
    assert [(e["tag"], e["code"]) for e in errors] == [(tag, code)], errors
    assert words in errors[0]["message"], errors[0]
    assert doc["last_result"]["versions"] == []
    assert package_count(one_hub) == 0 and doc["package"] is None
    if code == "invalid_manifest" and words == "problems":
        fields = {p["field"] for p in errors[0]["problems"]}
        assert {"package.task", "package.licence"} <= fields
    if "wrong_digest" in facts:  # the wrong bytes never became a blob
        with session_scope(one_hub.context.engine) as session:
            assert find_blobs(session, [facts["wrong_digest"]], touch=False) == {}
        assert not one_hub.context.store.exists(facts["wrong_digest"])
    if code == "repository_too_large":
        cache = cache_path(one_hub.context.settings.data_dir, doc["id"], doc["url"])
        assert not cache.exists()


def test_a_missing_repository_and_one_that_needs_credentials(one_hub, git_daemon, smart_http, make_repo, caplog):
    caplog.set_level(logging.DEBUG)
    alice = one_hub.user_client("alice")
    missing = register(alice, git_daemon.url("no-such-repository"))
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER}).commit()
    repo.tag("v1.0.0")
    secret_url = smart_http.url(f"private/{name}").replace("http://", "http://bob:hunter2-secret@")
    locked = register(alice, secret_url)
    assert locked["url"] == smart_http.url(f"private/{name}")
    run_jobs(one_hub)

    for doc in (repository(alice, missing["id"]), repository(alice, locked["id"])):
        assert doc["status"] == "error"
        [error] = doc["last_result"]["errors"]
        assert error["tag"] is None and error["code"] == "fetch_failed"
        assert "does not exist, or it needs credentials" in error["message"], error
    assert package_count(one_hub) == 0
    # The password is never shown: not in documents, job rows or logs.
    listing = alice.get("/api/v1/repositories")
    assert listing.status_code == 200 and len(listing.json()["repositories"]) == 2
    assert "hunter2" not in listing.text
    assert "hunter2" not in caplog.text
    r = alice.post("/api/v1/repositories", json={"url": secret_url})
    assert r.status_code == 409 and error_code(r) == "repository_exists" and "hunter2" not in r.text


def test_one_bad_tag_does_not_stop_the_others_and_a_fixed_release_goes_through(one_hub, make_repo, git_daemon):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    _tagged(repo, {"cvflow.toml": manifest(version="1.0.0"), "solver.py": SOLVER}, "v1.0.0")
    _tagged(repo, {"cvflow.toml": manifest(version="1.0.0")}, "v1.0.1")  # forgot to bump the manifest
    _tagged(repo, {"cvflow.toml": manifest(version="1.0.2")}, "v1.0.2")
    _tagged(repo, {"cvflow.toml": manifest(version="1.1.0-rc.1")}, "not-a-version")
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)
    result = repository(alice, doc["id"])["last_result"]
    assert sorted(published(one_hub, "alice/detector")) == ["1.0.0", "1.0.2"]
    assert [(e["tag"], e["code"]) for e in result["errors"]] == [("v1.0.1", "version_mismatch")]
    assert list(by_tag(result["skipped"])) == ["not-a-version"]

    # The error stays reported until the tag is fixed; it is retried on every run.
    run_jobs(one_hub)
    assert repository(alice, doc["id"])["last_result"]["errors"][0]["tag"] == "v1.0.1"

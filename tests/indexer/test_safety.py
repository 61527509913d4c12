"""Safety: refused URLs and addresses, redacted credentials, no code from anywhere runs, time limits."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from sqlmodel import select

from hub.db import session_scope
from hub.models import Repository, User
from hub.security import Scopes
from hub.services import repositories as registry
from hub.services.accounts import Principal
from hub.services.urls import UrlRefused, check_repository_url, check_weight_url, redact
from indexer.git import GitError, GitOptions, run_git
from tests.helpers import error_code, sha256
from tests.indexer._helpers import SOLVER, manifest, published, register, repository, run_jobs, url_weight
from tests.indexer._servers import git_env


@pytest.mark.parametrize("url", [
    "file:///srv/git/repo", "/srv/git/repo", "ssh://git@example.com/a/b.git", "git@github.com:alice/detector.git",
    "ext::sh -c touch% /tmp/pwned", "fd::17", "ftp://example.com/repo.git", "git://user:pw@127.0.0.1/repo",
    "https://", "https://exa mple.com/repo", "http://127.0.0.1:99999/repo",
])
def test_only_https_http_and_git_urls_are_registered(url):
    with pytest.raises(UrlRefused):
        check_repository_url(url, allow_file=False, allow_private=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "169.254.169.254", "[::1]", "localhost",
                                  "0.0.0.0", "[::ffff:127.0.0.1]", "100.64.0.1"])
def test_private_loopback_and_link_local_addresses_are_refused_unless_allowed(host):
    for check in (lambda u: check_repository_url(u, allow_file=False, allow_private=False),
                  lambda u: check_weight_url(u, allow_private=False)):
        with pytest.raises(UrlRefused, match="refused"):
            check(f"https://{host}/alice/detector")
    assert check_repository_url(f"https://{host}/r", allow_file=False, allow_private=True).url


def test_public_addresses_and_credentials_are_accepted_but_never_shown():
    checked = check_repository_url("https://alice:s3cret-token@8.8.8.8:8443/alice/detector.git", allow_file=False,
                                   allow_private=False)
    assert checked.display == "https://8.8.8.8:8443/alice/detector.git"
    assert redact("fatal: unable to access 'https://alice:s3cret@host/x.git/': 401") == \
        "fatal: unable to access 'https://***@host/x.git/': 401"
    with pytest.raises(UrlRefused) as caught:
        check_repository_url("ssh://alice:s3cret@8.8.8.8/x", allow_file=False, allow_private=False)
    assert "s3cret" not in str(caught.value)


def test_registration_refusals_over_the_api(one_hub):
    alice = one_hub.user_client("alice")
    one_hub.create_user("bob")
    reader = one_hub.user_client("carol", scopes="read")
    for url in ("file:///etc", "ext::sh -c id", "ssh://git@127.0.0.1/x"):
        r = alice.post("/api/v1/repositories", json={"url": url})
        assert r.status_code == 422 and error_code(r) == "invalid_repository_url", r.text
    r = alice.post("/api/v1/repositories", json={"url": "git://127.0.0.1/x", "subdir": "../elsewhere"})
    assert r.status_code == 422 and error_code(r) == "invalid_field"
    r = alice.post("/api/v1/repositories", json={"url": "git://127.0.0.1/x", "namespace": "bob"})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = alice.post("/api/v1/repositories", json={"url": "git://127.0.0.1/x", "namespace": "nobody"})
    assert r.status_code == 404 and error_code(r) == "namespace_not_found"
    r = reader.post("/api/v1/repositories", json={"url": "git://127.0.0.1/x"})
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    r = one_hub.client().post("/api/v1/repositories", json={"url": "git://127.0.0.1/x"})
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    # Someone else's repository: its result is hidden until it feeds a public package, and only
    # its managers re-index or unregister it.
    doc = register(alice, "git://127.0.0.1:9/x")
    bob = one_hub.client(one_hub.create_user("dave"))
    assert bob.get(f"/api/v1/repositories/{doc['id']}").status_code == 404
    assert bob.post(f"/api/v1/repositories/{doc['id']}/reindex").status_code == 404
    assert alice.delete(f"/api/v1/repositories/{doc['id']}").status_code == 204
    assert alice.get(f"/api/v1/repositories/{doc['id']}").status_code == 404


def test_no_hook_filter_or_config_of_the_machine_runs_during_indexing(one_hub, make_repo, git_daemon, tmp_path,
                                                                      monkeypatch):
    marker = tmp_path / "pwned"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("reference-transaction", "post-checkout", "post-merge", "pre-auto-gc"):
        (hooks / hook).write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        (hooks / hook).chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f'[core]\n\thooksPath = {hooks}\n[filter "evil"]\n\tsmudge = touch {marker}\n'
                                     f'\tclean = cat\n\trequired = true\n[protocol]\n\tallow = always\n')
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER, ".gitattributes": "* filter=evil\n"}).commit()
    repo.tag("v1.0.0")

    # The trap is real: plain git with this HOME runs the hook on fetch.
    bare = tmp_path / "plain.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True, env={**git_env(home), "HOME": str(home)})
    subprocess.run(["git", "-C", str(bare), "fetch", "-q", git_daemon.url(name), "+refs/tags/*:refs/tags/*"],
                   check=True, env={"PATH": os.environ["PATH"], "HOME": str(home)})
    assert marker.exists()
    marker.unlink()

    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.hooksPath")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(hooks))
    alice = one_hub.user_client("alice")
    register(alice, git_daemon.url(name))
    run_jobs(one_hub)
    assert list(published(one_hub, "alice/detector")) == ["1.0.0"]
    assert not marker.exists()


def test_a_git_command_past_its_time_limit_is_killed(one_hub):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        alice = one_hub.user_client("alice")
        doc = register(alice, f"git://127.0.0.1:{port}/stuck")
        run_jobs(one_hub, indexer_git_timeout=1)
    [error] = repository(alice, doc["id"])["last_result"]["errors"]
    assert error["code"] == "git_timeout" and "did not finish within 1 seconds" in error["message"]
    with pytest.raises(GitError) as caught:
        run_git(["--version"], options=GitOptions(timeout=0.000001))
    assert caught.value.kind in ("timeout", "failed")


def test_weights_on_private_addresses_are_refused_when_not_allowed(one_hub, make_repo, weights, served_root):
    """A file:// repository (allowed for this test) whose manifest points at a loopback weight URL."""
    data = b"weights" * 100
    url = weights.add("private/model.safetensors", data)
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(weights=url_weight("weights/m.safetensors", url, sha256(data), len(data))),
                "solver.py": SOLVER}).commit()
    repo.tag("v1.0.0")
    settings = dataclasses.replace(one_hub.context.settings, indexer_allow_file_urls=True,
                                   indexer_allow_private_addresses=False)
    one_hub.create_user("alice")
    with session_scope(one_hub.context.engine, write=True) as session:
        alice = session.exec(select(User).where(User.name == "alice")).one()
        repo_row = registry.register(session, settings, Principal(user=alice, scopes=Scopes.parse("publish")),
                                     url=(served_root / name).as_uri())
        repository_id = repo_row.id
    run_jobs(one_hub, indexer_allow_file_urls=True, indexer_allow_private_addresses=False)
    with session_scope(one_hub.context.engine) as session:
        row = session.get(Repository, repository_id)
        assert row is not None and row.last_result is not None
        last = json.loads(row.last_result)
    [error] = last["errors"]
    assert error["code"] == "weight_refused" and "private" in error["message"]
    assert published(one_hub, "alice/detector") == {}


def test_what_goes_into_a_package_from_a_tree(one_hub, make_repo, git_daemon):
    alice = one_hub.user_client("alice")
    sub, sub_name = make_repo()
    sub.write({"lib.py": "x = 1\n"}).commit()
    repo, name = make_repo()
    lfs = f"version https://git-lfs.github.com/spec/v1\noid sha256:{'c' * 64}\nsize 99\n"
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER, "assets/sample.png": lfs, ".env": "TOKEN=x\n",
                "configs/base.yaml": "lr: 0.1\n"})
    repo.symlink("configs/default.yaml", "base.yaml").symlink("leak.txt", ".env").symlink("gone.txt", "nothing")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.path), "vendor/lib")
    repo.commit()
    repo.tag("v1.0.0")
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)
    result = repository(alice, doc["id"])["last_result"]
    assert result["errors"] == [], result
    files = {f["path"]: f for f in alice.get("/api/v1/packages/alice/detector/versions/1.0.0").json()["files"]}
    assert sorted(files) == ["configs/base.yaml", "configs/default.yaml", "cvflow.toml", "solver.py"]
    assert files["configs/default.yaml"]["sha256"] == sha256(b"lr: 0.1\n")  # an in-tree link becomes a file
    notes = " | ".join(n["message"] for n in result["notes"])
    for words in ("assets/sample.png left out: it is a Git LFS pointer", "symlink leak.txt left out",
                  "symlink gone.txt left out", "submodule vendor/lib left out"):
        assert words in notes, notes


def test_the_bare_cache_is_reused_across_runs(one_hub, make_repo, git_daemon):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER}).commit()
    repo.tag("v1.0.0")
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)
    caches = list((one_hub.context.settings.data_dir / "git").glob("*.git"))
    assert len(caches) == 1 and caches[0].name.startswith(f"{doc['id']}-")
    packs_before = set(Path(caches[0], "objects").rglob("*"))
    assert not (caches[0] / "hooks").exists()  # no sample hooks, not even disabled ones
    repo.write({"cvflow.toml": manifest(version="1.0.1")}).commit()
    repo.tag("v1.0.1")
    alice.post(f"/api/v1/repositories/{doc['id']}/reindex")
    run_jobs(one_hub)
    assert packs_before <= set(Path(caches[0], "objects").rglob("*"))  # fetched on top of what was there
    assert sorted(published(one_hub, "alice/detector")) == ["1.0.0", "1.0.1"]


def test_submodules_are_fetched_only_where_allowed_and_under_the_same_url_rules(one_hub, make_repo, git_daemon):
    alice = one_hub.user_client("alice")
    lib, lib_name = make_repo()
    lib.write({"helpers.py": "def help():\n    return 42\n", ".hidden": "x\n"}).commit()
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER})
    repo.git("submodule", "add", "-q", git_daemon.url(lib_name), "vendor/lib")
    repo.commit()
    repo.tag("v1.0.0")
    doc = register(alice, git_daemon.url(name))

    run_jobs(one_hub, indexer_allow_submodules=True)
    result = repository(alice, doc["id"])["last_result"]
    assert result["errors"] == [], result
    files = {f["path"]: f for f in alice.get("/api/v1/packages/alice/detector/versions/1.0.0").json()["files"]}
    assert sorted(files) == ["cvflow.toml", "solver.py", "vendor/lib/helpers.py"]
    assert files["vendor/lib/helpers.py"]["sha256"] == sha256(b"def help():\n    return 42\n")
    assert any("submodule vendor/lib included from" in n["message"] for n in result["notes"])

    # A submodule whose URL is a local path (here: file transport) is refused like a repository would be.
    repo.git("config", "-f", ".gitmodules", "submodule.vendor/lib.url", "/etc")
    repo.write({"cvflow.toml": manifest(version="1.0.1")}).commit()
    repo.tag("v1.0.1")
    alice.post(f"/api/v1/repositories/{doc['id']}/reindex")
    run_jobs(one_hub, indexer_allow_submodules=True)
    [error] = repository(alice, doc["id"])["last_result"]["errors"]
    assert (error["tag"], error["code"]) == ("v1.0.1", "submodule_refused")
    assert sorted(published(one_hub, "alice/detector")) == ["1.0.0"]

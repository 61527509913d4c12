"""The command lines: `cvflow-hub index URL`, `cvflow-hub indexer`, and `cvflow publish --git`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from hub.cli import main as hub_main
from hub.context import build_context
from hub.db import session_scope
from hub.services import repositories as registry
from hub.services.accounts import ANONYMOUS
from hub.settings import Settings
from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.indexer._helpers import SOLVER, manifest, published, repository, run_jobs

PASSWORD = "correct horse battery"


def _hub_cli(data_dir: Path, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    env = {"CVFLOW_HUB_INDEXER_ALLOW_PRIVATE_ADDRESSES": "1", "CVFLOW_HUB_ARGON2_MEMORY_COST": "1024",
           "CVFLOW_HUB_ARGON2_TIME_COST": "1", "CVFLOW_HUB_DATABASE_URL": None, "CVFLOW_HUB_STORAGE_URL": None}
    return CliRunner().invoke(hub_main, ["--data-dir", str(data_dir), *args], env=env, input=input,
                              catch_exceptions=False)


def test_cvflow_hub_index_url_indexes_in_the_foreground_and_the_indexer_drains_jobs(tmp_path, make_repo, git_daemon):
    data = tmp_path / "hub"
    assert _hub_cli(data, "user", "create", "alice", "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER}).commit()
    commit = repo.tag("v1.0.0")
    repo.tag("nightly")
    url = git_daemon.url(name)

    r = _hub_cli(data, "index", url)
    assert r.exit_code == 2 and "--user" in r.output  # a new repository needs a registrant

    r = _hub_cli(data, "index", url, "--user", "alice")
    assert r.exit_code == 0, r.output
    assert f"registered {url} as repository 1" in r.stderr
    assert f"published 1.0.0 from tag v1.0.0 (commit {commit[:12]})" in r.stdout
    assert "skipped tag nightly: not a SemVer version" in r.stdout
    assert r.stdout.strip().endswith("1 published, 1 skipped, 0 moved, 0 errors")

    repo.write({"cvflow.toml": manifest(version="1.1.0")}).commit()
    repo.tag("v1.1.0")
    r = _hub_cli(data, "index", url, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert [(v["version"], v["new"]) for v in result["versions"]] == [("1.0.0", False), ("1.1.0", True)]

    # A queued job (here a manual re-index) is run by `cvflow-hub indexer`.
    repo.write({"cvflow.toml": manifest(version="1.2.0")}).commit()
    repo.tag("v1.2.0")
    context = build_context(Settings.create(data_dir=data, environ={}))
    with session_scope(context.engine, write=True) as session:
        registry.reindex(session, registry.find(session, url))  # type: ignore[arg-type]
    r = _hub_cli(data, "indexer", "--once")
    assert r.exit_code == 0 and "ran 1 job(s)" in r.output, r.output
    with session_scope(context.engine) as session:
        doc = registry.document(session, ANONYMOUS, registry.find(session, url))  # type: ignore[arg-type]
    assert [v["version"] for v in doc["last_result"]["versions"] if v["new"]] == ["1.2.0"]
    context.engine.dispose()

    r = _hub_cli(data, "index", git_daemon.url("missing-repository"), "--user", "alice")
    assert r.exit_code == 1
    assert "error (repository) [fetch_failed]" in r.stderr and "does not exist" in r.stderr


def test_cvflow_publish_git_registers_the_repository(one_hub, make_repo, git_daemon, tmp_path):
    token = one_hub.create_user("alice")
    env = cli_env(tmp_path / "home", one_hub.url, token)
    repo, name = make_repo()
    repo.write({"pkg/cvflow.toml": manifest(version="2.0.0"), "pkg/solver.py": SOLVER}).commit()
    repo.tag("release-2.0.0")
    repo.tag("v2.0.0")

    r = run_cli(env, "publish", "--git", git_daemon.url(name), "--subdir", "pkg", "--tag-pattern", "v*")
    assert r.exit_code == 0, r.output
    assert f"registered {git_daemon.url(name)} (directory pkg) as repository" in r.stdout
    assert "secret: " in r.stdout and "/webhook" in r.stdout
    run_jobs(one_hub)
    assert list(published(one_hub, "alice/detector")) == ["2.0.0"]
    doc = repository(one_hub.client(token), 1)
    assert doc["last_result"]["skipped"] == []  # release-2.0.0 does not match v*

    r = run_cli(env, "publish", "--git", git_daemon.url(name), "--subdir", "pkg", "--json")
    assert r.exit_code == 1 and "already registered" in r.stderr
    r = run_cli(env, "publish", "--git", "ext::sh -c touch% /tmp/pwned")
    assert r.exit_code == 1 and "invalid_repository_url" in r.stderr
    r = run_cli(env, "publish", ".", "--subdir", "pkg")
    assert r.exit_code == 1 and "go with --git" in r.stderr

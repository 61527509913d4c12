"""The ``cvflow-hub`` command, run as the installed console script in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from alembic.script import ScriptDirectory

from hub import __version__, db
from hub.context import build_context
from hub.db import session_scope
from hub.services import accounts
from hub.settings import Settings
from tests.conftest import PG_ADMIN_URL, free_port

CVFLOW_HUB = Path(sys.executable).parent / "cvflow-hub"
PASSWORD = "a long enough password"


def _env(tmp: Path) -> dict[str, str]:
    # The child sees none of this machine's hub settings, and nothing lands in the real home.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVFLOW_HUB_")}
    env["XDG_DATA_HOME"] = str(tmp / "xdg")
    return env


def cli(data_dir: Path | None, *args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    prefix = ["--data-dir", str(data_dir)] if data_dir is not None else []
    return subprocess.run(
        [str(CVFLOW_HUB), *prefix, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
        env=_env(data_dir or Path.cwd()),
    )


def create_alice(data_dir: Path) -> str:
    """``user create alice`` then a read + publish:alice token; returns the token."""
    made = cli(data_dir, "user", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "created user alice"
    token = cli(data_dir, "token", "create", "--user", "alice", "--scope", "read", "--scope", "publish:alice")
    assert token.returncode == 0, token.stderr
    return token.stdout


def in_process(data_dir: Path):  # type: ignore[no-untyped-def]
    return build_context(Settings.create(data_dir=data_dir, environ={}, argon2_time_cost=1, argon2_memory_cost=1024))


@pytest.fixture(scope="module")
def alice_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data dir where the CLI created alice; and her token."""
    data_dir = tmp_path_factory.mktemp("cli-alice")
    return data_dir, create_alice(data_dir).strip()


# --- users and tokens -------------------------------------------------------------------------


def test_user_create_then_token_create_prints_one_token(tmp_path):
    out = create_alice(tmp_path)
    lines = out.splitlines()
    assert len(lines) == 1 and out.endswith("\n")
    secret = lines[0]
    assert secret.startswith("cvf_") and len(secret) > 40

    context = in_process(tmp_path)
    with session_scope(context.engine) as session:
        who = accounts.resolve_token(session, secret)
        assert who.user is not None and who.user.name == "alice" and not who.user.is_admin
        assert who.scopes is not None and who.scopes.items == {"read", "publish:alice"}
        # The password came from stdin, without its newline.
        assert accounts.authenticate(session, context.hasher, "alice", PASSWORD).name == "alice"
    context.engine.dispose()


def test_token_create_defaults_to_read_and_publish(alice_dir):
    data_dir, _ = alice_dir
    r = cli(data_dir, "token", "create", "--user", "alice", "--name", "laptop")
    assert r.returncode == 0, r.stderr
    context = in_process(data_dir)
    with session_scope(context.engine) as session:
        who = accounts.resolve_token(session, r.stdout.strip())
        assert who.scopes is not None and who.scopes.items == {"read", "publish"}
    context.engine.dispose()


@pytest.mark.parametrize("scope", ["write", "publish:Alice", "admin publish"])
def test_a_bad_scope_exits_non_zero_and_prints_no_token(alice_dir, scope):
    data_dir, _ = alice_dir
    r = cli(data_dir, "token", "create", "--user", "alice", "--scope", scope)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert "--scope" in r.stderr and "unknown scope" in r.stderr
    assert "Traceback" not in r.stderr


def test_token_create_for_an_unknown_user_exits_1(alice_dir):
    data_dir, _ = alice_dir
    r = cli(data_dir, "token", "create", "--user", "nobody")
    assert r.returncode == 1 and r.stdout == ""
    assert "user_not_found" in r.stderr and "Traceback" not in r.stderr


def test_an_admin_token_for_a_non_admin_exits_1(alice_dir):
    data_dir, _ = alice_dir
    r = cli(data_dir, "token", "create", "--user", "alice", "--scope", "admin")
    assert r.returncode == 1 and r.stdout == ""
    assert "forbidden" in r.stderr and "Traceback" not in r.stderr


def test_an_expiry_past_the_calendar_fails_without_a_traceback(alice_dir):
    data_dir, _ = alice_dir
    r = cli(data_dir, "token", "create", "--user", "alice", "--expires-in", str(10**12))
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.strip() and "Traceback" not in r.stderr, r.stderr


def test_creating_the_same_user_twice_exits_1_with_name_taken(alice_dir):
    data_dir, _ = alice_dir
    r = cli(data_dir, "user", "create", "alice", "--password-stdin", stdin="another password\n")
    assert r.returncode == 1
    assert "name_taken" in r.stderr and "alice" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_short_password_is_refused(tmp_path):
    r = cli(tmp_path, "user", "create", "bob", "--password-stdin", stdin="short\n")
    assert r.returncode == 1 and "invalid_field" in r.stderr
    r = cli(tmp_path, "token", "create", "--user", "bob")
    assert r.returncode == 1 and "user_not_found" in r.stderr


# --- serve ----------------------------------------------------------------------------------


@contextmanager
def serving(data_dir: Path, *args: str) -> Iterator[tuple[httpx.Client, Path]]:
    """``cvflow-hub serve`` on a free port; yields a client for it and its log file."""
    port = free_port()
    log = data_dir / f"serve-{port}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(CVFLOW_HUB), "--data-dir", str(data_dir), "serve", "--port", str(port), *args],
            stdout=sink, stderr=subprocess.STDOUT, env=_env(data_dir),
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, f"cvflow-hub serve exited early:\n{log.read_text()}"
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"no answer on /healthz within 20 s:\n{log.read_text()}"
                time.sleep(0.1)
            yield client, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_serve_answers_probes_and_accepts_tokens_made_by_the_cli(alice_dir):
    data_dir, secret = alice_dir
    with serving(data_dir) as (client, log):
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"

        me = client.get("/api/v1/whoami", headers={"authorization": f"Bearer {secret}"})
        assert me.status_code == 200, me.text
        assert me.json()["name"] == "alice" and me.json()["scopes"] == ["publish:alice", "read"]

        login = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 201, login.text

        assert client.get("/api/v1/packages/demo/edge-sobel").status_code == 404
    assert f"cvflow-hub {__version__}" in log.read_text()


def test_serve_demo_publishes_the_examples_once(tmp_path):
    with serving(tmp_path, "--demo") as (client, log):
        r = client.get("/api/v1/packages/demo/edge-sobel")
        assert r.status_code == 200, r.text
        assert r.json()["latest_version"]
        version = r.json()["latest_version"]
        files = client.get(f"/api/v1/packages/demo/edge-sobel/versions/{version}").json()["files"]
        assert {"cvflow.toml", "solver.py"} <= {f["path"] for f in files}
    assert "demo: published demo/edge-sobel@" in log.read_text()
    assert "demo: demo/digits-shifted has 40 images (40 added)" in log.read_text()
    assert "token create --user demo --scope read --scope annotate)\n  cvflow annotate suggest demo/digits-shifted\n" in (
        log.read_text())

    # A second start on the same data keeps what is there.
    with serving(tmp_path, "--demo") as (client, log):
        again = client.get("/api/v1/packages/demo/edge-sobel")
        assert again.status_code == 200 and again.json()["latest_version"] == version
    assert "already published" in log.read_text()


# --- migrate --------------------------------------------------------------------------------


@pytest.fixture
def throwaway_pg() -> Iterator[str]:
    """A new, empty PostgreSQL database; its plain ``postgresql://`` URL."""
    name = f"cvflow_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrate_brings_postgresql_to_the_head_revision(tmp_path, throwaway_pg):
    head = ScriptDirectory.from_config(db.alembic_config(throwaway_pg)).get_current_head()
    assert head
    for _ in range(2):  # a second run has nothing to do and still succeeds
        r = cli(None, "--database-url", throwaway_pg, "migrate")
        assert r.returncode == 0, r.stderr
        assert "is at head" in r.stdout
    with psycopg.connect(throwaway_pg) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
        tables = {row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    assert {"users", "tokens", "packages", "versions", "blobs"} <= tables


# --- gc -------------------------------------------------------------------------------------

GC_KEYS = {"dry_run", "blobs_removed", "bytes_freed", "stray_objects_removed", "uploads_expired", "staging_removed"}


def test_gc_dry_run_reports_and_removes_nothing(tmp_path):
    context = in_process(tmp_path)
    orphan = context.uploads.put_small(b"nothing references me", grant_to=None)

    r = cli(tmp_path, "gc", "--dry-run", "--grace", "0")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report) == GC_KEYS
    assert report["dry_run"] is True
    assert report["blobs_removed"] == 1 and report["bytes_freed"] == len(b"nothing references me")
    assert context.store.exists(orphan)

    # Within the default grace period the blob is not even a candidate.
    r = cli(tmp_path, "gc", "--dry-run")
    assert json.loads(r.stdout)["blobs_removed"] == 0

    r = cli(tmp_path, "gc", "--grace", "0")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["dry_run"] is False and report["blobs_removed"] == 1
    assert not context.store.exists(orphan)
    context.engine.dispose()


# --- help -----------------------------------------------------------------------------------


def test_root_help_names_the_commands_and_the_environment():
    r = cli(None, "--help")
    assert r.returncode == 0
    for command in ("serve", "migrate", "user", "token", "org", "gc"):
        assert f"\n  {command} " in r.stdout, command
    assert "CVFLOW_HUB_" in r.stdout and "--data-dir" in r.stdout
    version = cli(None, "--version")
    assert version.returncode == 0 and __version__ in version.stdout


def test_token_create_help_explains_scopes():
    r = cli(None, "token", "create", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for scope in ("read", "publish", "publish:NAMESPACE", "publish:NAMESPACE/NAME", "admin"):
        assert scope in text
    assert "Repeatable" in text and "shown only this once" in text

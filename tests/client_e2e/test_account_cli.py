"""`cvflow login`, `logout` and `whoami` against a live hub over a real socket."""

from __future__ import annotations

import json
import stat
import tomllib

import pytest

from tests.client_e2e._publish_helpers import cli_env, run_cli
from tests.conftest import free_port
from tests.helpers import PASSWORD


@pytest.fixture
def alice_token(hub):  # type: ignore[no-untyped-def]
    return hub.create_user("alice")


def saved(home):  # type: ignore[no-untyped-def]
    return tomllib.loads((home / "config.toml").read_text())


def test_login_with_password_saves_a_private_config_that_whoami_uses(hub, alice_token, tmp_path):
    result = run_cli(cli_env(tmp_path, hub.url), "login", input=f"alice\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "logged in as alice" in result.stdout
    assert PASSWORD not in result.output  # the hidden prompt does not echo it
    config = tmp_path / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    data = saved(tmp_path)
    assert data["hub"] == hub.url and set(data["tokens"]) == {hub.url}
    assert data["tokens"][hub.url].startswith("cvf_")

    # Only the saved config now: no CVFLOW_HUB, no CVFLOW_TOKEN.
    who = run_cli(cli_env(tmp_path, None), "whoami")
    assert who.exit_code == 0, who.output
    assert who.stdout.startswith(f"alice at {hub.url}")
    assert "publish" in who.stdout and "read" in who.stdout

    as_json = run_cli(cli_env(tmp_path, None), "whoami", "--json")
    body = json.loads(as_json.stdout)
    assert body["name"] == "alice" and body["hub"] == hub.url
    assert set(body["scopes"]) == {"read", "publish"}


def test_login_with_password_stdin_and_hub_option(hub, alice_token, tmp_path):
    result = run_cli(cli_env(tmp_path, None), "login", "--hub", hub.url, "-u", "alice", "--password-stdin",
                     input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert saved(tmp_path)["hub"] == hub.url
    assert run_cli(cli_env(tmp_path, None), "whoami").exit_code == 0


def test_login_with_a_wrong_password_exits_1_with_the_hubs_message(hub, alice_token, tmp_path):
    result = run_cli(cli_env(tmp_path, hub.url), "login", "-u", "alice", input="not the password\n")
    assert result.exit_code == 1
    assert "error: The user name or password is wrong. [invalid_credentials]" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "config.toml").exists()


def test_login_with_a_token_checks_it_before_saving(hub, alice_token, tmp_path):
    bad = run_cli(cli_env(tmp_path, hub.url), "login", "--token", alice_token[:-4] + "xxxx")
    assert bad.exit_code == 1
    assert "the token is unknown or revoked [unauthenticated]" in bad.stderr
    assert not (tmp_path / "config.toml").exists()

    good = run_cli(cli_env(tmp_path, hub.url), "login", "--token", alice_token)
    assert good.exit_code == 0, good.output
    assert saved(tmp_path)["tokens"] == {hub.url: alice_token}


def test_logout_forgets_the_hubs_token_but_keeps_the_hub(hub, alice_token, tmp_path):
    run_cli(cli_env(tmp_path, hub.url), "login", "--token", alice_token)
    out = run_cli(cli_env(tmp_path, None), "logout")
    assert out.exit_code == 0 and "logged out" in out.stdout
    assert saved(tmp_path) == {"hub": hub.url}
    who = run_cli(cli_env(tmp_path, None), "whoami")
    assert who.exit_code == 1
    assert f"not logged in to {hub.url}" in who.stderr
    again = run_cli(cli_env(tmp_path, None), "logout")
    assert again.exit_code == 0 and "not logged in" in again.stdout


def test_whoami_with_a_wrong_token_shows_the_hubs_message(hub, tmp_path):
    result = run_cli(cli_env(tmp_path, hub.url, "cvf_" + "x" * 40), "whoami")
    assert result.exit_code == 1
    assert "[unauthenticated]" in result.stderr and "token" in result.stderr
    assert "Traceback" not in result.output


def test_no_hub_listening_says_it_cannot_be_reached(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["whoami"], ["login", "-u", "alice", "--password-stdin"], ["search", "x"]):
        result = run_cli(cli_env(tmp_path, url, "cvf_" + "x" * 40), *args, input="pw\n")
        assert result.exit_code == 1, args
        assert f"cannot reach the hub at {url}" in result.stderr, result.output
        assert "Traceback" not in result.output


def test_every_command_teaches_with_an_example(tmp_path):
    for command in ("login", "logout", "whoami", "init", "validate", "publish", "yank", "search", "info"):
        result = run_cli(cli_env(tmp_path, None), command, "--help")
        assert result.exit_code == 0
        assert "Example" in result.stdout and f"cvflow {command}" in result.stdout, command

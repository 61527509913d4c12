"""A token goes only to the hub it was saved for: every command, both ways of naming another hub.

Two stand-in hubs on loopback (tests/client_e2e/_recording_hub.py) record the Authorization
header of every request they get, over a real socket. The client logs in to hub A, then each
command that talks to a hub is pointed at hub B (with ``--hub`` and with ``CVFLOW_HUB``), and
B must never see A's token. The same command pointed at A must send it, so the check can fail.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import click
import httpx
import pytest
from PIL import Image

from cvflow.api import HubClient
from cvflow.cli import main
from cvflow.errors import HubAuthError, HubNotFoundError, HubUnavailableError
from tests.client_e2e._recording_hub import RecordingHub, cli_env, run_cli, write_package

TOKEN_A, TOKEN_B = "cvf_" + "a" * 40, "cvf_" + "b" * 40


@pytest.fixture
def hub_a() -> Iterator[RecordingHub]:
    with RecordingHub(token=TOKEN_A) as hub:
        yield hub


@pytest.fixture
def hub_b() -> Iterator[RecordingHub]:
    with RecordingHub(token=TOKEN_B, name="bob") as hub:
        yield hub


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command under ``group``, lazy ones included (``group.commands`` holds only those loaded)."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def write_png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    """A small valid PNG at ``path`` (its folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), colour).save(path, format="PNG")
    return path


def project_commands(tmp: Path) -> dict[tuple[str, ...], list[str]]:
    """``cvflow annotate``: create alice/street (suggested by alice/detector's solver), push a folder
    with one PNG to it, run a suggestion worker, show it, snapshot it; in this order."""
    images = write_png(tmp / "photos" / "street-1.png").parent
    return {
        ("annotate", "create"): ["annotate", "create", "alice/street", "--task", "detection", "--classes", "car",
                                 "--suggest", "alice/detector", "--solver", "detect"],
        ("annotate", "push"): ["annotate", "push", "alice/street", str(images)],
        ("annotate", "suggest"): ["annotate", "suggest", "alice/street"],
        ("annotate", "status"): ["annotate", "status", "alice/street"],
        ("annotate", "snapshot"): ["annotate", "snapshot", "alice/street"],
    }


def dataset_commands(tmp: Path) -> dict[tuple[str, ...], list[str]]:
    """``cvflow dataset``: import an ImageFolder folder (one class, one image), export it, check it; in this order."""
    source = write_png(tmp / "folder" / "car" / "car-1.png").parents[1]
    return {
        ("dataset", "import"): ["dataset", "import", "imagefolder", str(source), str(tmp / "cars"), "--name",
                                "alice/cars", "-q"],
        ("dataset", "export"): ["dataset", "export", "imagefolder", str(tmp / "cars"), str(tmp / "cars-out"), "-q"],
        ("dataset", "check"): ["dataset", "check", str(tmp / "cars"), "-q"],
    }


def hub_commands(tmp: Path) -> dict[tuple[str, ...], list[list[str]]]:
    """Each command that talks to a hub, with arguments that make it do so (some more than one way)."""
    package = write_package(tmp / "pkg", "alice/detector")
    return {
        ("login",): [["login", "-u", "alice", "--password-stdin"]],
        ("whoami",): [["whoami"]],
        ("search",): [["search", "x"]],
        ("info",): [["info", "alice/detector"], ["info", "alice/detector@^1"]],
        ("publish",): [["publish", "-q", str(package)], ["publish", "--git", "https://git.example/a/b.git"]],
        ("yank",): [["yank", "alice/detector@1.0.0", "--reason", "bad"]],
        ("pull",): [["pull", "-q", "alice/detector"]],
        ("install",): [["install", "alice/detector", "--lock-file", str(tmp / "cvflow.lock")]],
        ("bundle",): [["bundle", "alice/detector", "-o", str(tmp / "out.cvflow")]],
        ("run",): [["run", "alice/detector"]],
        **{command: [args] for command, args in project_commands(tmp).items()},
        ("finetune",): [["finetune", "alice/detector", "--data", "alice/street-data@1.0.0", "--to", "alice/ft"]],
        ("worker",): [["worker", "--train", "--once"]],
    }


def local_commands(tmp: Path) -> dict[tuple[str, ...], list[str]]:
    """Each command that never talks to a hub."""
    return {
        ("logout",): ["logout"],
        ("init",): ["init", str(tmp / "new"), "--name", "alice/new"],
        ("validate",): ["validate", str(write_package(tmp / "local", "alice/local"))],
        ("cache", "ls"): ["cache", "ls"],
        ("cache", "prune"): ["cache", "prune", "--dry-run"],
        ("cache", "verify"): ["cache", "verify"],
        ("list",): ["list"],
        ("uninstall",): ["uninstall", "alice/detector"],
        ("ps",): ["ps"],
        ("stop",): ["stop", "--all"],
        ("logs",): ["logs", "detector"],
        ("restart",): ["restart", "detector"],
        **dataset_commands(tmp),
    }


def saved(home: Path) -> dict[str, object]:
    return tomllib.loads((home / "config.toml").read_text())


def login(home: Path, hub: RecordingHub, token: str) -> None:
    result = run_cli(cli_env(home, None), "login", "--hub", hub.url, "--token", token)
    assert result.exit_code == 0, result.output


def test_every_command_is_classified(tmp_path: Path) -> None:
    known = set(hub_commands(tmp_path)) | set(local_commands(tmp_path))
    assert set(leaf_commands(main)) == known, "say whether a new command talks to a hub"


@pytest.mark.parametrize("how", ["--hub", "CVFLOW_HUB"])
def test_no_command_sends_the_token_saved_for_one_hub_to_another(
        hub_a: RecordingHub, hub_b: RecordingHub, tmp_path: Path, how: str) -> None:
    home = tmp_path / "home"
    login(home, hub_a, TOKEN_A)
    for command, variants in hub_commands(tmp_path).items():
        for args in variants:
            hub_a.reset()
            hub_b.reset()
            at_a = run_cli(cli_env(home, None), *args, input="pw\n")
            if command != ("login",):  # a password login sends no token, by design
                assert f"Bearer {TOKEN_A}" in hub_a.authorizations(), (args, at_a.output)
            assert not hub_b.seen
            hub_a.reset()

            if how == "--hub":
                at_b = run_cli(cli_env(home, None), "--hub", hub_b.url, *args, input="pw\n")
            else:
                at_b = run_cli(cli_env(home, hub_b.url), *args, input="pw\n")
            assert "Traceback" not in at_b.output
            assert hub_b.authorizations() <= {None}, (args, hub_b.seen)
            assert not [s for s in hub_a.seen if s.authorization], "A is not asked on B's behalf"
            if command != ("whoami",):  # whoami without a token for B says so without asking B
                assert hub_b.seen, (args, at_b.output)
            else:
                assert at_b.exit_code == 1 and f"not logged in to {hub_b.url}" in at_b.stderr


def test_commands_that_need_no_hub_ask_none(hub_a: RecordingHub, hub_b: RecordingHub, tmp_path: Path) -> None:
    home = tmp_path / "home"
    login(home, hub_a, TOKEN_A)
    hub_a.reset()
    for args in local_commands(tmp_path).values():
        result = run_cli(cli_env(home, hub_b.url), *args)
        assert "Traceback" not in result.output
    assert hub_a.seen == [] and hub_b.seen == []


def test_each_hub_gets_its_own_token_and_logout_forgets_one(
        hub_a: RecordingHub, hub_b: RecordingHub, tmp_path: Path) -> None:
    login(tmp_path, hub_a, TOKEN_A)
    login(tmp_path, hub_b, TOKEN_B)
    assert saved(tmp_path) == {"hub": hub_b.url, "tokens": {hub_a.url: TOKEN_A, hub_b.url: TOKEN_B}}
    assert (tmp_path / "config.toml").stat().st_mode & 0o077 == 0

    hub_a.reset()
    hub_b.reset()
    assert run_cli(cli_env(tmp_path, None), "whoami").stdout.startswith(f"bob at {hub_b.url}")  # the last login
    assert run_cli(cli_env(tmp_path, hub_a.url), "whoami").stdout.startswith(f"alice at {hub_a.url}")
    assert run_cli(cli_env(tmp_path, None), "--hub", hub_a.url + "/", "whoami").exit_code == 0
    assert hub_a.authorizations() == {f"Bearer {TOKEN_A}"}
    assert hub_b.authorizations() == {f"Bearer {TOKEN_B}"}

    out = run_cli(cli_env(tmp_path, None), "logout", "--hub", hub_a.url)
    assert out.exit_code == 0 and f"forgot the token for {hub_a.url}" in out.stdout
    assert saved(tmp_path) == {"hub": hub_b.url, "tokens": {hub_b.url: TOKEN_B}}
    who = run_cli(cli_env(tmp_path, hub_a.url), "whoami")
    assert who.exit_code == 1 and f"not logged in to {hub_a.url}" in who.stderr
    assert run_cli(cli_env(tmp_path, None), "whoami").exit_code == 0
    again = run_cli(cli_env(tmp_path, hub_a.url), "logout")
    assert again.exit_code == 0 and f"not logged in to {hub_a.url}" in again.stdout


def test_a_login_saved_by_an_older_client_stays_with_its_hub(
        hub_a: RecordingHub, hub_b: RecordingHub, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(f'hub = "{hub_a.url}/"\ntoken = "{TOKEN_A}"\n')

    assert run_cli(cli_env(tmp_path, None), "whoami").exit_code == 0
    assert hub_a.authorizations() == {f"Bearer {TOKEN_A}"}
    run_cli(cli_env(tmp_path, None), "--hub", hub_b.url, "search", "x")
    run_cli(cli_env(tmp_path, hub_b.url), "info", "alice/detector")
    assert len(hub_b.seen) == 2 and hub_b.authorizations() == {None}

    login(tmp_path, hub_b, TOKEN_B)  # the next write moves the old token under its hub
    assert saved(tmp_path) == {"hub": hub_b.url, "tokens": {hub_a.url: TOKEN_A, hub_b.url: TOKEN_B}}


def test_cvflow_token_pairs_with_cvflow_hub(hub_a: RecordingHub, hub_b: RecordingHub, tmp_path: Path) -> None:
    env = cli_env(tmp_path, hub_a.url, TOKEN_A)
    assert run_cli(env, "whoami").exit_code == 0
    assert run_cli(env, "--hub", hub_b.url, "search", "x").exit_code == 0 or hub_b.seen
    assert hub_b.seen and hub_b.authorizations() == {None}

    hub_b.reset()  # with no CVFLOW_HUB, CVFLOW_TOKEN is for whichever hub the command uses
    assert run_cli(cli_env(tmp_path, None, TOKEN_B), "--hub", hub_b.url, "whoami").exit_code == 0
    assert hub_b.authorizations() == {f"Bearer {TOKEN_B}"}


def test_a_hub_url_that_is_not_one_is_a_clear_error(tmp_path: Path) -> None:
    for url in ("nonsense", "ftp://hub.example.org", "https://user:secret@hub.example.org", "http://h:99999"):
        result = run_cli(cli_env(tmp_path, url), "search", "x")
        assert result.exit_code == 1, url
        assert "error: hub URL" in result.stderr and "secret" not in result.output
        assert "Traceback" not in result.output


def test_a_redirect_to_another_origin_carries_no_token(hub_a: RecordingHub, hub_b: RecordingHub) -> None:
    def via_a(target: str) -> str:
        return "/redirect/" + quote(target, safe="")

    with HubClient(hub_a.url, TOKEN_A) as client:
        with pytest.raises(HubNotFoundError, match="nothing at /presigned/blob"):  # B answered, A did not
            with client.stream(via_a(f"{hub_b.url}/presigned/blob?X-Amz-Signature=x")):
                pass
        client.request("GET", via_a(f"{hub_a.url}/api/v1/whoami"))  # same origin: the token stays
        other_host = hub_a.url.replace("127.0.0.1", "localhost")  # same server, other origin
        with pytest.raises(HubAuthError, match="no valid token"):
            client.request("GET", via_a(f"{other_host}/api/v1/whoami"))
        with pytest.raises(HubNotFoundError, match="nothing at /absolute"):
            client.request("GET", f"{hub_b.url}/absolute")  # an absolute URL elsewhere, not a redirect
    assert [s.path for s in hub_b.seen] == ["/presigned/blob?X-Amz-Signature=x", "/absolute"]
    assert hub_b.authorizations() == {None}
    whoami = [s.authorization for s in hub_a.seen if s.path == "/api/v1/whoami"]
    assert whoami == [f"Bearer {TOKEN_A}", None]


def test_an_http_to_https_redirect_carries_no_token(hub_a: RecordingHub) -> None:
    # httpx keeps Authorization on an http://host -> https://host hop (ports 80 and 443); the
    # client does not, since that is another origin. Hub A serves as the proxy for
    # http://127.0.0.1 (port 80); nothing speaks TLS here, so what the client would send over
    # https is read off the request itself, after the client's own hook has run.
    sent: list[httpx.Request] = []
    http = httpx.Client(base_url="http://127.0.0.1", proxy=hub_a.url, follow_redirects=True)
    with HubClient("http://127.0.0.1", TOKEN_A, client=http) as client:
        client.http.event_hooks["request"].append(sent.append)
        with pytest.raises(HubUnavailableError):
            client.request("GET", "/redirect/" + quote("https://127.0.0.1/blob", safe=""))
    assert [(str(r.url), r.headers.get("authorization")) for r in sent] == [
        ("http://127.0.0.1/redirect/https%3A%2F%2F127.0.0.1%2Fblob", f"Bearer {TOKEN_A}"),
        ("https://127.0.0.1/blob", None)]
    assert [s.authorization for s in hub_a.seen] == [f"Bearer {TOKEN_A}"]

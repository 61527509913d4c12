"""Every ``cvflow`` command, run with a CVFLOW_HOME it cannot write, fails with one clear line.

The commands come from the click group itself, so a new command is covered (and must say
here what it needs) as soon as it exists. The hub is a live one over a real socket, holding a
published package, so that pull, install, bundle and run get as far as writing the cache.
Two unwritable homes: a path under a regular file (fails for root too), and a directory with
mode 0500 (skipped when the tests run as root, for whom the mode does not stop writes).
A command that needs no writing (search, ps, cache ls...) may succeed: a read-only home must
not stop an edge machine from reading; if it fails, it fails with one clear line too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client_e2e._recording_hub import cli_env, run_cli, write_package
from tests.client_e2e.test_token_per_hub import dataset_commands, leaf_commands, project_commands, write_png
from tests.helpers import LiveHub, publish

NAME = "alice/detector"
QUEUE = "alice/queue"  # a project with an item to suggest for, filled by the test from a writable home


def commands(tmp: Path, token: str) -> dict[tuple[str, ...], tuple[list[str], bool]]:
    """Each command: arguments that make it do its work, and whether that work writes CVFLOW_HOME."""
    package = write_package(tmp / "pkg", NAME, "2.0.0")
    return {
        ("login",): (["login", "--token", token], True),
        ("logout",): (["logout"], False),
        ("whoami",): (["whoami"], False),
        ("init",): (["init", str(tmp / "new"), "--name", "alice/new"], False),
        ("validate",): (["validate", str(package)], False),
        ("publish",): (["publish", "-q", str(package)], True),  # it keeps upload sessions to resume
        ("yank",): (["yank", f"{NAME}@1.0.0", "--reason", "bad"], False),
        ("search",): (["search", "detector"], False),
        ("info",): (["info", NAME], False),
        ("pull",): (["pull", "-q", NAME], True),
        ("cache", "ls"): (["cache", "ls"], False),
        ("cache", "prune"): (["cache", "prune"], False),
        ("cache", "verify"): (["cache", "verify"], False),
        ("install",): (["install", NAME, "--lock-file", str(tmp / "cvflow.lock")], True),
        ("list",): (["list"], False),
        ("uninstall",): (["uninstall", NAME], False),
        ("bundle",): (["bundle", NAME, "-o", str(tmp / "out.cvflow")], True),
        ("run",): (["run", NAME], True),
        ("ps",): (["ps"], False),
        ("stop",): (["stop", "--all"], False),
        ("logs",): (["logs", "detector"], False),
        ("restart",): (["restart", "detector"], False),
        **{command: (args, False) for command, args in dataset_commands(tmp).items()},  # DIRs outside home
        **annotate_commands(tmp),
        # a model as the data (and alice/detector declares no trainer): refused before anything is written
        ("finetune",): (["finetune", NAME, "--data", f"{NAME}@1.0.0", "--to", "alice/ft"], False),
        ("worker",): (["worker", "--train", "--once"], False),  # a token without annotate: refused by the hub
    }


def annotate_commands(tmp: Path) -> dict[tuple[str, ...], tuple[list[str], bool]]:
    """Create alice/street, push a PNG to it (its upload session is kept in home, as publish's are,
    so it adds nothing), show it, snapshot it (nothing labelled: a clear error); suggest claims
    QUEUE's item and installs the model it names, alice/detector, into home."""
    annotate = {command: (args, command == ("annotate", "push")) for command, args in project_commands(tmp).items()}
    annotate[("annotate", "suggest")] = (["annotate", "suggest", QUEUE], True)
    return annotate


def _under_a_file(tmp: Path) -> Path:
    (tmp / "a-file").write_text("not a directory")
    return tmp / "a-file" / "cvflow"


def _read_only_dir(tmp: Path) -> Path:
    home = tmp / "read-only"
    home.mkdir()
    home.chmod(0o500)
    try:
        (home / "probe").touch()
    except PermissionError:
        return home
    (home / "probe").unlink()
    home.chmod(0o700)
    pytest.skip("running as root: mode 0500 does not stop writes (the path under a file covers root)")


@pytest.fixture(params=[_under_a_file, _read_only_dir], ids=["under-a-file", "mode-0500"])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    home = request.param(tmp_path)
    yield home
    if home.is_dir():
        home.chmod(0o700)


def test_every_command_is_listed(tmp_path: Path) -> None:
    assert set(leaf_commands_of_cli()) == set(commands(tmp_path, "t")), "say what a new command needs"


def leaf_commands_of_cli() -> list[tuple[str, ...]]:
    from cvflow.cli import main

    return list(leaf_commands(main))


def test_an_unwritable_home_is_one_clear_error(hub: LiveHub, home: Path, tmp_path: Path) -> None:
    token = hub.create_user("alice")
    assert publish(hub.client(token), NAME, "1.0.0").status_code == 201
    assert publish(hub.client(token), NAME, "1.0.1").status_code == 201  # QUEUE's model once 1.0.0 is yanked
    writable = cli_env(tmp_path / "writable-home", hub.url, token)
    image = write_png(tmp_path / "queue" / "q.png", (0, 90, 200))  # not alice/street's: its push must upload
    for args in (["annotate", "create", QUEUE, "--task", "detection", "--classes", "car", "--suggest", NAME,
                  "--solver", "detect"], ["annotate", "push", QUEUE, str(image.parent)]):
        assert run_cli(writable, *args).exit_code == 0, args
    work = tmp_path / "work"
    work.mkdir()
    env = cli_env(home, hub.url, token)
    for command, (args, writes) in commands(work, token).items():
        result = run_cli(env, *args)  # an uncaught exception fails the test here, with its traceback
        shown = f"{command}: exit {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output, shown
        assert result.exit_code in (0, 1), shown
        if writes:
            assert result.exit_code == 1, shown
        if result.exit_code == 1:
            lines = result.stderr.strip().splitlines()
            assert lines and lines[-1].startswith("error: "), shown
        if writes:
            assert f"cannot use CVFLOW_HOME ({home})" in result.stderr, shown
    assert not os.path.exists(tmp_path / "a-file" / "cvflow")

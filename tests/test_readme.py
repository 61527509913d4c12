"""README.md, run as a reader runs it.

* "Publish your first model", end to end: the commands are read from the section's ``sh``
  blocks and run in bash, one after the other, against a fresh ``cvflow-hub serve`` started as
  the README starts it (a temporary data directory, a free port). Only the hub's port, the
  runner's port, the token and the ``.venv/bin/`` folder are put in; everything else runs as
  written. The block after "another machine" runs with a fresh home and no token, and ends
  with the README's ``curl`` against the package's runner. Each step's wall time is printed
  (``pytest -s`` shows them).
* The demo hub's ``curl`` lines, and the Annotate section's token line (the token alone is
  captured) against the same hub.
* Every command in the README's ``sh`` blocks is run by some test: :data:`RUN_BY` maps each to
  the test that runs it, and the check reads that test for the command's program and words.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import free_port
from tests.test_cli import PASSWORD, serving

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
PHOTO = ROOT / "examples" / "face-utility" / "samples" / "astronaut.jpg"
PUBLISH_SECTION = "Publish your first model"
DEMO_SECTION = "Run a hub with demo packages"
#: The addresses the README uses, replaced by free ports here.
README_HUB, README_RUNNER_PORT = "127.0.0.1:8000", "9000"

#: Which test runs each command of the README (the longest matching prefix wins; commands are
#: compared without ``.venv/bin/`` and with their quotes and comments gone). A command mapped
#: to this file must be one the tests here run; for any other file, that file must name the
#: command's program and every word of the prefix.
RUN_BY = {
    "python3 -m venv": "scripts/test",
    "pip install -e ./client": "scripts/test",
    "cvflow-hub serve --demo": "tests/test_readme.py",
    "curl http://127.0.0.1:8000/api/v1/": "tests/test_readme.py",
    "cvflow run demo/face-utility": "tests/runner/test_faces_e2e.py",
    "cvflow ps": "tests/runner/test_runtime_cli.py",
    "cvflow stop demo/face-utility": "tests/runner/test_faces_e2e.py",
    "cvflow-hub user create": "tests/test_readme.py",
    "cvflow-hub token create": "tests/test_readme.py",
    "cvflow login": "tests/test_readme.py",
    "cvflow init": "tests/test_readme.py",
    "cvflow validate": "tests/test_readme.py",
    "cvflow publish": "tests/test_readme.py",
    "cvflow --hub": "tests/test_readme.py",
    "cvflow install": "tests/test_readme.py",
    "cvflow run alice/my-model": "tests/test_readme.py",
    "curl -F image=@photo.jpg": "tests/test_readme.py",
    "cvflow stop my-model": "tests/test_readme.py",
    "cvflow annotate create": "tests/client_e2e/test_annotate_cli.py",
    "cvflow annotate push": "tests/client_e2e/test_annotate_cli.py",
    "cvflow annotate suggest": "tests/client_e2e/test_annotate_cli.py",
    "cvflow finetune": "tests/client_e2e/test_finetune_cli.py",
    "cvflow worker --train": "tests/training/test_worker.py",
    "scripts/test": ".ci/run",
    "cvflow-hub migrate": "tests/test_cli.py",
    "cvflow-hub serve": "tests/test_cli.py",
}


# --- reading the README ------------------------------------------------------------------------


def sections(text: str) -> dict[str, str]:
    """``## Title`` -> the text under it, up to the next ``## ``."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def section(title: str) -> str:
    """The README's section whose title starts with ``title``."""
    found = [body for name, body in sections(README.read_text()).items() if name.startswith(title)]
    assert len(found) == 1, f"README.md has no one section {title!r}"
    return found[0]


@dataclass
class Block:
    prose: str  # the text between the previous block (or the heading) and this one
    lines: list[str]  # its command lines, continuation lines joined


def sh_blocks(section: str) -> list[Block]:
    blocks, last = [], 0
    for match in re.finditer(r"^```sh\n(.*?)^```$", section, flags=re.M | re.S):
        body = match.group(1).replace("\\\n", " ")
        lines = [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]
        blocks.append(Block(section[last:match.start()], lines))
        last = match.end()
    return blocks


def commands(line: str) -> list[str]:
    """The commands one shell line runs, each as its words joined by spaces: ``a && b`` is two,
    ``$(c)`` is one more, and a bare ``export X=...`` or ``X=...`` runs nothing."""
    inner = re.findall(r"\$\(([^()]*)\)", line)
    found = []
    for part in [re.sub(r"\$\([^()]*\)", "SUBST", line), *inner]:
        current: list[str] = []
        for token in [*shlex.split(part, comments=True), "&&"]:
            if token not in {"&&", "||", ";", "|"}:
                current.append(token)
                continue
            while current and (current[0] == "export" or re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", current[0])):
                current.pop(0)
            if current:
                found.append(" ".join([current[0].removeprefix(".venv/bin/"), *current[1:]]))
            current = []
    return found


def readme_commands() -> list[str]:
    return [c for body in sections(README.read_text()).values() for block in sh_blocks(body)
            for line in block.lines for c in commands(line)]


def run_by(command: str) -> tuple[str, str] | None:
    """(prefix, test path) that :data:`RUN_BY` gives ``command``, or None."""
    matches = [p for p in RUN_BY if command == p or command.startswith(p + " ") or
               (p.endswith(("/", "=", "@")) and command.startswith(p))]
    return (best := max(matches, key=len), RUN_BY[best]) if matches else None


# --- running commands as a reader does --------------------------------------------------------


@dataclass
class Step:
    command: str
    stdout: str
    stderr: str
    seconds: float


@dataclass
class Shell:
    """bash, one command at a time, keeping what a terminal keeps between them: the environment
    (``export``) and the working directory."""

    env: dict[str, str]
    cwd: Path
    scratch: Path
    steps: list[Step] = field(default_factory=list)

    def run(self, command: str, *, stdin: str = "", tty: bool = False, timeout: float = 600,
            label: str | None = None) -> Step:
        """Run ``command``; it must succeed without a traceback. With ``tty``, its stdout is a
        terminal, as when a person types it. ``label`` names it in the timings (the README's line)."""
        n = len(self.steps)
        saved = self.scratch / f"env-{n}"
        script = f"set -eo pipefail\n{command}\nenv -0 >{shlex.quote(str(saved))}\n"
        feed, err = self.scratch / f"stdin-{n}", self.scratch / f"stderr-{n}"
        feed.write_text(stdin)
        start = time.monotonic()
        with feed.open() as fin, err.open("w") as ferr:
            if tty:
                out, code = _on_a_terminal(["bash", "-c", script], fin, ferr, self.env, self.cwd, timeout)
            else:  # a file, not a pipe: a runner started in the background may keep it open
                out_path = self.scratch / f"stdout-{n}"
                with out_path.open("w") as fout:
                    code = subprocess.run(["bash", "-c", script], stdin=fin, stdout=fout, stderr=ferr, env=self.env,
                                          cwd=self.cwd, timeout=timeout).returncode
                out = out_path.read_text()
        step = Step(label or command, out, err.read_text(), time.monotonic() - start)
        self.steps.append(step)
        assert code == 0, f"{command!r} exited {code}:\n{step.stdout}\n{step.stderr}"
        assert "Traceback" not in step.stderr + step.stdout, step
        pairs = (item.split("=", 1) for item in saved.read_text().split("\0") if "=" in item)
        self.env = {k: v for k, v in pairs if k not in {"SHLVL", "_", "OLDPWD"}}
        self.cwd = Path(self.env["PWD"])
        return step


def _on_a_terminal(argv: list[str], fin: IO[str], ferr: IO[str], env: dict[str, str], cwd: Path,
                   timeout: float) -> tuple[str, int]:
    master, slave = os.openpty()
    proc = subprocess.Popen(argv, stdin=fin, stdout=slave, stderr=ferr, env=env, cwd=cwd)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode().replace("\r\n", "\n"), proc.wait(max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


def base_env(xdg: Path) -> dict[str, str]:
    """This machine's environment without its hub or client settings, homes under ``xdg``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVFLOW_") and k != "XDG_DATA_HOME"}
    env.update(XDG_DATA_HOME=str(xdg), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def print_times(title: str, steps: list[Step]) -> None:
    print(f"\n{title}: wall time per step")
    for step in steps:
        print(f"  {step.seconds:7.2f} s  {step.command}")
    print(f"  {sum(s.seconds for s in steps):7.2f} s  in all")


# --- the hub, started as the README starts it -----------------------------------------------


@dataclass
class ReadmeHub:
    url: str
    root: Path  # XDG_DATA_HOME of the hub's machine: the hub's data is root/cvflow-hub, as by default

    def localise(self, command: str, **extra: str) -> str:
        text = command.replace(".venv/bin/", f"{BIN}/").replace(README_HUB, self.url.removeprefix("http://"))
        for old, new in extra.items():
            text = text.replace(old, new)
        return text


@pytest.fixture(scope="module")
def readme_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeHub]:
    """``cvflow-hub serve`` with the README's options, on a free port, over a fresh data dir."""
    first = section(DEMO_SECTION)
    serve = next(c for b in sh_blocks(first) for line in b.lines for c in commands(line)
                 if c.startswith("cvflow-hub serve"))
    root = tmp_path_factory.mktemp("readme")
    data_dir = root / "cvflow-hub"
    data_dir.mkdir()
    with serving(data_dir, *shlex.split(serve)[2:]) as (client, _log):
        yield ReadmeHub(str(client.base_url).rstrip("/"), root)


# --- the tests --------------------------------------------------------------------------------


def test_the_publishing_section_runs_as_written(readme_hub: ReadmeHub, tmp_path: Path) -> None:
    text = section(PUBLISH_SECTION)
    blocks = sh_blocks(text)
    elsewhere = [i for i, b in enumerate(blocks) if "another machine" in b.prose]
    assert len(elsewhere) == 1, "one block runs on another machine"
    assert README_HUB in text and f"--port {README_RUNNER_PORT}" in text  # what is put in below
    runner_port = str(free_port())
    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    shutil.copy(PHOTO, other / "photo.jpg")
    here = Shell(base_env(readme_hub.root), work, tmp_path)
    there = Shell(base_env(tmp_path / "other-xdg"), other, tmp_path)  # a fresh CVFLOW_HOME, no token
    hub = readme_hub.url
    token = ""
    lines = [(line, i >= elsewhere[0]) for i, b in enumerate(blocks) for line in b.lines]
    try:
        for n, (line, remote) in enumerate(lines):
            shell = there if remote else here
            put_in = {f"--port {README_RUNNER_PORT}": f"--port {runner_port}",
                      f"127.0.0.1:{README_RUNNER_PORT}": f"127.0.0.1:{runner_port}"}
            command = readme_hub.localise(line, **put_in, **({"cvf_...": token} if token else {}))
            words = (commands(line) or [""])[0]  # "" for a line that only sets a variable
            if words.startswith("cvflow-hub user create"):
                shell.run(command, stdin=PASSWORD + "\n", label=line)  # the password prompt
            elif words.startswith("cvflow-hub token create"):
                step = shell.run(command, tty=True, label=line)  # typed at a terminal: the token is shown with the next line
                token = step.stdout.strip()
                assert re.fullmatch(r"cvf_\S+", token), step.stdout
                following = lines[n + 1][0].removeprefix(".venv/bin/").replace("cvf_...", token)
                assert step.stderr == f"next: {following}\n"
            else:
                step = shell.run(command, timeout=900, label=line)
            if words.startswith("cvflow publish"):
                page = re.search(r"^page: (\S+)$", step.stdout, re.M)
                assert page, step.stdout
                named = re.search(r"prints the version's page, <(\S+)>", " ".join(text.split()))
                assert named and page.group(1) == readme_hub.localise(named.group(1)), (page.group(1), named)
                shown = httpx.get(page.group(1))
                assert shown.status_code == 200 and "alice/my-model" in shown.text
            elif words.startswith("cvflow --hub") and " pull " in words:
                assert f"pulled alice/my-model@0.1.0 from {hub}\n" in step.stderr, step.stderr
                assert Path(step.stdout.strip(), "solver.py").is_file()
            elif words.startswith("curl -F"):
                answer = json.loads(step.stdout)
                assert answer["label"] in {"bright", "dark"} and answer["threshold"] == 128, answer
        ran = [c.split()[:2] for s in here.steps + there.steps for c in commands(s.command)]
        for expected in (["cvflow-hub", "user"], ["cvflow-hub", "token"], ["cvflow", "login"], ["cvflow", "init"],
                         ["cvflow", "validate"], ["cvflow", "publish"], ["cvflow", "--hub"], ["cvflow", "install"],
                         ["cvflow", "run"], ["curl", "-F"], ["cvflow", "stop"]):
            assert expected in ran, (expected, ran)
        assert "CVFLOW_TOKEN" not in there.env  # the other machine read the public package without one
    finally:
        subprocess.run([str(BIN / "cvflow"), "stop", "--all", "--timeout", "5"], env=there.env, capture_output=True,
                       timeout=60)
        print_times(f"README, {PUBLISH_SECTION!r}", here.steps + there.steps)


def test_the_demo_hubs_curls_and_the_later_sections_hub_commands(readme_hub: ReadmeHub,
                                                                        tmp_path: Path) -> None:
    text = README.read_text()
    shell = Shell(base_env(readme_hub.root), tmp_path, tmp_path)
    curls = [line for b in sh_blocks(section(DEMO_SECTION)) for line in b.lines if line.startswith("curl ")]
    assert len(curls) == 3, curls
    for line in curls:
        answer = json.loads(shell.run(readme_hub.localise(line), label=line).stdout)
        assert "error" not in answer, answer
        if "q=sobel" in line:
            assert [r["name"] for r in answer["results"]] == ["demo/edge-sobel"]
        elif "openapi" in line:
            assert answer["openapi"].startswith("3.")
        else:
            assert answer["name"] == "demo/edge-sobel" and answer["latest_version"]

    # The hub commands of the later sections: tokens captured with $(...) hold the token alone.
    for line in hub_lines(text):
        if "user create" in line:
            assert "created user" in shell.run(readme_hub.localise(line), stdin=PASSWORD + "\n", label=line).stdout
            continue
        step = shell.run(readme_hub.localise(line), label=line)
        token = shell.env["CVFLOW_TOKEN"]
        assert re.fullmatch(r"cvf_\S+", token), token
        assert step.stderr == 'next: cvflow login --hub http://127.0.0.1:8000 --token "$CVFLOW_TOKEN"\n'
        me = httpx.get(f"{readme_hub.url}/api/v1/whoami", headers={"authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["name"] == "demo", me.text
    print_times("README, the demo hub's curls and the later sections' hub commands", shell.steps)


def hub_lines(text: str) -> list[str]:
    """The lines after the publishing section that only create a user or a token (captured)."""
    titles = list(sections(text))
    later = titles[titles.index(PUBLISH_SECTION) + 1:]
    lines = [line for title in later for b in sh_blocks(sections(text)[title]) for line in b.lines]
    return [line for line in lines if all(c.startswith(("cvflow-hub user create", "cvflow-hub token create"))
                                          for c in commands(line)) and commands(line)]


def commands_run_here() -> set[str]:
    """The README commands the tests above run."""
    lines = [line for b in sh_blocks(section(PUBLISH_SECTION)) for line in b.lines]
    lines += [line for b in sh_blocks(section(DEMO_SECTION)) for line in b.lines if line.startswith("curl ")]
    lines += hub_lines(README.read_text())
    found = {c for line in lines for c in commands(line)}
    return found | {c for b in sh_blocks(section(DEMO_SECTION)) for line in b.lines for c in commands(line)
                    if c.startswith("cvflow-hub serve")}


def test_every_readme_command_is_run_by_a_test() -> None:
    found = readme_commands()
    assert len(found) > 20, found
    here = commands_run_here()
    unmapped, wrong, used = [], [], set()
    for command in found:
        mapped = run_by(command)
        if mapped is None:
            unmapped.append(command)
            continue
        prefix, test = mapped
        used.add(prefix)
        path = ROOT / test
        if not path.is_file():
            wrong.append(f"{command!r}: {test} does not exist")
        elif test == "tests/test_readme.py":
            if command not in here:
                wrong.append(f"{command!r}: mapped here, but no test here runs it")
        else:
            source = path.read_text()
            missing = [w for w in prefix.split() if w not in source]
            if missing:
                wrong.append(f"{command!r}: {test} never names {missing}")
    assert unmapped == [], "map these README commands to the test that runs them (RUN_BY)"
    assert wrong == []
    assert sorted(set(RUN_BY) - used) == [], "RUN_BY names commands the README no longer has"


def test_commands_are_read_as_the_shell_reads_them() -> None:
    assert commands("export CVFLOW_TOKEN=$(.venv/bin/cvflow-hub token create --user demo)") == [
        "cvflow-hub token create --user demo"]
    assert commands("python3 -m venv .venv && .venv/bin/pip install -e ./client -e . && x serve  # y") == [
        "python3 -m venv .venv", "pip install -e ./client -e .", "x serve"]
    assert commands("curl 'http://h/api?q=sobel'") == ["curl http://h/api?q=sobel"]
    assert commands("export CVFLOW_HUB=http://127.0.0.1:8000") == []
    assert run_by("cvflow run alice/my-model --port 9000") == ("cvflow run alice/my-model", "tests/test_readme.py")
    assert run_by("cvflow runner") is None


def test_scripts_test_help_says_what_the_suite_needs_and_installs_nothing(tmp_path: Path) -> None:
    for flag in ("--help", "-h"):
        # CVFLOW_VENV points at nothing: --help must answer before it would create a venv there.
        env = {**os.environ, "CVFLOW_VENV": str(tmp_path / "venv")}
        done = subprocess.run([str(ROOT / "scripts" / "test"), flag], capture_output=True, text=True, timeout=30,
                              env=env)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        for needed in ("127.0.0.1:5432", "database `test`", "trust", "6379", "chromium", "scripts/browser", "root",
                       "35-45 minutes", "CVFLOW_TEST_BACKENDS=sqlite-file", "scripts/test tests/storage -x", "-k"):
            assert needed in done.stdout, (needed, done.stdout)
        assert not (tmp_path / "venv").exists()

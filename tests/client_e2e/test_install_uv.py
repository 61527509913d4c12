"""Package venvs built by uv from one shared wheel cache, and the user's pip configuration handed
to uv: real venvs, the real uv binary, local wheel folders made here, no network (every install
is offline or has ``no-index``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cvflow.install import build_venv
from cvflow.install.pipconfig import read_pip_settings, uv_options
from cvflow.install.venv import find_uv, site_packages
from tests.client_e2e._install_helpers import build_wheel, python_in

BIG = b"DATA = " + repr(b"x" * 400_000).encode() + b"\n"  # a file big enough to see in a byte count


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    build_wheel(folder, "cvflowtest-big", "1.0", {"cvflowtest_big/__init__.py": BIG})
    build_wheel(folder, "cvflowtest-a", "1.0", {"cvflowtest_a/__init__.py": b"NAME = 'a'\n"})
    build_wheel(folder, "cvflowtest-b", "1.0", {"cvflowtest_b/__init__.py": b"NAME = 'b'\n"})
    return folder


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No pip or uv settings of this machine or of the test session reach the installs."""
    for key in list(os.environ):
        if key.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    return monkeypatch


def _big_file(venv: Path) -> Path:
    return site_packages(venv) / "cvflowtest_big" / "__init__.py"


def test_the_client_finds_its_own_uv():
    uv = find_uv()
    assert uv is not None
    import uv as uv_distribution

    assert uv == uv_distribution.find_uv_bin()


def test_venvs_with_different_requirements_share_the_wheel_cache_by_hard_links(tmp_path, wheels, clean_env):
    clean_env.setenv("UV_FIND_LINKS", str(wheels))
    home_cache = tmp_path / "home" / "cache" / "uv"  # what plan.install passes: CVFLOW_HOME/cache/uv
    venvs = tmp_path / "home" / "venvs"
    first, second = venvs / "t" / "a" / "1.0.0", venvs / "t" / "b" / "1.0.0"
    build_venv(first, [], ["cvflowtest-big==1.0", "cvflowtest-a==1.0"], offline=True, label="t/a",
               share_from=venvs, cache_dir=home_cache)
    build_venv(second, [], ["cvflowtest-big==1.0", "cvflowtest-b==1.0"], offline=True, label="t/b",
               share_from=venvs, cache_dir=home_cache)
    assert python_in(second, "import cvflowtest_big, cvflowtest_b; print(len(cvflowtest_big.DATA))") == "400000"

    one, two = _big_file(first).stat(), _big_file(second).stat()
    assert (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)  # the same file on disk: no second copy
    in_cache = [p for p in home_cache.rglob("__init__.py") if p.parent.name == "cvflowtest_big"]
    assert in_cache and any(p.stat().st_ino == one.st_ino for p in in_cache)
    assert one.st_nlink >= 3  # the cache's copy and the two venvs'
    # The small modules each venv has alone are not in the other.
    assert not (site_packages(first) / "cvflowtest_b").exists()
    assert not (site_packages(second) / "cvflowtest_a").exists()

    # The user's UV_CACHE_DIR wins over CVFLOW_HOME's.
    theirs = tmp_path / "their-uv-cache"
    clean_env.setenv("UV_CACHE_DIR", str(theirs))
    third = venvs / "t" / "c" / "1.0.0"
    build_venv(third, [], ["cvflowtest-big==1.0"], offline=True, label="t/c", share_from=venvs, cache_dir=home_cache)
    mine = _big_file(third).stat()
    assert mine.st_ino != one.st_ino
    assert any(p.stat().st_ino == mine.st_ino for p in theirs.rglob("__init__.py"))


def test_steps_and_the_installers_output_are_reported(tmp_path, wheels, clean_env):
    clean_env.setenv("UV_FIND_LINKS", str(wheels))
    quiet: list[str] = []
    build_venv(tmp_path / "v" / "q", [], ["cvflowtest-a==1.0"], offline=True, label="t/q",
               cache_dir=tmp_path / "uv", steps=quiet.append)
    assert quiet[0] == "t/q: creating the venv"
    assert quiet[1] == "t/q: installing 1 requirement with uv: cvflowtest-a==1.0"
    assert quiet[2].startswith("t/q: installed in ")
    loud: list[str] = []
    build_venv(tmp_path / "v" / "l", [], ["cvflowtest-a==1.0"], offline=True, label="t/l",
               cache_dir=tmp_path / "uv", steps=loud.append, verbose=True)
    streamed = loud[2:-1]
    assert any("+ cvflowtest-a==1.0" in line for line in streamed), loud
    assert all(line.startswith("  ") for line in streamed)


def _conf(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_pip_configuration_is_read_in_pips_order(tmp_path):
    xdg = _conf(tmp_path / "xdg" / "pip" / "pip.conf", "[global]\nindex-url = https://global.example/simple\n"
                "extra-index-url = https://a.example/simple https://b.example/simple\n")
    _conf(tmp_path / "home" / ".config" / "pip" / "pip.conf",
          "[global]\nindex-url = https://user.example/simple\nfind-links = /nowhere\n"
          "[install]\nfind_links = /user-wheels\n")
    env = {"XDG_CONFIG_DIRS": str(xdg.parents[1]), "HOME": str(tmp_path / "home")}
    got = read_pip_settings(env)
    assert got["index-url"] == "https://user.example/simple"  # the user's file after the global one
    assert got["find-links"] == "/user-wheels"  # [install] over [global]; '_' spelled as '-'
    assert got["extra-index-url"] == "https://a.example/simple https://b.example/simple"
    # PIP_CONFIG_FILE: read last, and the user's file is skipped; PIP_* variables win over every file.
    chosen = _conf(tmp_path / "chosen.conf", "[global]\nno-index = yes\n")
    got = read_pip_settings({**env, "PIP_CONFIG_FILE": str(chosen), "PIP_INDEX_URL": "https://env.example/simple"})
    assert got["index-url"] == "https://env.example/simple"
    assert got["no-index"] == "yes" and "find-links" not in got
    assert "index-url" not in read_pip_settings({**env, "PIP_CONFIG_FILE": os.devnull})


def test_pip_settings_become_uv_options_unless_uv_has_its_own(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    constraints = _conf(tmp_path / "constraints.txt", "torch<=2.14.1\n")
    conf = _conf(tmp_path / "pip.conf", f"[global]\nindex-url = https://corp.example/simple\n"
                 f"extra-index-url = https://extra.example/simple file://{tmp_path}/missing\n"
                 f"find-links = {wheels} {tmp_path}/missing-wheels\ncert = /corp/ca.pem\n"
                 f"constraint = {constraints}\n[install]\nno-index = true\n")
    env = {"PIP_CONFIG_FILE": str(conf), "XDG_CONFIG_DIRS": str(tmp_path / "none")}
    options = uv_options(env)
    assert options.args == ["--index-url", "https://corp.example/simple",
                            "--extra-index-url", "https://extra.example/simple",  # the missing file:// index left out
                            "--index-strategy", "unsafe-best-match",  # pip's: the best version across indexes
                            "--find-links", str(wheels), "--no-index", "--constraint", str(constraints)]
    assert options.env == {"SSL_CERT_FILE": "/corp/ca.pem"}
    theirs = uv_options({**env, "UV_INDEX_URL": "https://uv.example/simple", "UV_FIND_LINKS": "/x",
                         "UV_NO_INDEX": "1", "UV_CONSTRAINT": "c.txt", "SSL_CERT_FILE": "/etc/ca.pem",
                         "UV_EXTRA_INDEX_URL": "https://uv-extra.example/simple"})
    assert theirs.args == [] and theirs.env == {}
    own_strategy = uv_options({**env, "UV_INDEX_STRATEGY": "first-index"})
    assert "--extra-index-url" in own_strategy.args and "--index-strategy" not in own_strategy.args


def test_a_real_pip_conf_reaches_uv_and_pip_variables_win(tmp_path, clean_env):
    old, new = tmp_path / "old-wheels", tmp_path / "new-wheels"
    build_wheel(old, "cvflowtest-conf", "1.0", {"cvflowtest_conf.py": b"VERSION = '1.0'\n"})
    build_wheel(new, "cvflowtest-conf", "2.0", {"cvflowtest_conf.py": b"VERSION = '2.0'\n"})
    conf = _conf(tmp_path / "pip.conf", f"[global]\nfind-links = {old}\n[install]\nno-index = true\n")
    clean_env.setenv("PIP_CONFIG_FILE", str(conf))
    first = tmp_path / "venvs" / "one"
    build_venv(first, [], ["cvflowtest-conf"], offline=False, label="conf", cache_dir=tmp_path / "uv")
    assert python_in(first, "import cvflowtest_conf; print(cvflowtest_conf.VERSION)") == "1.0"

    clean_env.setenv("PIP_FIND_LINKS", str(new))  # the environment wins over the file
    second = tmp_path / "venvs" / "two"
    build_venv(second, [], ["cvflowtest-conf"], offline=False, label="conf", cache_dir=tmp_path / "uv")
    assert python_in(second, "import cvflowtest_conf; print(cvflowtest_conf.VERSION)") == "2.0"


class _Said:
    """A ``Transfer`` that keeps what is logged on it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, description: str, total: int | None) -> int:
        return 0

    def advance(self, task_id: int, n: int) -> None:
        pass

    def log(self, message: str) -> None:
        self.lines.append(message)


def test_without_a_uv_binary_pip_installs_after_one_warning(tmp_path, wheels, clean_env):
    # The uv binary ships with the client, so its absence is stood in for: find_uv answers None
    # (the one thing replaced); venv and pip then run for real.
    import cvflow.install.venv as venv_module

    clean_env.setattr(venv_module, "find_uv", lambda: None)
    clean_env.setenv("PIP_FIND_LINKS", str(wheels))
    said, steps = _Said(), list[str]()
    target = tmp_path / "venvs" / "pip"
    build_venv(target, [], ["cvflowtest-a==1.0"], offline=True, label="t/pip", progress=said, steps=steps.append)
    assert python_in(target, "import cvflowtest_a; print(cvflowtest_a.NAME)") == "a"
    assert len(said.lines) == 1 and said.lines[0].startswith("warning: the uv binary cannot be found or run")
    assert "installing 1 requirement with pip: cvflowtest-a==1.0" in " ".join(steps)

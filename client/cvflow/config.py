"""Where the client keeps things, and which hub and token it uses.

Everything lives under ``CVFLOW_HOME`` (default: ``$XDG_DATA_HOME/cvflow``, else
``~/.local/share/cvflow``)::

    CVFLOW_HOME/
      config.toml     hub URL and token written by ``cvflow login`` (mode 0600)
      cache/          content-addressed blobs and per-version snapshots (see cvflow.cache)
      venvs/          one virtual environment per installed package version
      state/          installed packages, running solvers

The hub URL and token are taken from, in order: the ``--hub``/``--token`` options, the
``CVFLOW_HUB``/``CVFLOW_TOKEN`` variables, then ``config.toml``.

``CVFLOW_CACHE_FSYNC=0`` skips the fsync before a downloaded blob is renamed into the cache:
faster pulls, at the cost that a power cut may leave a blob that fails its digest check
(it is then fetched again, never trusted).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w

if TYPE_CHECKING:
    from cvflow.cache import Cache

DEFAULT_HUB = "http://127.0.0.1:8000"


def home_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("CVFLOW_HOME"):
        return Path(env["CVFLOW_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cvflow"


@dataclass(frozen=True)
class Config:
    home: Path
    hub: str
    token: str | None
    cache_fsync: bool = True

    @property
    def config_file(self) -> Path:
        return self.home / "config.toml"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    def cache(self) -> Cache:
        """The shared blob and snapshot cache, with this configuration's fsync choice."""
        from cvflow.cache import Cache

        return Cache(self.cache_dir, fsync=self.cache_fsync)

    @property
    def venvs_dir(self) -> Path:
        return self.home / "venvs"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"


def load_config(
    *, hub: str | None = None, token: str | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Settle hub URL and token: options, then environment, then the config file."""
    env = os.environ if environ is None else environ
    home = home_dir(env)
    saved = read_saved(home)
    return Config(
        home=home,
        hub=(hub or env.get("CVFLOW_HUB") or saved.get("hub") or DEFAULT_HUB).rstrip("/"),
        token=token or env.get("CVFLOW_TOKEN") or saved.get("token") or None,
        cache_fsync=env.get("CVFLOW_CACHE_FSYNC", "1").strip().lower() not in {"0", "false", "no", "off"},
    )


def read_saved(home: Path) -> dict[str, str]:
    path = home / "config.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return {k: str(v) for k, v in data.items() if k in {"hub", "token"}}


def save_login(home: Path, hub: str, token: str | None) -> Path:
    """Write the hub and token to ``config.toml``, readable by the user only."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    data = {"hub": hub.rstrip("/")}
    if token:
        data["token"] = token
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        tomli_w.dump(data, f)
    os.replace(tmp, path)
    return path


def forget_login(home: Path) -> bool:
    """Remove the saved token (keeping the hub URL); True if there was one."""
    saved = read_saved(home)
    if "token" not in saved:
        return False
    save_login(home, saved.get("hub", DEFAULT_HUB), None)
    return True

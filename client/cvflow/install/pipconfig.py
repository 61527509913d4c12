"""The user's pip configuration, translated into uv's options.

uv does not read pip's configuration files or ``PIP_*`` variables, but many machines depend
on them: a corporate index or certificate, a local folder of wheels (``find-links``), a
constraints file. So before uv installs a package's requirements, the settings pip would use
for ``pip install`` are read here, the way pip reads them, and handed to uv:

* files, later ones winning: the global ones (each ``$XDG_CONFIG_DIRS`` entry's
  ``pip/pip.conf``, default ``/etc/xdg/pip/pip.conf``, then ``/etc/pip.conf``), the user's
  (``~/.pip/pip.conf``, then ``$XDG_CONFIG_HOME/pip/pip.conf``; skipped when
  ``PIP_CONFIG_FILE`` names a file that exists), the client's own environment's
  (``sys.prefix/pip.conf``), then ``PIP_CONFIG_FILE``. ``PIP_CONFIG_FILE=/dev/null`` (or
  ``PIP_CONFIG_FILE=os.devnull``) turns every file off, and ``PIP_ISOLATED_MODE`` the user's.
  In each file the ``[install]`` section wins over ``[global]``;
* ``PIP_*`` variables win over every file.

| pip setting | uv option | unless set |
| --- | --- | --- |
| ``index-url`` | ``--index-url`` | ``UV_INDEX_URL``, ``UV_DEFAULT_INDEX`` |
| ``extra-index-url`` | ``--extra-index-url`` (each), and the strategy | ``UV_EXTRA_INDEX_URL``, ``UV_INDEX`` |
| ``find-links`` | ``--find-links`` (each) | ``UV_FIND_LINKS`` |
| ``no-index`` | ``--no-index`` | ``UV_NO_INDEX`` |
| ``constraint`` | ``--constraint`` (each) | ``UV_CONSTRAINT`` |
| ``cert`` | ``SSL_CERT_FILE`` in uv's environment | ``SSL_CERT_FILE`` |

The strategy (``--index-strategy unsafe-best-match``) is pip's: the best version across every
index. uv's own default takes only the first index that has a project at all, so an extra index
holding one old release of a project would hide PyPI's (``UV_INDEX_STRATEGY`` overrides it). An
index given as a ``file://`` URL, or a ``find-links`` folder, that does not exist is left out:
pip warns about it and goes on, uv would refuse to install anything.
Only the standard library reads the files (``configparser``).
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["UvOptions", "pip_config_files", "read_pip_settings", "uv_options"]

#: pip's keys this module reads, as spelled in its files (``PIP_`` + upper case with ``_`` in the environment).
KEYS = ("index-url", "extra-index-url", "find-links", "no-index", "constraint", "cert")
_TRUE = {"1", "true", "yes", "on", "y", "t"}


@dataclass(frozen=True)
class UvOptions:
    """What to add to a ``uv pip install``: its arguments and its environment."""

    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def pip_config_files(environ: Mapping[str, str] | None = None) -> list[Path]:
    """pip's configuration files in the order pip reads them (later ones win); missing ones included."""
    env = os.environ if environ is None else environ
    chosen = env.get("PIP_CONFIG_FILE")
    if chosen and chosen == os.devnull:
        return []
    dirs = [d for d in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(os.pathsep) if d]
    files = [Path(d) / "pip" / "pip.conf" for d in dirs] + [Path("/etc/pip.conf")]
    isolated = (env.get("PIP_ISOLATED_MODE") or "").strip().lower() in _TRUE
    if not isolated and not (chosen and Path(chosen).exists()):
        home = Path(env.get("HOME") or Path.home())
        xdg_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        files += [home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
    files.append(Path(sys.prefix) / "pip.conf")
    if chosen:
        files.append(Path(chosen))
    return files


def read_pip_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values of ``KEYS`` pip would use for ``pip install`` (files, then ``PIP_*``), as text."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for path in pip_config_files(env):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError, OSError):
            continue  # pip refuses a broken file; the install it runs would say so, not this
        for section in ("global", "install"):
            if parser.has_section(section):
                for key, value in parser.items(section):
                    key = key.replace("_", "-")
                    if key in KEYS:
                        out[key] = value
    for key in KEYS:
        from_env = env.get("PIP_" + key.upper().replace("-", "_"))
        if from_env is not None:
            out[key] = from_env
    return out


def uv_options(environ: Mapping[str, str] | None = None) -> UvOptions:
    """The pip settings (``read_pip_settings``) as uv arguments, for those uv is not given itself."""
    env = os.environ if environ is None else environ
    pip = read_pip_settings(env)
    args: list[str] = []
    extra_env: dict[str, str] = {}

    def unset(*names: str) -> bool:
        return not any(env.get(n) for n in names)

    index = pip.get("index-url", "").strip()
    if index and _reachable(index) and unset("UV_INDEX_URL", "UV_DEFAULT_INDEX"):
        args += ["--index-url", index]
    if unset("UV_EXTRA_INDEX_URL", "UV_INDEX"):
        extra = [url for url in pip.get("extra-index-url", "").split() if _reachable(url)]
        for url in extra:
            args += ["--extra-index-url", url]
        if extra and unset("UV_INDEX_STRATEGY"):
            # pip takes the best version across all its indexes; uv, by default, only the first
            # index that has the project at all, which would hide newer releases elsewhere.
            args += ["--index-strategy", "unsafe-best-match"]
    if unset("UV_FIND_LINKS"):
        for where in pip.get("find-links", "").split():
            if _reachable(where):
                args += ["--find-links", where]
    if pip.get("no-index", "").strip().lower() in _TRUE and unset("UV_NO_INDEX"):
        args.append("--no-index")
    if unset("UV_CONSTRAINT"):
        for path in pip.get("constraint", "").split():
            if Path(path).expanduser().is_file():
                args += ["--constraint", str(Path(path).expanduser())]
    cert = pip.get("cert", "").strip()
    if cert and unset("SSL_CERT_FILE"):
        extra_env["SSL_CERT_FILE"] = cert
    return UvOptions(args, extra_env)


def _reachable(location: str) -> bool:
    """False for a local path or ``file://`` URL that does not exist; True for any other URL."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(unquote(parts.path)).exists()
    if parts.scheme in ("http", "https"):
        return True
    return Path(location).expanduser().exists()

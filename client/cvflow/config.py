"""Where the client keeps things, and which hub and token it uses.

Everything lives under ``CVFLOW_HOME`` (default: ``$XDG_DATA_HOME/cvflow``, else
``~/.local/share/cvflow``)::

    CVFLOW_HOME/
      config.toml     the default hub, and one token per hub, written by ``cvflow login`` (mode 0600)
      cache/          content-addressed blobs and per-version snapshots (see cvflow.cache)
      venvs/          one virtual environment per installed package version
      state/          installed packages, running solvers

The hub is the ``--hub`` option, else ``CVFLOW_HUB``, else the hub ``cvflow login`` saved
last, else ``DEFAULT_HUB``. Hub URLs are compared in their normal form (:func:`normalise_hub`:
lowercase scheme and host, no default port, no trailing slash). Wherever a hub URL comes from,
two slips are mended the same way:

- no scheme (``127.0.0.1:8000``, or a host name alone): ``http://`` for ``localhost`` and for
  loopback, private and link-local IP addresses, where a hub on a laptop or a LAN serves
  plain HTTP, and ``https://`` for every other host;
- the API root (``http://host/api/v1``) instead of the hub's root: the ``/api/v1`` is dropped,
  and the command says so in a one-line note (:func:`hub_url_note`).

A token goes only to the hub it belongs to. ``config.toml`` keeps tokens per hub::

    hub = "https://hub.example.org"
    [tokens]
    "https://hub.example.org" = "cvf_..."
    "http://127.0.0.1:8000" = "cvf_..."

and a token saved for one hub is never sent to another. ``--token`` goes to the hub of that
command. ``CVFLOW_TOKEN`` goes to the hub ``CVFLOW_HUB`` names when that is set (the two are
a pair, so a ``--hub`` elsewhere gets that hub's saved token, or none), and otherwise to
whichever hub the command uses. The one-token file of older clients (``hub`` and ``token`` at
the top) is read as that hub's token, and rewritten in this form at the next login or logout.

``CVFLOW_CACHE_FSYNC=0`` skips the fsync before a downloaded blob is renamed into the cache
(and the one sync of a batch of small blobs, see :meth:`cvflow.cache.Cache.batch`): faster
pulls, at the cost that a power cut may leave a blob that fails its digest check
(it is then fetched again, never trusted).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

import tomli_w

from cvflow.errors import ConfigError

if TYPE_CHECKING:
    from cvflow.cache import Cache

DEFAULT_HUB = "http://127.0.0.1:8000"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_hub(url: str) -> str:
    """The normal form of a hub URL, the key its token is saved under.

    ``HTTPS://Hub.Example.org:443/base/`` becomes ``https://hub.example.org/base``.

    Raises:
        ConfigError: if ``url`` is not an http(s) URL of a host, or carries a user name,
            password, query or fragment.
    """
    text = _with_scheme(url.strip()) if isinstance(url, str) else ""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"hub URL {url!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"hub URL {url!r} must look like https://hub.example.org (or 127.0.0.1:8000)")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"hub URL {_redacted(parts)} must not carry a user name or password;"
                          " use `cvflow login` or --token")
    if parts.query or parts.fragment:
        raise ConfigError(f"hub URL {url!r} must not have a query or fragment")
    host = parts.hostname.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = parts.path.rstrip("/")
    if path.endswith(API_ROOT):
        path = path[: -len(API_ROOT)]
    return f"{scheme}://{netloc}{path}"


#: The hub's REST API lives under this path of the hub's root; a hub URL never ends with it.
API_ROOT = "/api/v1"


#: A hub named without a scheme: a bracketed IPv6 address or a host name, a port, a path. A
#: single word needs a port (``hub:8000``) or to be ``localhost``: alone it is more likely a slip.
_SCHEMELESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9-]+(?P<dots>(\.[A-Za-z0-9-]+)+)?)"
                         r"(?P<port>:[0-9]+)?(/[^\s?#]*)?")


def _with_scheme(text: str) -> str:
    """``text`` with a scheme: as given, or http for local and private hosts, https for others."""
    found = _SCHEMELESS.fullmatch(text) if "://" not in text else None
    if found is None:
        return text  # normalise_hub accepts it or says what is wrong
    host = found["host"].strip("[]").lower()
    if not (found["dots"] or found["port"] or ":" in host or host == "localhost"):
        return text
    return ("http://" if _is_local(host) else "https://") + text


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def hub_url_note(url: str) -> str | None:
    """A line telling the user that ``url`` named the hub's API root, which was dropped; else None."""
    try:
        normal = normalise_hub(url)
    except ConfigError:
        return None
    path = urlsplit(_with_scheme(url.strip())).path.rstrip("/")
    if not path.endswith(API_ROOT):
        return None
    return f"{url.strip()} is the hub's API root; using the hub's own URL {normal}"


def _redacted(parts: SplitResult) -> str:
    host = parts.netloc.rpartition("@")[2]
    return repr(f"{parts.scheme}://***@{host}{parts.path}")


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
    #: Where ``token`` came from: "option", "environment", "saved", or None without a token.
    token_source: str | None = None
    #: Where ``hub`` came from: "option", "environment", "saved" or "default".
    hub_source: str = "default"
    #: A line for the user when the hub URL given was mended (see :func:`hub_url_note`), else None.
    hub_note: str | None = None

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


@dataclass(frozen=True)
class SavedLogins:
    """What ``config.toml`` holds: the default hub and a token per (normalised) hub URL."""

    hub: str | None = None
    tokens: Mapping[str, str] = field(default_factory=dict)


#: How a message names where the hub URL came from.
_HUB_SOURCES = {"option": "--hub", "environment": "CVFLOW_HUB", "saved": "the saved login",
                "default": "the default"}


def load_config(
    *, hub: str | None = None, token: str | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Settle the hub (options, environment, config file) and the token that may go to it.

    Raises:
        ConfigError: if the hub URL is not a usable http(s) URL.
    """
    env = os.environ if environ is None else environ
    home = home_dir(env)
    saved = read_saved(home)
    env_hub = env.get("CVFLOW_HUB") or None
    given, hub_source = DEFAULT_HUB, "default"
    for value, where in ((saved.hub, "saved"), (env_hub, "environment"), (hub, "option")):
        if value:
            given, hub_source = value, where
    try:
        chosen = normalise_hub(given)
    except ConfigError as exc:
        raise ConfigError(f"{exc.message} (it came from {_HUB_SOURCES[hub_source]})") from None
    env_token = env.get("CVFLOW_TOKEN") or None
    source: str | None = None
    if token:
        source = "option"
    elif env_token and (env_hub is None or normalise_hub(env_hub) == chosen):
        token, source = env_token, "environment"
    elif saved.tokens.get(chosen):
        token, source = saved.tokens[chosen], "saved"
    return Config(
        home=home,
        hub=chosen,
        token=token or None,
        cache_fsync=env.get("CVFLOW_CACHE_FSYNC", "1").strip().lower() not in {"0", "false", "no", "off"},
        token_source=source,
        hub_source=hub_source,
        hub_note=hub_url_note(given),
    )


def read_saved(home: Path) -> SavedLogins:
    """The saved logins; an unreadable or damaged file counts as none.

    The one-token format of older clients (``hub = ...`` and ``token = ...`` at the top) is
    read as that hub's token, so a login made before tokens were kept per hub keeps working
    for the hub it was made for, and for no other.
    """
    try:
        data = tomllib.loads((home / "config.toml").read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return SavedLogins()
    default = _hub_or_none(data.get("hub"))
    tokens: dict[str, str] = {}
    table = data.get("tokens")
    if isinstance(table, dict):
        for url, value in table.items():
            key = _hub_or_none(url)
            if key is not None and isinstance(value, str) and value:
                tokens[key] = value
    legacy = data.get("token")
    if isinstance(legacy, str) and legacy:
        owner = default if "hub" in data else normalise_hub(DEFAULT_HUB)
        if owner is not None:
            tokens.setdefault(owner, legacy)
    return SavedLogins(default, tokens)


def _hub_or_none(value: object) -> str | None:
    try:
        return normalise_hub(value) if isinstance(value, str) else None
    except ConfigError:
        return None


def save_login(home: Path, hub: str, token: str | None) -> Path:
    """Make ``hub`` the default hub and save ``token`` for it alone (mode 0600).

    Tokens saved for other hubs are kept; ``token=None`` forgets this hub's token.

    Raises:
        ConfigError: for a hub URL that is not usable.
        OSError: if ``config.toml`` cannot be written.
    """
    key = normalise_hub(hub)
    saved = read_saved(home)
    tokens = {url: value for url, value in saved.tokens.items() if url != key}
    if token:
        tokens[key] = token
    return _write(home, key, tokens)


def forget_login(home: Path, hub: str) -> bool:
    """Forget the token saved for ``hub`` (others and the default hub stay); True if there was one.

    Raises:
        ConfigError: for a hub URL that is not usable.
        OSError: if ``config.toml`` cannot be written.
    """
    key = normalise_hub(hub)
    saved = read_saved(home)
    if key not in saved.tokens:
        return False
    _write(home, saved.hub or key, {url: value for url, value in saved.tokens.items() if url != key})
    return True


def _write(home: Path, hub: str, tokens: Mapping[str, str]) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    data: dict[str, object] = {"hub": hub}
    if tokens:
        data["tokens"] = dict(sorted(tokens.items()))
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        tomli_w.dump(data, f)
    os.replace(tmp, path)
    return path

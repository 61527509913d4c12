"""Which URLs the indexer may fetch (repositories and weight files), and keeping credentials out of them.

Repositories: ``https://``, ``http://`` or ``git://`` only (``file://`` when a setting allows it,
for tests). ``ssh://``, scp-like ``user@host:path``, and git's ``<transport>::<address>`` form
(``ext::`` runs a command) are refused. Weights: ``https://`` and ``http://``. Hosts whose
addresses are private, loopback, link-local or otherwise not global are refused unless a
setting allows them; every address a name resolves to must pass.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

MAX_URL_LENGTH = 1000
_SCP_LIKE_RE = re.compile(r"\A[^/:]+@[^/:]+:")
_DEFAULT_PORTS = {"https": 443, "http": 80, "git": 9418}
_CREDENTIALS_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def redact(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it replaced by ``***@``."""
    return _CREDENTIALS_RE.sub(r"\1***@", text)


class UrlRefused(ValueError):
    """A URL the indexer will not fetch; the message (redacted) says why."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))
        self.message = redact(message)


@dataclass(frozen=True)
class RepositoryUrl:
    url: str  #: as given; may hold credentials
    display: str  #: without credentials


def strip_credentials(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _split(url: object, what: str) -> SplitResult:
    if not isinstance(url, str) or not url.strip():
        raise UrlRefused(f"the {what} URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"the {what} URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UrlRefused(f"the {what} URL {url!r} contains spaces or control characters")
    scheme_end = url.find("://")
    if "::" in url and (scheme_end < 0 or url.find("::") < scheme_end):
        raise UrlRefused(f"{url!r}: git's <transport>::<address> URLs (such as ext::) are refused")
    if scheme_end < 0 and _SCP_LIKE_RE.match(url):
        raise UrlRefused(f"{url!r} is an SSH address; register the repository's https:// URL instead")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise UrlRefused(f"{url!r} is not a valid URL: {exc}") from exc
    return parts


def check_repository_url(url: object, *, allow_file: bool, allow_private: bool) -> RepositoryUrl:
    """Check a repository URL; return it with its credential-free form. Raises UrlRefused."""
    parts = _split(url, "repository")
    assert isinstance(url, str)
    allowed = ("https", "http", "git", "file") if allow_file else ("https", "http", "git")
    if parts.scheme not in allowed:
        shown = f"{parts.scheme}://" if parts.scheme else "a local path"
        raise UrlRefused(f"{shown} repositories are refused; use an https://, http:// or git:// URL")
    if parts.scheme == "file":
        if parts.netloc:
            raise UrlRefused("file:// URLs must not name a host")
        return RepositoryUrl(url, url)
    if not parts.hostname:
        raise UrlRefused(f"{redact(url)!r} has no host")
    if parts.scheme == "git" and (parts.username or parts.password):
        raise UrlRefused("git:// URLs cannot carry credentials")
    check_host(parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme], allow_private=allow_private)
    return RepositoryUrl(url, strip_credentials(parts))


def check_weight_url(url: str, *, allow_private: bool) -> str:
    """Check a weight URL from a manifest; return it. Raises UrlRefused."""
    parts = _split(url, "weight")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UrlRefused(f"weight URL {url!r} must be https:// or http://")
    check_host(parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme], allow_private=allow_private)
    return url


def check_host(host: str, port: int, *, allow_private: bool) -> None:
    """Refuse a host any of whose addresses is not a public one (unless ``allow_private``)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UrlRefused(f"cannot resolve the host {host!r}") from exc
    if allow_private:
        return
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise UrlRefused(f"the host {host!r} has the address {address}, which is private, loopback or "
                             "otherwise not public; such addresses are refused")

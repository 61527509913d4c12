"""Verifying push and tag webhooks from GitHub, GitLab and Gitea.

Each repository has its own secret, shown to its owners when it is registered:

| host   | event header       | proof                                                         |
| ------ | ------------------ | ------------------------------------------------------------- |
| Gitea  | ``X-Gitea-Event``  | ``X-Gitea-Signature``: hex HMAC-SHA256 of the body            |
| GitLab | ``X-Gitlab-Event`` | ``X-Gitlab-Token``: the secret itself                         |
| GitHub | ``X-GitHub-Event`` | ``X-Hub-Signature-256``: ``sha256=`` + hex HMAC-SHA256 of the body |

Gitea (and Forgejo) also send GitHub's headers, so Gitea's are looked at first. Every
comparison is constant-time. The payload itself is not trusted for anything: a verified
event only queues an index of the repository, which then reads git itself.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from hub.errors import HubError

#: Events that may bring new tags; others (issues, pings, ...) are acknowledged and ignored.
_RELEVANT = {
    "github": {"push", "create", "release"},
    "gitea": {"push", "create", "release"},
    "gitlab": {"Push Hook", "Tag Push Hook", "Release Hook"},
}


@dataclass(frozen=True)
class WebhookEvent:
    provider: str  # "github" | "gitlab" | "gitea"
    event: str

    @property
    def relevant(self) -> bool:
        return self.event in _RELEVANT[self.provider]


def _hmac_hex(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()


def _same(given: str | None, expected: bytes) -> bool:
    if given is None:
        return False
    return hmac.compare_digest(given.strip().lower().encode("utf-8", "replace"), expected)


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> WebhookEvent:
    """The event a webhook request carries, once its signature or token checks out.

    ``headers`` must look names up case-insensitively (Starlette's do). Raises HubError
    ``bad_request`` (no known event header) or ``invalid_signature``.
    """
    if "x-gitea-event" in headers:
        event = WebhookEvent("gitea", headers["x-gitea-event"])
        ok = _same(headers.get("x-gitea-signature"), _hmac_hex(secret, body))
    elif "x-gitlab-event" in headers:
        event = WebhookEvent("gitlab", headers["x-gitlab-event"])
        token = headers.get("x-gitlab-token")
        ok = token is not None and hmac.compare_digest(token.encode("utf-8", "replace"), secret.encode())
    elif "x-github-event" in headers:
        event = WebhookEvent("github", headers["x-github-event"])
        signature = headers.get("x-hub-signature-256") or ""
        ok = signature.startswith("sha256=") and _same(signature[7:], _hmac_hex(secret, body))
    else:
        raise HubError("bad_request", "not a webhook from GitHub, GitLab or Gitea: no X-GitHub-Event, X-Gitlab-Event "
                                      "or X-Gitea-Event header")
    if not ok:
        raise HubError("invalid_signature", f"the {event.provider} webhook's signature does not match this "
                                            "repository's secret")
    return event


def github_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub would send for ``body`` (for tests and tools)."""
    return "sha256=" + _hmac_hex(secret, body).decode()


def gitea_signature(secret: str, body: bytes) -> str:
    """The ``X-Gitea-Signature`` value Gitea would send for ``body``."""
    return _hmac_hex(secret, body).decode()

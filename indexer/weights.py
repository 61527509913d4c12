"""Downloading the weight files a manifest references by URL into the blob store.

Each download streams into the store's staging area while it is hashed, with the size bounded
by the manifest's ``size`` and the ``indexer_max_weight_size`` setting, and becomes a blob
only if it matches the manifest's ``sha256``. Redirects are followed by hand (at most five),
each target checked like the first URL, so a public URL cannot bounce the hub to a private one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urljoin

import httpx

from cvflow.manifest import Weight
from hub.db import session_scope
from hub.errors import HubError
from hub.services.blobs import UploadService, referable
from hub.services.urls import UrlRefused, check_weight_url, redact
from hub.settings import Settings
from indexer.scan import TagProblem

MAX_REDIRECTS = 5


def http_client() -> httpx.Client:
    """The client weights are downloaded with: no proxies or .netrc from the environment."""
    from hub import __version__

    return httpx.Client(follow_redirects=False, trust_env=False, timeout=httpx.Timeout(60.0, connect=10.0),
                        headers={"user-agent": f"cvflow-indexer/{__version__}"})


def fetch_weight(uploads: UploadService, settings: Settings, http: httpx.Client, weight: Weight, *,
                 holder: str) -> tuple[str, int]:
    """Store the file at ``weight.url`` as a blob granted to ``holder`` (the publisher); return
    its ``(sha256, size)``.

    A weight whose ``sha256`` the hub already has (with the right size) is not downloaded if
    ``holder`` may reference that blob (its grant, or a public version has it); otherwise it
    is, since knowing a digest must not give another account's bytes.
    Raises TagProblem ``weight_refused``, ``weight_unavailable``, ``weight_too_large``,
    ``weight_mismatch``.
    """
    assert weight.url is not None
    shown = redact(weight.url)
    limit = settings.indexer_max_weight_size
    if weight.size is not None and weight.size > limit:
        raise TagProblem("weight_too_large", f"weight {weight.path} is {weight.size} bytes; the limit is {limit}")
    if weight.sha256 is not None:
        with session_scope(uploads.engine) as session:
            have = referable(session, holder, [weight.sha256], readable=None).get(weight.sha256)
        if have is not None and (weight.size is None or have == weight.size):
            return weight.sha256, have
    deadline = time.monotonic() + settings.indexer_weight_timeout
    url = weight.url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            check_weight_url(url, allow_private=settings.indexer_allow_private_addresses)
        except UrlRefused as exc:
            raise TagProblem("weight_refused", f"weight {weight.path}: {exc.message}") from exc
        try:
            with http.stream("GET", url) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise TagProblem("weight_unavailable", f"weight {weight.path}: {shown} answered "
                                     f"{response.status_code} {response.reason_phrase}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > (weight.size if weight.size is not None else limit):
                    raise TagProblem("weight_too_large", f"weight {weight.path}: {shown} sends {declared} bytes, "
                                     f"more than {weight.size if weight.size is not None else limit}")
                return _store(uploads, weight, response, deadline, limit, shown, holder)
        except httpx.HTTPError as exc:
            raise TagProblem("weight_unavailable", f"weight {weight.path}: downloading {shown} failed "
                             f"({type(exc).__name__})") from exc
    raise TagProblem("weight_unavailable", f"weight {weight.path}: {shown} redirects more than {MAX_REDIRECTS} times")


def _store(uploads: UploadService, weight: Weight, response: httpx.Response, deadline: float, limit: int,
           shown: str, holder: str) -> tuple[str, int]:
    def pieces() -> Iterator[bytes]:
        for piece in response.iter_bytes(1 << 20):
            if time.monotonic() > deadline:
                raise TagProblem("weight_unavailable", f"weight {weight.path}: downloading {shown} took too long")
            yield piece

    cap = limit if weight.size is None else min(limit, weight.size)
    try:
        return uploads.put_stream(pieces(), weight.size, sha256=weight.sha256, max_size=cap, grant_to=holder)
    except HubError as exc:
        if exc.code == "digest_mismatch":
            raise TagProblem("weight_mismatch", f"weight {weight.path}: the file at {shown} has sha256 "
                             f"{exc.details.get('actual')}, not the {weight.sha256} the manifest states") from exc
        if exc.code == "size_mismatch":
            raise TagProblem("weight_mismatch", f"weight {weight.path}: the file at {shown} is not the "
                             f"{weight.size} bytes the manifest states") from exc
        if exc.code == "upload_too_large":
            raise TagProblem("weight_too_large", f"weight {weight.path}: the file at {shown} is larger than "
                             f"{cap} bytes") from exc
        raise

"""Image inputs: bytes, base64 text or an allowed URL in; a decoded ``cvflow.solver.Image`` out.

Every image is checked against the runner's limits before the solver sees it: its size in
bytes, then its pixel count (read from the header, before decoding). A URL is fetched only
when it lies under a prefix the runner was started with (``cvflow run --allow-url``), and so
is every redirect it follows: a runner must not become a way into the network behind it.
"""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from cvflow.runner.errors import RunnerError, field_error
from cvflow.solver import Image, ImageTooLargeError, NotAnImageError


@dataclass(frozen=True)
class ImagePolicy:
    max_bytes: int = 20 << 20
    max_pixels: int = 40_000_000
    allow_urls: tuple[str, ...] = ()
    url_timeout: float = 10.0


def decode(data: bytes, field: str, policy: ImagePolicy, *, filename: str | None = None) -> Image:
    """Raises RunnerError: ``image_too_large`` (413) or ``not_an_image`` (400)."""
    if len(data) > policy.max_bytes:
        raise field_error("image_too_large", field,
                          f"{field}: the image is {len(data)} bytes; the limit is {policy.max_bytes}")
    if not data:
        raise field_error("not_an_image", field, f"{field}: the upload is empty")
    try:
        return Image.from_bytes(data, filename=filename, max_pixels=policy.max_pixels)
    except NotAnImageError as exc:
        raise field_error("not_an_image", field, f"{field}: {exc.message}") from None
    except ImageTooLargeError as exc:
        raise field_error("image_too_large", field, f"{field}: {exc.message}") from None


def from_json(value: Any, field: str, policy: ImagePolicy) -> Image:
    """An image given in JSON: base64 text, a ``data:`` URL, or ``{"url": "https://..."}``.

    Raises:
        RunnerError: ``invalid_field``, ``invalid_base64``, ``url_not_allowed``, ``url_fetch_failed``,
            or what ``decode`` raises.
    """
    if isinstance(value, str):
        return decode(_from_base64(value, field, policy), field, policy)
    if isinstance(value, dict) and set(value) == {"url"} and isinstance(value["url"], str):
        return decode(fetch(value["url"], field, policy), field, policy, filename=_url_name(value["url"]))
    raise field_error("invalid_field", field,
                      f'{field}: an image is base64 text, a data: URL, or {{"url": "..."}}, not {type(value).__name__}')


def _from_base64(text: str, field: str, policy: ImagePolicy) -> bytes:
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise field_error("invalid_base64", field,
                              f"{field}: a data: URL must be base64 (data:image/png;base64,...)")
    if len(text) > policy.max_bytes * 4 // 3 + 8:
        raise field_error("image_too_large", field, f"{field}: the image is over the limit of {policy.max_bytes} bytes")
    text = "".join(text.split())
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise field_error("invalid_base64", field, f"{field}: not valid base64") from None


def url_allowed(url: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``url`` is http(s) and lies under one of ``prefixes`` (same scheme and host, path below)."""
    try:
        u = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    if u.scheme not in ("http", "https") or not u.hostname or u.username or u.password:
        return False
    for prefix in prefixes:
        p = urllib.parse.urlsplit(prefix)
        if (p.scheme, p.netloc.lower()) != (u.scheme, u.netloc.lower()):
            continue
        base = p.path if p.path.endswith("/") else p.path + "/"
        if p.path in ("", "/") or u.path == p.path or u.path.startswith(base):
            return True
    return False


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only under ``prefixes``; an ``Authorization`` header goes along only
    while the new URL stays under ``auth_under``."""

    def __init__(self, prefixes: tuple[str, ...], auth_under: tuple[str, ...] = ()) -> None:
        self.prefixes = prefixes
        self.auth_under = auth_under

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if not url_allowed(newurl, self.prefixes):
            raise urllib.error.HTTPError(newurl, code, f"redirected to {newurl}, which is not allowed", headers, fp)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and not url_allowed(newurl, self.auth_under):
            new.remove_header("Authorization")
        return new


def fetch(url: str, field: str, policy: ImagePolicy, *, allowed: tuple[str, ...] | None = None,
          refusal: str | None = None, headers: dict[str, str] | None = None,
          auth_under: tuple[str, ...] = ()) -> bytes:
    """The bytes at an allowed ``url``, at most ``policy.max_bytes`` of them.

    ``allowed`` replaces ``policy.allow_urls`` as the prefixes the URL and its redirects must lie
    under, and ``refusal`` the message for one that does not. ``headers`` replace the default
    ``Accept: image/*``; an ``Authorization`` among them follows redirects only under ``auth_under``.

    Raises:
        RunnerError: ``url_not_allowed`` (403), ``url_fetch_failed`` (400), ``image_too_large`` (413).
    """
    prefixes = policy.allow_urls if allowed is None else allowed
    if not url_allowed(url, prefixes):
        if refusal is None:
            hint = ("this runner allows no URLs; start it with --allow-url PREFIX" if not prefixes
                    else "allowed: " + ", ".join(prefixes))
            refusal = f"{url[:200]} is not an allowed URL ({hint})"
        raise field_error("url_not_allowed", field, f"{field}: {refusal}")
    opener = urllib.request.build_opener(_CheckedRedirects(prefixes, auth_under))
    request = urllib.request.Request(url, headers={"User-Agent": "cvflow-runner",
                                                   **(headers if headers is not None else {"Accept": "image/*"})})
    try:
        with opener.open(request, timeout=policy.url_timeout) as response:
            data: bytes = response.read(policy.max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise field_error("url_fetch_failed", field,
                          f"{field}: fetching {url[:200]} failed: {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise field_error("url_fetch_failed", field, f"{field}: fetching {url[:200]} failed: {reason}") from None
    if len(data) > policy.max_bytes:
        raise field_error("image_too_large", field,
                          f"{field}: {url[:200]} is over the limit of {policy.max_bytes} bytes")
    return data


def _url_name(url: str) -> str | None:
    name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
    return name or None


def require_pillow() -> None:
    """Raises RuntimeError when Pillow is missing: solvers that take images cannot run without it."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise RuntimeError("this package's solvers take images, which the runner decodes with Pillow, and its"
                           " virtual environment has no Pillow: add 'pillow>=10' to the package's requirements"
                           ) from None


__all__ = ["ImagePolicy", "RunnerError", "decode", "fetch", "from_json", "require_pillow", "url_allowed"]

"""A small ``multipart/form-data`` parser (RFC 7578) for bodies already in memory.

The runner reads a whole body (it caps its size first), so a parser over ``bytes`` is
enough: no streaming state machine, no temporary files. ``cgi`` is gone from Python 3.13
and ``email`` mangles binary parts, hence this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MultipartError", "Part", "boundary_of", "parse_multipart"]

_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]{1,200})"|([^\s;,"]{1,200}))', re.IGNORECASE)
_PARAM_RE = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')
MAX_PARTS = 1000
MAX_HEADER_BYTES = 8192


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True)
class Part:
    """One part: the form field ``name``, ``filename`` for a file upload, its content type and bytes."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def is_file(self) -> bool:
        return self.filename is not None

    def text(self) -> str:
        """The part as UTF-8 text. Raises MultipartError if it is not UTF-8."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise MultipartError(f"field {self.name!r} is not UTF-8 text") from None


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a ``multipart/form-data`` content type. Raises MultipartError."""
    m = _BOUNDARY_RE.search(content_type)
    if not m:
        raise MultipartError("the content type has no boundary parameter")
    return m.group(1) or m.group(2)


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Every part of ``body``, in order.

    Raises:
        MultipartError: no closing delimiter, a part without ``Content-Disposition: form-data;
            name=...``, headers that are too long, or too many parts.
    """
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise MultipartError("the body does not contain the boundary")
    parts: list[Part] = []
    pos = start + len(delimiter)
    needle = b"\r\n" + delimiter
    while True:
        if body.startswith(b"--", pos):
            return parts  # the close delimiter; an epilogue after it is ignored
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise MultipartError("the body ends inside a part")
        head_end = body.find(b"\r\n\r\n", eol)
        if head_end < 0:
            raise MultipartError("a part has no end of headers")
        if head_end - eol > MAX_HEADER_BYTES:
            raise MultipartError("a part's headers are too long")
        headers = _headers(body[eol + 2:head_end])
        data_start = head_end + 4
        end = body.find(needle, data_start)
        if end < 0:
            raise MultipartError("the body has no closing boundary")
        parts.append(_part(headers, body[data_start:end]))
        if len(parts) > MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} parts")
        pos = end + len(needle)


def _headers(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            raise MultipartError("a part has a malformed header line")
        out[name.strip().lower().decode("latin-1")] = value.strip().decode("utf-8", "replace")
    return out


def _part(headers: dict[str, str], data: bytes) -> Part:
    disposition = headers.get("content-disposition", "")
    kind, _, rest = disposition.partition(";")
    if kind.strip().lower() != "form-data":
        raise MultipartError("a part is not Content-Disposition: form-data")
    params = {}
    for m in _PARAM_RE.finditer(";" + rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value) if m.group(2) is not None else value
    if "name" not in params:
        raise MultipartError("a part has no field name")
    filename = params.get("filename")
    if filename is None and "filename*" in params:  # RFC 5987: utf-8''name
        filename = params["filename*"].split("''", 1)[-1]
    return Part(params["name"], data, filename, headers.get("content-type"))

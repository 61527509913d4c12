"""A small ``multipart/form-data`` parser (RFC 7578) for bodies already in memory.

The runner reads a whole body (it caps its size first), so a parser over ``bytes`` is
enough: no streaming state machine, no temporary files. ``cgi`` is gone from Python 3.13
and ``email`` mangles binary parts, hence this.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

__all__ = ["MultipartError", "Part", "boundary_of", "parse_multipart"]

# RFC 2046 5.1.1: 1 to 70 bchars, the last not a space. RFC 9110 5.6.6: parameter = token "=" (token / quoted-string)
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = r"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_QUOTED = r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*)"'
_PARAM_RE = re.compile(r"[ \t]*;[ \t]*(" + _TOKEN + r")=(?:(" + _TOKEN + r")|" + _QUOTED + ")")
_TYPE_RE = re.compile(_TOKEN + "/" + _TOKEN)
_EXT_VALUE = re.compile(r"(?i:(UTF-8|ISO-8859-1))'[A-Za-z0-9-]*'((?:%[0-9A-Fa-f]{2}|[-!#$&+.^_`|~0-9A-Za-z])*)")
_HEADER_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_QUOTED_PAIR = re.compile(r"\\(.)")
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


def _params(text: str) -> dict[str, str]:
    """``; name=value`` parameters (RFC 9110 5.6.6), names lower-cased. Raises MultipartError."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text.rstrip(" \t")):
        m = _PARAM_RE.match(text, pos)
        if m is None:
            raise MultipartError(f"a malformed parameter at {text[pos:pos + 40]!r}")
        name = m.group(1).lower()
        if name in out:
            raise MultipartError(f"the parameter {name} is given twice")
        token, quoted = m.group(2, 3)
        out[name] = token if token is not None else _unescape(quoted) if "\\" in quoted else quoted
        pos = m.end()
    return out


def _unescape(quoted: str) -> str:
    """A quoted-string's content without its backslash escapes (RFC 9110 5.6.4)."""
    return _QUOTED_PAIR.sub(r"\1", quoted)


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a ``multipart/form-data`` content type. Raises MultipartError."""
    m = _TYPE_RE.match(content_type.strip(" \t"))
    if m is None:
        raise MultipartError("a malformed content type")
    boundary = _params(content_type.strip(" \t")[m.end():]).get("boundary")
    if boundary is None:
        raise MultipartError("the content type has no boundary parameter")
    if not _BOUNDARY.fullmatch(boundary):
        raise MultipartError("the boundary must be 1 to 70 of A-Z a-z 0-9 '()+_,-./:=? and space, not ending"
                             " with a space")
    return boundary


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Every part of ``body``, in order (RFC 2046 5.1.1, RFC 7578).

    A delimiter is CRLF (or the start of the body), ``--`` and the boundary, then spaces or
    tabs (transport padding) and CRLF, or ``--`` for the last one. The preamble before the
    first and the epilogue after the last are ignored.

    Raises:
        MultipartError: no delimiter, no close delimiter, a part without ``Content-Disposition:
            form-data; name=...``, a malformed header or parameter, headers that are too long,
            or too many parts.
    """
    dash = b"--" + boundary.encode("latin-1")
    pos = _delimiter(body, dash, 0, first=True)
    if pos is None:
        raise MultipartError("the body does not contain the boundary")
    parts: list[Part] = []
    while True:
        after = pos + len(dash)
        if body.startswith(b"--", after):
            if not parts:
                raise MultipartError("the body has no parts")
            return parts  # the close delimiter; what follows it is the epilogue
        start = _line_end(body, after)
        head_end = body.find(b"\r\n\r\n", start - 2)
        if head_end < 0:
            raise MultipartError("a part has no end of headers")
        if head_end - start > MAX_HEADER_BYTES:
            raise MultipartError("a part's headers are too long")
        headers = _headers(body[start:head_end]) if head_end > start - 2 else {}
        data_start = head_end + 4
        end = _delimiter(body, dash, data_start - 2, first=False)
        if end is None:
            raise MultipartError("the body has no closing boundary")
        parts.append(_part(headers, body[data_start:end - 2] if end - 2 >= data_start else b""))
        if len(parts) > MAX_PARTS:
            raise MultipartError(f"more than {MAX_PARTS} parts")
        pos = end


def _line_end(body: bytes, at: int) -> int:
    """Past the transport padding and CRLF that end a delimiter line at ``at``, or -1."""
    i = at
    while body[i:i + 1] in (b" ", b"\t"):
        i += 1
    return i + 2 if body.startswith(b"\r\n", i) else -1


def _delimiter(body: bytes, dash: bytes, at: int, *, first: bool) -> int | None:
    """Where the next delimiter's ``--boundary`` starts, at or after ``at`` (after CRLF, or at the
    start of the body for the first), followed by padding and CRLF or by ``--``."""
    if first and body.startswith(dash) and (body.startswith(b"--", len(dash)) or _line_end(body, len(dash)) > 0):
        return 0
    needle = b"\r\n" + dash
    while (i := body.find(needle, at)) >= 0:
        after = i + len(needle)
        if body.startswith(b"--", after) or _line_end(body, after) > 0:
            return i + 2
        at = i + 1
    return None


def _headers(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or not _HEADER_NAME.fullmatch(name):
            raise MultipartError("a part has a malformed header line")
        key = name.lower().decode("ascii")
        if key in out:
            raise MultipartError(f"a part has two {key} headers")
        try:
            out[key] = value.strip(b" \t").decode("utf-8")
        except UnicodeDecodeError:
            raise MultipartError(f"a part's {key} header is not UTF-8") from None
    return out


def _part(headers: dict[str, str], data: bytes) -> Part:
    disposition = headers.get("content-disposition", "")
    kind, sep, rest = disposition.partition(";")
    if kind.strip(" \t").lower() != "form-data":
        raise MultipartError("a part is not Content-Disposition: form-data")
    params = _params(sep + rest)
    if "name" not in params:
        raise MultipartError("a part has no field name")
    filename = params.get("filename")
    if "filename*" in params:  # RFC 5987 / 2231 ext-value, which wins over filename (RFC 6266 4.3)
        m = _EXT_VALUE.fullmatch(params["filename*"])
        if m is None:
            raise MultipartError("filename* is not charset'language'percent-encoded-value (RFC 5987)")
        try:
            filename = urllib.parse.unquote_to_bytes(m.group(2)).decode(m.group(1).lower())
        except UnicodeDecodeError:
            raise MultipartError(f"filename* is not valid {m.group(1)}") from None
    return Part(params["name"], data, filename, headers.get("content-type"))

"""The multipart/form-data parser."""

from __future__ import annotations

import pytest

from cvflow.runner.multipart import MultipartError, boundary_of, parse_multipart


def body(*parts: bytes, boundary: str = "xyz") -> bytes:
    delimiter = b"--" + boundary.encode()
    return b"".join(delimiter + b"\r\n" + p + b"\r\n" for p in parts) + delimiter + b"--\r\n"


def test_fields_and_files_with_binary_content():
    data = bytes(range(256)) + b"\r\n--xy"  # CRLF and a prefix of the boundary inside the file
    parts = parse_multipart(body(
        b'Content-Disposition: form-data; name="k"\r\n\r\n3',
        b'Content-Disposition: form-data; name="image"; filename="a b.png"\r\nContent-Type: image/png\r\n\r\n' + data,
        b'Content-Disposition: form-data; name="empty"\r\n\r\n',
    ), "xyz")
    assert [(p.name, p.filename, p.content_type, p.is_file) for p in parts] == [
        ("k", None, None, False), ("image", "a b.png", "image/png", True), ("empty", None, None, False)]
    assert parts[0].text() == "3" and parts[1].data == data and parts[2].data == b""


def test_boundary_parameter():
    assert boundary_of('multipart/form-data; boundary="a b:c"') == "a b:c"
    assert boundary_of("multipart/form-data; charset=utf-8; boundary=----x1") == "----x1"
    with pytest.raises(MultipartError, match="no boundary"):
        boundary_of("multipart/form-data")


@pytest.mark.parametrize(("raw", "words"), [
    (b"no boundary here", "does not contain the boundary"),
    (b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nunterminated', "no closing boundary"),
    (b"--xyz\r\nContent-Type: text/plain\r\n\r\nx\r\n--xyz--", "not Content-Disposition: form-data"),
    (b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--xyz--", "no field name"),
    (b"--xyz\r\nbroken header\r\n\r\nx\r\n--xyz--", "malformed header"),
])
def test_malformed_bodies_are_refused(raw, words):
    with pytest.raises(MultipartError, match=words):
        parse_multipart(raw, "xyz")


# -- against python-multipart (the hub's parser; used here only, the runner must not need it) ----

import urllib.parse  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from python_multipart.exceptions import MultipartParseError  # noqa: E402
from python_multipart.multipart import MultipartParser, parse_options_header  # noqa: E402

BCHARS = "0123456789abcXYZ'()+_,-./:=? "


def theirs(body: bytes, boundary: str) -> list[tuple[str, bytes]] | None:
    """(name, data) of each part as python-multipart reads them; None when it refuses the body."""
    parts: list[list] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}

    def on_part_begin() -> None:
        parts.append([None, b""])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        if header["field"].lower() == b"content-disposition":
            parts[-1][0] = parse_options_header(header["value"])[1].get(b"name", b"").decode()
        header["field"] = header["value"] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1] += data[start:end]

    ended: list[bool] = []
    parser = MultipartParser(boundary.encode(), {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data, "on_end": lambda: ended.append(True)})
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        return None
    return [(n, d) for n, d in parts] if ended else None


@st.composite
def forms(draw: st.DrawFn) -> tuple[bytes, str]:
    boundary = draw(st.text(BCHARS, min_size=1, max_size=70).filter(lambda b: not b.endswith(" ")))
    parts = draw(st.lists(st.tuples(st.text("abcxyz_", min_size=1, max_size=5), st.binary(max_size=20)),
                          min_size=1, max_size=4))
    dash = b"--" + boundary.encode()
    body = b""
    for name, data in parts:
        padding = draw(st.sampled_from([b"", b"", b" ", b"\t "]))
        body += dash + padding + b"\r\n" + b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        body += data + b"\r\n"
    body += dash + b"--" + draw(st.sampled_from([b"", b"\r\n", b"\r\nepilogue"]))
    return body, boundary


@settings(max_examples=300, deadline=None)
@given(forms())
def test_generated_forms_are_read_as_python_multipart_reads_them(form):
    body, boundary = form
    expected = theirs(body, boundary)
    try:
        ours = [(p.name, p.data) for p in parse_multipart(body, boundary)]
    except MultipartError:
        ours = None
    if expected is not None:  # the data cannot hold the delimiter, so both read every form here
        assert ours == expected, (body, boundary)
    assert ours is not None


@settings(max_examples=300, deadline=None)
@given(forms(), st.integers(0, 10_000), st.sampled_from([b"", b"\r", b"\n", b"-", b"x", b" "]), st.booleans())
def test_forms_with_one_byte_changed_never_break_the_parser(form, at, byte, replace):
    body, boundary = form
    at %= len(body) + 1
    body = body[:at] + byte + body[at + replace:]
    expected = theirs(body, boundary)
    try:
        ours = [(p.name, p.data) for p in parse_multipart(body, boundary)]
    except MultipartError:
        return  # refused: the runner answers 400 invalid_multipart
    if expected is not None:  # python-multipart is lenient where RFC 2046 is not (a delimiter without its
        # CRLF before it, junk after a boundary): what the runner reads, it reads too
        assert all(part in expected for part in ours), (body, boundary, ours, expected)


@pytest.mark.parametrize("raw", [
    b"--xyzz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--xyz--",  # a longer boundary is not it
    b"--xyzGARBAGE\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--xyz--",
    b"preamble--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--xyz--",  # no CRLF before it
    b"--xyz--",  # no parts
    b"--xyz\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nx\r\n--xyz--",
    b"--xyz\r\nContent-Disposition: form-data; name=a b\r\n\r\nx\r\n--xyz--",
    b"--xyz\r\nContent-Disposition: form-data; name=\"a\"; filename*=a.png\r\n\r\nx\r\n--xyz--",
    b"--xyz\r\nContent-Disposition: form-data; name=\"a\"; filename*=UTF-8''%ZZ\r\n\r\nx\r\n--xyz--",
    b"--xyz\r\nContent-Disposition: form-data; name=\"a\"; filename*=UTF-8''%FF\r\n\r\nx\r\n--xyz--",
    b"--xyz\r\nBad Header: 1\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--xyz--",
])
def test_delimiter_and_parameter_rules(raw):
    with pytest.raises(MultipartError):
        parse_multipart(raw, "xyz")


def test_transport_padding_preamble_epilogue_and_a_boundary_lookalike_in_data():
    raw = (b"preamble\r\n--xyz \t\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--xyzz\r\n"
           b"--xyz--  \r\nepilogue --xyz\r\n")
    parts = parse_multipart(raw, "xyz")
    assert [(p.name, p.data) for p in parts] == [("a", b"1\r\n--xyzz")]


@pytest.mark.parametrize(("ext", "name"), [
    ("UTF-8''%E2%82%AC%20rates.png", "€ rates.png"), ("utf-8'en'a%20b.png", "a b.png"),
    ("ISO-8859-1''caf%E9.png", "café.png"),
])
def test_filename_star_is_decoded_and_wins_over_filename(ext, name):
    import email.utils

    raw = (b"--xyz\r\nContent-Disposition: form-data; name=\"image\"; filename=\"fallback.png\"; filename*="
           + ext.encode() + b"\r\n\r\nx\r\n--xyz--")
    (part,) = parse_multipart(raw, "xyz")
    charset, _, value = email.utils.decode_rfc2231(ext)
    assert part.filename == name == urllib.parse.unquote(value, encoding=charset)


@pytest.mark.parametrize("ctype", [
    "multipart/form-data; boundary=" + "a" * 71, 'multipart/form-data; boundary="ends with space "',
    'multipart/form-data; boundary=""', "multipart/form-data; boundary=a;boundary=b",
    'multipart/form-data; boundary="bad\x01"', "multipart/form-data; boundary=a{b", "multipart/form-data; xboundary=a",
    "multipart/form-data boundary=a",
])
def test_boundary_parameters_outside_rfc_2046_are_refused(ctype):
    with pytest.raises(MultipartError):
        boundary_of(ctype)


def test_boundary_parameter_quoted_and_70_long():
    assert boundary_of('multipart/form-data; boundary="' + "a" * 68 + ' b"') == "a" * 68 + " b"
    assert boundary_of("Multipart/Form-Data;BOUNDARY=" + "z" * 70) == "z" * 70

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

"""The runner's HTTP framing against h11's, on generated requests, valid and broken.

Each generated request is read by the runner's own reader (over a real socket pair) and by
h11 as a server-side ``h11.Connection``. Both must accept it with the same method, target,
version, headers and body, or both must refuse it with the same status. The runner is
stricter than h11 in exactly the places ``protocol.py`` names (both Content-Length and
Transfer-Encoding; HTTP versions other than 1.0 and 1.1), and the oracle says so below.
The same requests then go to a live runner over TCP: a refused one gets its 4xx/5xx and the
connection closes; none gets a 500, and none hangs.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cvflow.runner.protocol import BadRequest, BodyTooLarge, Limits, Reader, read_request
from cvflow.runner.server import Runner, RunnerSettings

BODY_LIMIT = 1 << 16
FAST = Limits(header_timeout=2, idle_timeout=2, body_timeout=2)

# -- the two parsers --------------------------------------------------------------------------


def runner_parse(data: bytes) -> tuple:
    """("ok", method, target, version, headers, body) | ("reject", status) | ("incomplete",) | ("too_large",)."""
    a, b = socket.socketpair()
    with a, b:
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)
        try:
            request = read_request(Reader(b), FAST)
            if request is None:
                return ("incomplete",)
            body = request.body(BODY_LIMIT)
        except BadRequest as exc:
            return ("reject", exc.status)
        except BodyTooLarge:
            return ("too_large",)
        except ConnectionError:
            return ("incomplete",)
        headers = {k: (v.lower() if k == "transfer-encoding" else v) for k, v in request.headers.items()}
        return ("ok", request.method, request.target, request.version, headers, body)


def h11_parse(data: bytes) -> tuple:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    request, body = None, []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return ("incomplete", request)
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
    except h11.RemoteProtocolError as exc:
        return ("reject", exc.error_status_hint)
    assert request is not None
    headers: dict[str, str] = {}
    for name, value in request.headers:
        key, text = name.decode(), value.decode("latin-1")
        headers[key] = headers[key] + ", " + text if key in headers else text
    return ("ok", request.method.decode(), request.target.decode(), request.http_version.decode(), headers,
            b"".join(body))


def check_same(data: bytes) -> tuple:
    """Assert the runner reads ``data`` as h11 does (with the runner's stated refinements); its verdict."""
    ours = runner_parse(data)
    theirs = h11_parse(re.sub(rb"\A(?:\r?\n)+", b"", data))  # the runner skips empty lines before a request
    if theirs[0] == "ok":
        _, _, _, version, headers, _ = theirs
        if "content-length" in headers and "transfer-encoding" in headers:
            assert ours == ("reject", 400), (data, ours)
        elif version not in ("1.0", "1.1"):
            assert ours == ("reject", 505), (data, ours)
        else:
            assert ours == theirs, (data, ours, theirs)
    elif theirs[0] == "reject":  # the same status, or the runner's 505 found in the head before h11's error
        assert ours == theirs or ours == ("reject", 505), (data, ours, theirs)
    else:  # h11 waits for more: the runner either waits too (EOF here) or refuses a body over its limit
        assert ours[0] in ("incomplete", "too_large") or (ours[0] == "reject" and ours[1] in (505, 400)), (
            data, ours, theirs)
        if ours[0] == "too_large":
            assert theirs[1] is not None
    return ours


# -- generated requests -----------------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(TCHAR, min_size=1, max_size=8)
bad_bytes = st.sampled_from([b" ", b"\t", b"\x00", b"\r", b"\n", b"\x0b", b"\x7f", b"\x01", b":", b"\xc3\xa9",
                             b"\xd9\xa3", b"\xef\xbc\x95", b"(", b'"', b"@", b"\x80"])


def mutated(good: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """``good`` with one bad byte put in, or put in place of one of its bytes."""
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        value = draw(good)
        at = draw(st.integers(0, len(value)))
        return value[:at] + draw(bad_bytes) + value[at + draw(st.integers(0, 1)):]
    return build()


good_methods = st.one_of(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE"]), tokens.map(str.encode))
good_targets = st.one_of(st.sampled_from([b"/", b"/healthz", b"/solvers/add/infer", b"/a?b=c&d", b"*", b"http://x/y"]),
                         st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=20)
                         .map(lambda t: b"/" + t.encode()))
good_names = st.one_of(st.sampled_from([b"Accept", b"X-Thing", b"Content-Type", b"Connection", b"Expect"]),
                       tokens.map(str.encode))
good_values = st.one_of(st.sampled_from([b"", b"a", b"a b", b"  padded  ", b"\xff obs-text", b"x\x01y", b"close",
                                         b"keep-alive", b"100-continue"]),
                        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=12).map(str.encode))
GOOD: dict[str, st.SearchStrategy[bytes]] = {
    "method": good_methods, "target": good_targets, "version": st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
    "name": good_names, "value": good_values, "line_end": st.just(b"\r\n"), "separator": st.sampled_from([b": ", b":"]),
    "content_length": st.just(b""), "transfer_encoding": st.just(b"chunked"), "chunk_size": st.just(b""),
    "chunk_line_end": st.just(b"\r\n"), "chunk_end": st.just(b"\r\n"), "hosts": st.just(b"1"), "fold": st.just(b""),
}
BAD: dict[str, st.SearchStrategy[bytes]] = {
    "method": mutated(good_methods), "target": mutated(good_targets),
    "version": st.sampled_from([b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/1.10", b"HTTP/1",
                                b"HTTP/1.1 ", b"HTTP/\xd9\xa1.1"]),
    "name": mutated(good_names), "value": mutated(good_values),
    "line_end": st.sampled_from([b"\n", b"\r", b"", b"\r\r\n", b" \r\n"]),
    "separator": st.sampled_from([b" : ", b":\t", b" :", b"::", b"="]),
    "content_length": st.sampled_from([b"0", b"5", b"10", b"007", b"+5", b"-1", b"0x10", b"1_0", b" 5", b"5 ", b"5,5",
                                       b"5, 6", b"\xd9\xa3", b"\xef\xbc\x95", b"", b"1e1", b"99999999999999999999",
                                       b"5\x00", b"dup", b"dup-other"]),
    "transfer_encoding": st.sampled_from([b"Chunked", b"gzip, chunked", b"chunked, chunked", b"identity",
                                          b"chunked;q=1", b" chunked", b"dup", b"both"]),
    "chunk_size": st.sampled_from([b"0", b"5", b"a", b"A", b"00005", b"+5", b"-1", b"0x5", b"5_0", b" 5", b"5 ", b"5\t",
                                   b"5;ext=1", b"5;", b"\xd9\xa5", b"g", b"FFFFFFFFFFFFFFFFFFFF", b"5\r", b"x"]),
    "chunk_line_end": st.sampled_from([b"\n", b"", b"\r", b"\r\r\n"]),
    "chunk_end": st.sampled_from([b"\n", b"", b"XX", b"\r", b" \r\n", b"\r\r\n"]),
    "hosts": st.sampled_from([b"0", b"2"]), "fold": st.sampled_from([b" ", b"\t", b"  "]),
}


@st.composite
def requests(draw: st.DrawFn, broken: bool = True) -> bytes:
    """A request, valid, or (``broken``) with one of its parts replaced by a bad one."""
    fault = draw(st.sampled_from(sorted(BAD))) if broken else None

    def part(name: str) -> bytes:
        return draw(BAD[name] if name == fault else GOOD[name])

    end = lambda: part("line_end")  # noqa: E731
    head = part("method") + b" " + part("target") + b" " + part("version") + end()
    headers = draw(st.lists(st.tuples(good_names, good_values), max_size=4))
    if draw(st.booleans()):
        headers.append((part("name"), part("value")))
    headers[draw(st.integers(0, len(headers))):0] = [(b"Host", b"example")] * int(part("hosts"))
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    payload = draw(st.binary(max_size=12))
    body = b""
    if framing == "length" or fault == "content_length":
        n = part("content_length")
        if n in (b"dup", b"dup-other"):
            headers.append((b"Content-Length", str(len(payload)).encode()))
            n = str(len(payload) + (n == b"dup-other")).encode()
        headers.append((b"Content-Length", n or str(len(payload)).encode()))
        body = payload
    elif framing == "chunked" or fault in ("transfer_encoding", "chunk_size", "chunk_line_end", "chunk_end"):
        te = part("transfer_encoding")
        if te in (b"dup", b"both"):
            headers.append((b"Transfer-Encoding", b"chunked"))
            te = b"chunked" if te == b"dup" else b"3"
            headers.append((b"Content-Length" if te == b"3" else b"Transfer-Encoding", te))
        else:
            headers.append((b"Transfer-Encoding", te))
        pieces = draw(st.lists(st.binary(min_size=1, max_size=6), min_size=fault is not None, max_size=3))
        for piece in pieces:
            size = part("chunk_size") or f"{len(piece):x}".encode()
            body += size + part("chunk_line_end") + piece + part("chunk_end")
        body += b"0\r\n"
        for name, value in draw(st.lists(st.tuples(good_names, good_values), max_size=2)):
            body += name + b": " + value + end()
        body += end()
    for name, value in headers:
        fold = part("fold") if draw(st.booleans()) else b""
        if fold:  # obs-fold: the value continues on the next line
            head += name + b": " + value + end() + fold + b"more" + end()
        else:
            head += name + part("separator") + value + end()
    return head + end() + body


@st.composite
def flipped(draw: st.DrawFn) -> bytes:
    """A valid request with one byte inserted, removed or replaced anywhere."""
    body = draw(st.binary(max_size=10))
    chunked = draw(st.booleans())
    if chunked:
        framed = b"Transfer-Encoding: chunked\r\n\r\n" + (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body
                                                           else b"") + b"0\r\n\r\n"
    else:
        framed = b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    data = b"POST /solvers/add/infer?a=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framed
    at = draw(st.integers(0, len(data) - 1))
    how = draw(st.sampled_from(["insert", "delete", "replace"]))
    byte = bytes([draw(st.integers(0, 255))])
    return data[:at] + (b"" if how == "delete" else byte) + data[at + (how != "insert"):]


ISSUE_CASES = [  # issue 10, class 7, word for word
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n0123456789abcdef\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \xd9\xa3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",
]


@pytest.mark.parametrize("data", ISSUE_CASES)
def test_the_cases_of_the_issue_are_refused_as_h11_refuses_them(data):
    assert check_same(data) == ("reject", 400)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(requests(), requests(broken=False)))
@example(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n")  # obs-fold, joined with a space
@example(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nabcde")
@example(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nabcde")
@example(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
@example(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
def test_generated_requests_are_read_as_h11_reads_them(data):
    check_same(data)


@settings(max_examples=400, deadline=None)
@given(flipped())
def test_requests_with_one_byte_changed_are_read_as_h11_reads_them(data):
    check_same(data)


def test_the_generator_reaches_both_verdicts():
    """A fuzz test whose inputs all pass (or all fail) proves little: both verdicts are common."""
    verdicts: list[str] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(requests(broken=False))
    def collect_valid(data: bytes) -> None:
        verdicts.append(runner_parse(data)[0])

    collect_valid()
    assert verdicts.count("ok") == len(verdicts), verdicts  # valid requests are all read
    verdicts.clear()

    @settings(max_examples=300, deadline=None, database=None)
    @given(requests())
    def collect(data: bytes) -> None:
        verdicts.append(runner_parse(data)[0])

    collect()
    assert verdicts.count("ok") > 20 and verdicts.count("reject") > 100, verdicts


# -- over TCP, against a live runner ----------------------------------------------------------

MANIFEST = """[package]
name = "qa/adder"
version = "0.1.0"
description = "adds"

[[solvers]]
name = "add"
class = "adder_for_fuzz_tests:Adder"
"""
MODULE = """class Adder:
    def __init__(self, context):
        pass

    def infer(self, a: int, b: int = 1) -> dict:
        return {"sum": a + b}
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    folder = tmp_path_factory.mktemp("fuzz-adder")
    (folder / "cvflow.toml").write_text(MANIFEST)
    (folder / "adder_for_fuzz_tests.py").write_text(MODULE)
    runner = Runner(RunnerSettings(package_dir=Path(folder), max_request_bytes=BODY_LIMIT, access_log=False,
                                   http=Limits(header_timeout=1, idle_timeout=1, body_timeout=1)))
    server = runner.bind()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    runner.load()
    yield runner
    runner.close(grace=1)


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, stop sending, and read until the runner closes (a hang fails: 10 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = []
        while chunk := s.recv(65536):
            out.append(chunk)
        return b"".join(out)


def check_live(port: int, data: bytes) -> None:
    verdict = runner_parse(data)
    out = exchange(port, data)  # returns only once the runner closed the connection
    statuses = [int(s) for s in re.findall(rb"^HTTP/1\.1 (\d{3}) ", out, re.MULTILINE)]
    if verdict[0] == "reject":
        assert statuses and statuses[-1] == verdict[1], (data, out)
        assert out.split(b"\r\n\r\n", 1)[0].endswith(b"Connection: close"), out
        if not data.startswith(b"HEAD "):  # a HEAD answer has no body
            code = json.loads(out.split(b"\r\n\r\n", 1)[1])["error"]["code"]
            assert code in ("bad_request", "not_implemented", "http_version_not_supported"), out
    elif verdict[0] == "ok":
        assert statuses and 500 not in statuses, (data, out)
    assert 500 not in statuses, (data, out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(requests(), flipped()))
def test_a_live_runner_answers_or_closes_and_never_fails(live, data):
    check_live(live.port, data)


@pytest.mark.parametrize("data", ISSUE_CASES)
def test_a_live_runner_refuses_the_cases_of_the_issue_with_400_and_closes(live, data):
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
        s.sendall(data)  # no shutdown: the runner itself must close
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in out and b'"bad_request"' in out

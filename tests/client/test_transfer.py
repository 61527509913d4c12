"""``cvflow.transfer.download`` against a real HTTP server on loopback that misbehaves on purpose.

:class:`Blobs` is a real server (``http.server`` over a real socket) that answers each request
with the next behaviour of its script: cut the body mid-way, answer 503 / 429 / 404, ignore
Range, send the wrong range or the wrong bytes. It counts the requests it saw. The waits
between tries go through :class:`RetryPolicy`'s documented ``sleep``/``clock``/``random``
seam, recorded by :class:`Waits` instead of spent: the network stays real, only the time is not.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cvflow.api import HubClient
from cvflow.errors import HubAuthError, HubError, HubNotFoundError, HubUnavailableError, IntegrityError
from cvflow.transfer import MismatchError, RetryPolicy, download

DATA = random.Random(11).randbytes(300_000)
DIGEST = hashlib.sha256(DATA).hexdigest()
PATH = "/blob"


@dataclass
class Seen:
    range: str | None
    status: int
    body_bytes: int


@dataclass
class Blobs:
    """A loopback server of ``DATA``; ``script`` holds one behaviour per coming request, then "ok"."""

    script: list[Any] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        blobs = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                blobs._answer(self)

        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ranges(self) -> list[str | None]:
        return [s.range for s in self.seen]

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            step = self.script.pop(0) if self.script else "ok"
        kind, arg = (step, None) if isinstance(step, str) else step
        asked = h.headers.get("range")
        if isinstance(kind, int):  # an error status; arg: extra headers
            body = b'{"error": {"code": "busy", "message": "try later"}}'
            self._send(h, kind, asked, body, {"content-type": "application/json", **(arg or {})})
            return
        data = b"W" * len(DATA) if kind == "wrong" else DATA
        if kind == "short":
            data = DATA[: len(DATA) // 3]
        if kind == "long":
            data = DATA + b"extra"
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked and kind not in ("ignore_range",) else 0
        status, headers = 200, {}
        if kind == "wrong_range" and asked:
            status, start = 206, max(0, start - 1000)
        if start:
            status = 206
        if status == 206:
            headers["content-range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if kind == "etag":
            headers["etag"] = f'"{hashlib.sha256(b"other").hexdigest()}"'
        body = data[start:]
        if kind == "cut":  # the full length announced, a third of it sent, then the connection drops
            self._send(h, status, asked, body, headers, cut_at=len(body) // 3)
        else:
            self._send(h, status, asked, body, headers)

    def _send(self, h: BaseHTTPRequestHandler, status: int, asked: str | None, body: bytes,
              headers: dict[str, str], cut_at: int | None = None) -> None:
        sent = body if cut_at is None else body[:cut_at]
        with self._lock:
            self.seen.append(Seen(asked, status, len(sent)))
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("content-length", str(len(body)))
        h.send_header("connection", "close")
        h.end_headers()
        h.wfile.write(sent)
        h.wfile.flush()
        h.close_connection = True
        if cut_at is not None:
            h.connection.shutdown(2)


class Waits:
    """The sleep and clock a :class:`RetryPolicy` is given: records each wait and moves time on."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self.now = 1_700_000_000.0

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def policy(self, *, jitter: float | None = 1.0, **kw: Any) -> RetryPolicy:
        draw = (lambda: jitter) if jitter is not None else random.Random(5).random
        return RetryPolicy(sleep=self.sleep, clock=self.clock, random=draw, **kw)


@pytest.fixture
def server() -> Iterator[Blobs]:
    s = Blobs()
    yield s
    s.close()


@pytest.fixture
def client(server: Blobs) -> Iterator[HubClient]:
    with HubClient(server.url, timeout=10) as c:
        yield c


@pytest.fixture
def waits() -> Waits:
    return Waits()


class Files:
    def __init__(self, tmp: Path) -> None:
        self.partial = tmp / "tmp" / f"{DIGEST}.incomplete"
        self.dest = tmp / "blobs" / DIGEST
        self.partial.parent.mkdir(parents=True)
        self.progress = 0
        self.lines: list[str] = []

    def advance(self, n: int) -> None:
        self.progress += n

    def get(self, client: HubClient, policy: RetryPolicy, *, data: bytes = DATA, digest: str = DIGEST) -> int:
        return download(client, PATH, self.partial, digest=digest, size=len(data), dest=self.dest,
                        policy=policy, progress=self.advance, log=self.lines.append, what="weights.bin")

    def landed(self) -> bool:
        return self.dest.read_bytes() == DATA and not self.partial.exists() and self.progress == len(DATA)

    def nothing_kept(self) -> bool:
        return not self.dest.exists() and not self.partial.exists()


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def test_a_clean_download_lands_whole_in_one_request(server: Blobs, client: HubClient, files: Files,
                                                     waits: Waits) -> None:
    sealed: list[Path] = []
    got = download(client, PATH, files.partial, digest=DIGEST, size=len(DATA), dest=files.dest,
                   seal=sealed.append, policy=waits.policy(), progress=files.advance)
    assert got == len(DATA) and files.landed()
    assert sealed == [files.partial], "seal runs on the verified partial, before the rename"
    assert server.ranges() == [None] and waits.slept == []


@pytest.mark.parametrize("cuts", [1, 2])
def test_a_body_cut_mid_way_resumes_with_range_from_the_bytes_on_disk(server: Blobs, client: HubClient,
                                                                      files: Files, waits: Waits, cuts: int) -> None:
    server.script = ["cut"] * cuts

    assert files.get(client, waits.policy(attempts=3)) == len(DATA)

    assert files.landed()
    offsets, at = [], 0
    for _ in range(cuts):  # each cut sends a third of what was asked
        offsets.append(at)
        at += (len(DATA) - at) // 3
    offsets.append(at)
    assert server.ranges() == [None] + [f"bytes={o}-" for o in offsets[1:]]
    assert [s.body_bytes for s in server.seen][-1] == len(DATA) - offsets[-1]
    assert len(waits.slept) == cuts
    assert sum("was cut" in line for line in files.lines) == cuts


def test_cut_every_time_gives_up_after_the_attempts_and_keeps_the_partial(server: Blobs, client: HubClient,
                                                                          files: Files, waits: Waits) -> None:
    server.script = ["cut"] * 10

    with pytest.raises(HubUnavailableError, match=r"weights\.bin stopped at \d+ of 300000 bytes after 3 tries.*resume"):
        files.get(client, waits.policy(attempts=3))

    assert len(server.seen) == 3 and len(waits.slept) == 2
    kept = files.partial.read_bytes()
    assert 0 < len(kept) < len(DATA) and DATA.startswith(kept)
    assert not files.dest.exists()
    server.script = []

    assert files.get(client, waits.policy()) == len(DATA) - len(kept)  # the next run resumes
    assert server.ranges()[-1] == f"bytes={len(kept)}-" and files.dest.read_bytes() == DATA


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_a_transient_status_then_200_is_retried_once(server: Blobs, client: HubClient, files: Files,
                                                     waits: Waits, status: int) -> None:
    server.script = [(status, None)]

    files.get(client, waits.policy())

    assert files.landed()
    assert [s.status for s in server.seen] == [status, 200]
    assert waits.slept == [0.5]
    assert any("trying again in 0.5 s" in line for line in files.lines), files.lines


def test_the_backoff_doubles_up_to_its_cap_and_jitter_stays_under_it(server: Blobs, client: HubClient,
                                                                     tmp_path: Path) -> None:
    waits = Waits()
    server.script = [(503, None)] * 6
    Files(tmp_path / "a").get(client, waits.policy(attempts=7, base=0.5, cap=4.0, max_wait=100))
    assert waits.slept == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0], "full backoff when the jitter draws its top"
    assert len(server.seen) == 7

    jittered = Waits()
    server.script = [(503, None)] * 6
    Files(tmp_path / "b").get(client, jittered.policy(jitter=None, attempts=7, base=0.5, cap=4.0, max_wait=100))
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(jittered.slept) == 6
    assert all(0 <= s <= cap for s, cap in zip(jittered.slept, caps, strict=True)), jittered.slept
    assert len(set(jittered.slept)) == 6, "full jitter: every wait is drawn afresh"


def test_the_total_wait_is_bounded(server: Blobs, client: HubClient, files: Files, waits: Waits) -> None:
    server.script = [(503, None)] * 20

    with pytest.raises(HubUnavailableError, match=r"failed after 3 tries.*try later") as caught:
        files.get(client, waits.policy(attempts=20, base=1.0, cap=60, max_wait=3.5))

    assert waits.slept == [1.0, 2.0], "the next wait (4 s) would pass max_wait"
    assert len(server.seen) == 3 and caught.value.status == 503
    assert files.nothing_kept()


def test_429_waits_as_long_as_retry_after_says(server: Blobs, client: HubClient, files: Files, waits: Waits) -> None:
    later = email.utils.formatdate(waits.now + 7 + 5, usegmt=True)  # 5 s after the first wait
    server.script = [(429, {"retry-after": "7"}), (429, {"retry-after": later}), (503, {"retry-after": "2"})]

    files.get(client, waits.policy(attempts=4, base=0.1, cap=0.1))

    assert files.landed()
    assert [s.status for s in server.seen] == [429, 429, 503, 200]
    assert waits.slept == [7.0, pytest.approx(5.0, abs=1), 2.0]


def test_a_retry_after_past_the_wait_budget_ends_the_download_at_once(server: Blobs, client: HubClient,
                                                                     files: Files, waits: Waits) -> None:
    server.script = [(429, {"retry-after": "3600"})]

    with pytest.raises(HubUnavailableError, match="asked to wait 3600 s, longer than the 60 s") as caught:
        files.get(client, waits.policy(attempts=5, max_wait=60))

    assert len(server.seen) == 1 and waits.slept == []
    assert caught.value.status == 429 and caught.value.code == "busy"


@pytest.mark.parametrize(("status", "error"), [(404, HubNotFoundError), (401, HubAuthError), (403, HubAuthError),
                                               (400, HubError), (416, HubError)])
def test_a_final_refusal_is_never_retried(server: Blobs, client: HubClient, files: Files, waits: Waits,
                                          status: int, error: type[HubError]) -> None:
    files.partial.write_bytes(DATA[:1000])  # a resume that the hub refuses keeps its bytes
    server.script = [(status, None)] * 5

    with pytest.raises(error) as caught:
        files.get(client, waits.policy(attempts=5))

    assert type(caught.value) is error and caught.value.status == status
    assert len(server.seen) == 1 and waits.slept == []
    assert files.partial.read_bytes() == DATA[:1000] and not files.dest.exists()


def test_a_server_that_ignores_range_restarts_cleanly(server: Blobs, client: HubClient, files: Files,
                                                      waits: Waits) -> None:
    files.partial.write_bytes(DATA[:100_000])
    server.script = ["ignore_range"]

    assert files.get(client, waits.policy()) == len(DATA)

    assert files.landed(), "the 200's body replaced the partial bytes; progress went back, then to the end"
    assert [(s.range, s.status, s.body_bytes) for s in server.seen] == [("bytes=100000-", 200, len(DATA))]
    assert waits.slept == []


def test_a_cut_then_a_server_that_ignores_range(server: Blobs, client: HubClient, files: Files,
                                                waits: Waits) -> None:
    server.script = ["cut", "ignore_range"]

    files.get(client, waits.policy())

    assert files.landed()
    assert [(s.status, s.body_bytes) for s in server.seen] == [(200, len(DATA) // 3), (200, len(DATA))]


def test_the_wrong_range_drops_the_partial_and_asks_for_the_whole(server: Blobs, client: HubClient, files: Files,
                                                                  waits: Waits) -> None:
    files.partial.write_bytes(DATA[:100_000])
    server.script = ["wrong_range"]

    files.get(client, waits.policy())

    assert files.landed()
    assert [(s.range, s.status) for s in server.seen] == [("bytes=100000-", 206), (None, 200)]


def test_wrong_bytes_fail_once_with_a_clear_error_and_nothing_kept(server: Blobs, client: HubClient, files: Files,
                                                                   waits: Waits) -> None:
    server.script = ["wrong"] * 10

    with pytest.raises(MismatchError, match=rf"weights\.bin: the downloaded bytes have sha256 \w+, not {DIGEST}"
                                            r" as promised; nothing was stored") as caught:
        files.get(client, waits.policy(attempts=5))

    assert caught.value.expected == DIGEST and caught.value.code == "digest_mismatch"
    assert len(server.seen) == 1 and waits.slept == [], "a complete wrong answer is never asked for again"
    assert files.nothing_kept()


def test_wrong_bytes_after_a_resume_are_fetched_once_from_the_start(server: Blobs, client: HubClient, files: Files,
                                                                    waits: Waits) -> None:
    files.partial.write_bytes(bytes(100_000))  # an earlier run's damaged bytes
    files.get(client, waits.policy())
    assert files.landed()
    assert server.ranges() == ["bytes=100000-", None]
    assert any("did not verify after resuming" in line for line in files.lines)

    files.dest.unlink()
    files.partial.write_bytes(DATA[:100_000])
    server.seen.clear()
    server.script = ["wrong"] * 10  # the hub itself is wrong: one fresh try, then the error
    with pytest.raises(MismatchError):
        files.get(client, waits.policy(attempts=5))
    assert server.ranges() == ["bytes=100000-", None] and files.nothing_kept()


@pytest.mark.parametrize(("kind", "error", "message"), [
    ("short", MismatchError, r"sent 100000 bytes, not the 300000 promised; nothing was stored"),
    ("long", IntegrityError, r"more than the 300000 bytes promised"),
    ("etag", IntegrityError, r"sent the file with sha256 \w+, a different one"),
])
def test_a_complete_answer_of_the_wrong_size_or_etag_is_final(server: Blobs, client: HubClient, files: Files,
                                                              waits: Waits, kind: str, error: type[Exception],
                                                              message: str) -> None:
    server.script = [kind] * 5

    with pytest.raises(error, match=message):
        files.get(client, waits.policy(attempts=5))

    assert len(server.seen) == 1 and waits.slept == []
    assert files.nothing_kept()


def test_no_server_at_all_is_retried_then_reported(tmp_path: Path, waits: Waits) -> None:
    closed = Blobs()
    closed.close()  # the port is free again: connections are refused
    files = Files(tmp_path)
    with HubClient(closed.url) as client, pytest.raises(HubUnavailableError, match="failed after 3 tries"):
        files.get(client, waits.policy(attempts=3))
    assert waits.slept == [0.5, 1.0] and files.nothing_kept()


def test_a_complete_partial_is_verified_without_a_request(server: Blobs, client: HubClient, files: Files,
                                                          waits: Waits) -> None:
    files.partial.write_bytes(DATA)

    assert files.get(client, waits.policy()) == 0

    assert files.landed() and server.seen == []
    assert any("resuming weights.bin" in line for line in files.lines)

"""The cache and ``cvflow.pull`` against a real hub over a real socket (both backends).

Downloads go through :class:`FaultyProxy`, a loopback HTTP proxy in front of the hub, so the
tests count the requests and bytes that really crossed the wire, and cut or alter them.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console

import cvflow.cache
from cvflow.api import HubClient
from cvflow.cache import Cache, CachedVersion, DiskFullError
from cvflow.errors import HubUnavailableError, IntegrityError, OfflineError, ResolutionError
from cvflow.progress import transfer_bar
from cvflow.pull import pull, pull_version
from tests.client_e2e._pull_helpers import FaultyProxy, publish_ok, yank
from tests.conftest import start_hub
from tests.helpers import LiveHub

NAME = "alice/detector"


def data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


A, B, C = data(300_000, 1), data(300_000, 2), data(200_000, 3)
FILES = {"solver.py": b"class Detector: pass\n", "weights/a.bin": A, "weights/b.bin": B, "weights/c.bin": C}


class Recorder:
    """A ``progress`` that remembers what it was told."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.advanced = 0
        self._ids = 0

    def add(self, description: str, total: int | None) -> int:
        self._ids += 1
        return self._ids

    def advance(self, task_id: int, n: int) -> None:
        self.advanced += n

    def log(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def proxy(hub: LiveHub) -> Iterator[FaultyProxy]:
    p = FaultyProxy(hub.url)
    yield p
    p.close()


@pytest.fixture
def client(proxy: FaultyProxy) -> Iterator[HubClient]:
    with HubClient(proxy.url) as c:
        yield c


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache")


@pytest.fixture(scope="module")
def presigning_hub(make_settings) -> Iterator[LiveHub]:  # type: ignore[no-untyped-def]
    """A hub on S3 that answers downloads with redirects to presigned URLs (moto serves the bytes)."""
    live, server = start_hub(make_settings("sqlite-s3", s3_presign=True))
    yield live
    live.close_clients()
    server.__exit__()
    live.context.engine.dispose()


def blob(cache: Cache, content: bytes) -> Path:
    return cache.root / "blobs" / "sha256" / sha256(content)


def test_pull_lays_out_blobs_snapshots_and_metadata(alice: httpx.Client, proxy: FaultyProxy, client: HubClient,
                                                    cache: Cache) -> None:
    published = publish_ok(alice, NAME, "1.0.0", FILES)

    path = pull(client, cache, NAME)

    assert path == cache.root / "snapshots" / "alice" / "detector" / "1.0.0"
    digests = {f["sha256"] for f in published["files"]}
    assert {p.name for p in (cache.root / "blobs" / "sha256").iterdir()} == digests
    for f in published["files"]:
        stored = cache.root / "blobs" / "sha256" / f["sha256"]
        assert sha256(stored.read_bytes()) == f["sha256"]
        assert stored.stat().st_mode & 0o222 == 0, "blobs are read-only"
        assert (path / f["path"]).stat().st_ino == stored.stat().st_ino, "snapshot files are hard links"
    assert (path / "weights" / "a.bin").read_bytes() == A
    saved = json.loads((path / ".cvflow-version.json").read_text())
    assert saved["version"] == "1.0.0"
    assert saved["files"] == published["files"]
    assert json.loads((cache.root / "index" / "alice" / "detector.json").read_text())["versions"][0]["version"] == "1.0.0"
    assert cache.load_metadata(NAME) is not None
    assert cache.load_metadata("alice/other") is None
    assert list((cache.root / "tmp").glob("*.incomplete")) == []
    assert {s.path.rsplit("/", 1)[-1] for s in proxy.file_requests()} == {"cvflow.toml", "solver.py", "a.bin",
                                                                            "b.bin", "c.bin"}

    proxy.reset()
    assert pull(client, cache, NAME) == path
    assert proxy.file_requests() == [], "a cached, unchanged snapshot downloads nothing"
    assert pull_version(client, cache, NAME, "1.0.0") == path


def test_range_picks_the_highest_non_yanked_match(alice: httpx.Client, client: HubClient, cache: Cache) -> None:
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0-rc.1", "2.0.0"):
        publish_ok(alice, NAME, version, {"solver.py": f"# {version}\n".encode()})
    yank(alice, NAME, "1.2.0")

    assert pull(client, cache, f"{NAME}@^1").name == "1.1.0"
    assert pull(client, cache, f"{NAME}@~1.0").name == "1.0.0"
    assert pull(client, cache, NAME).name == "2.0.0"
    assert pull(client, cache, f"{NAME}@^1", prereleases=True).name == "1.3.0-rc.1"
    recorder = Recorder()
    exact = pull(client, cache, f"{NAME}@1.2.0", progress=recorder)
    assert exact.name == "1.2.0"
    assert (exact / "solver.py").read_bytes() == b"# 1.2.0\n"
    assert any("yanked" in line and "broken weights" in line for line in recorder.lines), recorder.lines
    with pytest.raises(ResolutionError, match=r"matches \^3 .*2\.0\.0.*1\.2\.0 \(yanked\)"):
        pull(client, cache, f"{NAME}@^3")


def test_new_version_downloads_only_changed_blobs(alice: httpx.Client, hub: LiveHub, proxy: FaultyProxy,
                                                 client: HubClient, cache: Cache) -> None:
    publish_ok(alice, NAME, "1.0.0", FILES)
    b2 = data(300_000, 22)
    v2 = publish_ok(alice, NAME, "2.0.0", {**FILES, "weights/b.bin": b2})
    first = pull(client, cache, f"{NAME}@1.0.0")
    proxy.reset()

    second = pull(client, cache, f"{NAME}@2.0.0")

    fetched = proxy.file_requests()
    toml = next(f for f in v2["files"] if f["path"] == "cvflow.toml")  # its text names the version
    assert sorted(s.path.rsplit("/", 1)[-1] for s in fetched) == ["b.bin", "cvflow.toml"]
    assert sum(s.body_bytes for s in fetched) == len(b2) + toml["size"]
    hub.context.downloads.flush()  # downloads are counted in memory and written in batches
    with hub.client() as anonymous:
        assert anonymous.get(f"/api/v1/packages/{NAME}/versions/2.0.0").json()["downloads"] == 1  # one pull: its cvflow.toml
    assert (second / "weights" / "a.bin").stat().st_ino == (first / "weights" / "a.bin").stat().st_ino
    assert (second / "weights" / "b.bin").read_bytes() == b2


def test_cut_download_resumes_with_range(alice: httpx.Client, proxy: FaultyProxy, client: HubClient,
                                         cache: Cache) -> None:
    big = data(1_000_000, 7)
    publish_ok(alice, NAME, "1.0.0", {"weights/big.bin": big})
    proxy.cut_after, proxy.cuts_left = 250_000, 1
    recorder = Recorder()

    path = pull(client, cache, NAME, progress=recorder)

    tries = [s for s in proxy.file_requests() if s.path.endswith("big.bin")]
    assert [(s.range, s.status, s.body_bytes) for s in tries] == [
        (None, 200, 250_000), ("bytes=250000-", 206, 750_000)]
    assert sha256((path / "weights" / "big.bin").read_bytes()) == sha256(big)
    assert any("cut" in line for line in recorder.lines), recorder.lines


def test_killed_download_leaves_a_resumable_partial(alice: httpx.Client, proxy: FaultyProxy, client: HubClient,
                                                    cache: Cache) -> None:
    big = data(1_000_000, 8)
    publish_ok(alice, NAME, "1.0.0", {"weights/big.bin": big})
    proxy.cut_after, proxy.cuts_left = 200_000, 3  # every attempt of this pull is cut

    with pytest.raises(HubUnavailableError, match="stopped at 600000 of 1000000 bytes.*resume"):
        pull(client, cache, NAME)

    assert not blob(cache, big).exists(), "never a partial file where a complete one is expected"
    partial = cache.root / "tmp" / f"{sha256(big)}.incomplete"
    assert partial.read_bytes() == big[:600_000]
    assert not (cache.root / "snapshots" / "alice" / "detector" / "1.0.0").exists()
    proxy.reset()

    path = pull(client, cache, NAME)

    assert [s.range for s in proxy.file_requests() if s.path.endswith("big.bin")] == ["bytes=600000-"]
    assert (path / "weights" / "big.bin").read_bytes() == big
    assert not partial.exists()


def test_resume_survives_a_bad_partial_and_a_server_without_range(alice: httpx.Client, proxy: FaultyProxy,
                                                                  client: HubClient, tmp_path: Path) -> None:
    big = data(500_000, 12)
    publish_ok(alice, NAME, "1.0.0", {"weights/big.bin": big})
    digest = sha256(big)
    damaged, plain = Cache(tmp_path / "one"), Cache(tmp_path / "two")
    for cache, prefix in ((damaged, bytes(100_000)), (plain, big[:100_000])):
        (cache.root / "tmp").mkdir(parents=True)
        (cache.root / "tmp" / f"{digest}.incomplete").write_bytes(prefix)
    recorder = Recorder()

    path = pull(client, damaged, NAME, progress=recorder)  # the resumed bytes fail: start again, once

    assert (path / "weights" / "big.bin").read_bytes() == big
    assert [(s.range, s.status) for s in proxy.file_requests() if s.path.endswith("big.bin")] == [
        ("bytes=100000-", 206), (None, 200)]
    assert any("did not verify after resuming" in line for line in recorder.lines), recorder.lines
    proxy.reset()
    proxy.ignore_range = True

    path = pull(client, plain, NAME)  # a 200 to a Range request: the partial is dropped

    assert (path / "weights" / "big.bin").read_bytes() == big
    assert [(s.range, s.status, s.body_bytes) for s in proxy.file_requests() if s.path.endswith("big.bin")] == [
        ("bytes=100000-", 200, len(big))]


def test_wrong_bytes_from_the_hub_are_refused(alice: httpx.Client, proxy: FaultyProxy, client: HubClient,
                                              cache: Cache) -> None:
    publish_ok(alice, NAME, "1.0.0", FILES)
    proxy.flip_byte_at = 100

    with pytest.raises(IntegrityError, match="sha256.*nothing was stored"):
        pull(client, cache, NAME)

    for content in (A, B, C):
        assert not blob(cache, content).exists()
    assert list((cache.root / "tmp").glob("*.incomplete")) == []
    assert not (cache.root / "snapshots" / "alice" / "detector" / "1.0.0").exists()


def test_corrupted_cached_blob_is_detected_and_fetched_again(alice: httpx.Client, proxy: FaultyProxy,
                                                             client: HubClient, tmp_path: Path) -> None:
    publish_ok(alice, NAME, "1.0.0", FILES)
    path = pull(client, Cache(tmp_path / "cache"), NAME)
    stored = blob(Cache(tmp_path / "cache"), A)
    stored.chmod(0o644)
    with stored.open("r+b") as f:  # someone changes a byte of the cached weights
        f.seek(1000)
        f.write(bytes([A[1000] ^ 0xFF]))
    proxy.reset()
    recorder = Recorder()

    again = pull(client, Cache(tmp_path / "cache"), NAME, progress=recorder)  # a new process, as it were

    assert again == path
    assert [s.path.rsplit("/", 1)[-1] for s in proxy.file_requests()] == ["a.bin"]
    assert any("corrupted" in line and "weights/a.bin" in line for line in recorder.lines), recorder.lines
    assert (path / "weights" / "a.bin").read_bytes() == A
    assert stored.read_bytes() == A
    assert (path / "weights" / "a.bin").stat().st_ino == stored.stat().st_ino


def test_offline_uses_only_the_cache(alice: httpx.Client, client: HubClient, cache: Cache) -> None:
    with pytest.raises(OfflineError, match="alice/detector is not in the cache"):
        pull(None, cache, NAME, offline=True)
    publish_ok(alice, NAME, "1.0.0", {"solver.py": b"# one\n"})
    publish_ok(alice, NAME, "1.1.0", {"solver.py": b"# two\n"})
    pull(client, cache, f"{NAME}@1.0.0")
    newest = pull(client, cache, f"{NAME}@1.1.0")

    assert pull(None, cache, f"{NAME}@^1", offline=True) == newest
    with pytest.raises(OfflineError, match=r"no version of alice/detector in the cache matches \^2"):
        pull(None, cache, f"{NAME}@^2", offline=True)

    yank(alice, NAME, "1.1.0")
    pull(client, cache, f"{NAME}@1.0.0")  # online again: the saved metadata learns of the yank
    assert pull(None, cache, f"{NAME}@^1", offline=True).name == "1.0.0"


def test_concurrent_pulls_write_each_blob_once(alice: httpx.Client, proxy: FaultyProxy, tmp_path: Path) -> None:
    publish_ok(alice, NAME, "1.0.0", FILES)
    proxy.delay = 0.3  # both pulls are inside their downloads at the same time
    barrier = threading.Barrier(2)
    results: list[Path | BaseException] = []

    def one() -> None:
        with HubClient(proxy.url) as own_client:
            barrier.wait()
            try:
                results.append(pull(own_client, Cache(tmp_path / "cache"), NAME))
            except BaseException as exc:
                results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert len(results) == 2 and all(isinstance(r, Path) for r in results), results
    assert results[0] == results[1]
    names = [s.path.rsplit("/", 1)[-1] for s in proxy.file_requests()]
    assert sorted(names) == ["a.bin", "b.bin", "c.bin", "cvflow.toml", "solver.py"], "each blob written once"
    assert (results[0] / "weights" / "b.bin").read_bytes() == B  # type: ignore[operator]


def test_disk_full_is_clear_and_resumable(alice: httpx.Client, proxy: FaultyProxy, client: HubClient,
                                          cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full is simulated: ``cvflow.cache._write`` raises ENOSPC once a file reaches 300 kB.

    Filling a real filesystem needs a mount or loop device (root); this one case patches the
    single function through which downloads write, and everything else stays real.
    """
    big = data(1_000_000, 9)
    publish_ok(alice, NAME, "1.0.0", {"weights/big.bin": big})
    real_write = cvflow.cache._write
    limit = 300_000

    def full_disk(fd: int, chunk: bytes | memoryview) -> None:
        room = limit - os.fstat(fd).st_size
        if room < len(chunk):
            real_write(fd, memoryview(chunk)[: max(room, 0)])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(fd, chunk)

    monkeypatch.setattr(cvflow.cache, "_write", full_disk)
    with pytest.raises(DiskFullError, match=r"no space left on device while downloading .*big\.bin.*more needed"):
        pull(client, cache, NAME)

    assert not blob(cache, big).exists()
    partial = cache.root / "tmp" / f"{sha256(big)}.incomplete"
    assert partial.read_bytes() == big[:limit]
    monkeypatch.setattr(cvflow.cache, "_write", real_write)
    proxy.reset()

    path = pull(client, cache, NAME)

    assert [s.range for s in proxy.file_requests() if s.path.endswith("big.bin")] == [f"bytes={limit}-"]
    assert (path / "weights" / "big.bin").read_bytes() == big


def test_ls_and_prune(alice: httpx.Client, client: HubClient, cache: Cache) -> None:
    v1 = publish_ok(alice, NAME, "1.0.0", FILES)
    b2 = data(300_000, 22)
    v2 = publish_ok(alice, NAME, "2.0.0", {**FILES, "weights/b.bin": b2})
    old, new = pull(client, cache, f"{NAME}@1.0.0"), pull(client, cache, f"{NAME}@2.0.0")
    (cache.root / "tmp" / "stale.incomplete").write_bytes(b"x" * 1000)

    assert cache.ls() == [CachedVersion(NAME, "1.0.0", sum(f["size"] for f in v1["files"])),
                          CachedVersion(NAME, "2.0.0", sum(f["size"] for f in v2["files"]))]
    only_old = [f for f in v1["files"] if f["path"] in ("cvflow.toml", "weights/b.bin")]
    expected = sum(f["size"] for f in only_old) + 1000 + sum(
        (old / n).stat().st_size for n in (".cvflow-version.json", ".cvflow-stamps.json"))

    assert cache.prune({(NAME, "2.0.0")}, dry_run=True) == expected
    assert old.exists()
    assert cache.prune({(NAME, "2.0.0")}) == expected

    assert not old.exists()
    assert cache.ls() == [CachedVersion(NAME, "2.0.0", sum(f["size"] for f in v2["files"]))]
    assert not blob(cache, B).exists() and blob(cache, A).exists()
    assert cache.cached_snapshot(NAME, "2.0.0") == new
    assert (new / "weights" / "b.bin").read_bytes() == b2
    assert cache.prune(set()) > len(A) + len(b2) + len(C)
    assert cache.ls() == []
    assert list((cache.root / "blobs" / "sha256").iterdir()) == []


def test_presigned_redirects_are_followed_and_resumed(presigning_hub: LiveHub, tmp_path: Path) -> None:
    big = data(600_000, 11)
    publish_ok(presigning_hub.user_client("alice"), NAME, "1.0.0", {"weights/big.bin": big})
    cache = Cache(tmp_path / "cache")
    partial = cache.root / "tmp" / f"{sha256(big)}.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(big[:100_000])  # an earlier, killed download
    answers: list[tuple[str, str | None, int]] = []

    def record(response: httpx.Response) -> None:
        answers.append((response.url.path, response.request.headers.get("range"), response.status_code))

    http = httpx.Client(base_url=presigning_hub.url, follow_redirects=True, event_hooks={"response": [record]})
    with HubClient(presigning_hub.url, client=http) as client:
        path = pull(client, cache, NAME)

    assert (path / "weights" / "big.bin").read_bytes() == big
    hub_answer, store_answer = [a for a in answers if a[1] is not None]
    assert hub_answer == (f"/api/v1/packages/{NAME}/versions/1.0.0/files/weights/big.bin", "bytes=100000-", 302)
    assert store_answer[1:] == ("bytes=100000-", 206), "the store honoured the Range of the resumed download"
    assert not store_answer[0].startswith("/api/")


def test_progress_bars_draw_each_download(alice: httpx.Client, client: HubClient, cache: Cache) -> None:
    publish_ok(alice, NAME, "1.0.0", FILES)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)

    with transfer_bar(console=console) as bar:
        pull(client, cache, NAME, progress=bar)

    drawn = screen.getvalue()
    for path in ("alice/detector@1.0.0", "weights/a.bin", "weights/b.bin", "weights/c.bin"):
        assert path in drawn, drawn

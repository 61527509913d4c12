"""A batch also waits for connections that have just had their answer (``returning``): until they
send their next call, ask something else, close, or ``max_wait_ms`` passes. Over real HTTP with a
runner in this process, and on ``SolverWorker`` alone."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cvflow.runner.batching import SolverWorker
from cvflow.runner.server import Runner, RunnerSettings

MANIFEST = """[package]
name = "qa/batcher"
version = "0.1.0"
description = "answers each call with the size of its batch"

[[solvers]]
name = "count"
class = "batcher_for_returning_tests:Count"
batch = { max_size = 8, max_wait_ms = 30000 }
"""
MODULE = """class Count:
    def __init__(self, context):
        pass

    def infer(self, n: int) -> dict:
        return self.infer_batch([{"n": n}])[0]

    def infer_batch(self, calls: list) -> list:
        return [{"n": c["n"], "batch": len(calls)} for c in calls]
"""


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    (tmp_path / "cvflow.toml").write_text(MANIFEST)
    (tmp_path / "batcher_for_returning_tests.py").write_text(MODULE)
    r = Runner(RunnerSettings(package_dir=tmp_path, access_log=False))
    server = r.bind()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    r.load()
    yield r
    r.close(grace=1)


def post(conn: http.client.HTTPConnection, n: int) -> dict[str, Any]:
    conn.request("POST", "/solvers/count/infer", body=json.dumps({"n": n}), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 200, body
    return body  # type: ignore[no-any-return]


def queued(worker: SolverWorker, n: int) -> None:
    """Until ``n`` calls wait in the worker's queue (their thread leads and waits for the batch to fill)."""
    deadline = time.monotonic() + 10
    while len(worker._queue) != n:
        assert time.monotonic() < deadline, "the call never reached the queue"
        time.sleep(0.005)


def test_a_batch_waits_for_answered_connections_until_they_call_again_go_elsewhere_or_close(runner: Runner) -> None:
    worker = runner.solvers["count"].worker
    a = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=20)
    b = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=20)
    with ThreadPoolExecutor(1) as pool:
        assert post(a, 1) == {"n": 1, "batch": 1}  # alone: nobody else is on the way

        # a has had its answer: b's call waits for a's next one, and they run as one batch.
        second: Future[dict[str, Any]] = pool.submit(post, b, 2)
        queued(worker, 1)
        assert post(a, 3) == {"n": 3, "batch": 2}
        assert second.result(timeout=10) == {"n": 2, "batch": 2}

        # a asks for something else: b's call stops waiting for it (long before max_wait_ms).
        third = pool.submit(post, b, 4)
        queued(worker, 1)
        a.request("GET", "/healthz")
        assert a.getresponse().read() == b'{"status":"ok"}'
        assert third.result(timeout=10) == {"n": 4, "batch": 1}

        # b closes its connection: a's call stops waiting for it.
        fourth = pool.submit(post, a, 5)
        queued(worker, 1)
        b.close()
        assert fourth.result(timeout=10) == {"n": 5, "batch": 1}
    a.close()
    assert worker.stats_dict()["batch_sizes"] == {"1": 3, "2": 1}


def test_a_connection_that_does_not_come_back_holds_the_batch_no_longer_than_max_wait() -> None:
    worker = SolverWorker("s", lambda n: n, lambda calls: [c["n"] for c in calls], max_size=8, max_wait_ms=100)
    with worker.arriving(returns=True) as first:
        assert worker.call({"n": 1}, timeout=5, arrival=first) == 1
    assert worker._returning == 1  # answered: its connection may bring the next call
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(worker.call, {"n": 2}, timeout=5).result(timeout=5) == 2
    assert worker._returning == 0 and worker.stats.batch_sizes == {1: 2}

    # Passed as ``after`` to the connection's next arrival, it is counted no more, at the same instant.
    with worker.arriving(returns=True) as first:
        worker.call({"n": 3}, timeout=5, arrival=first)
    with worker.arriving(first, returns=True) as second:
        assert worker._returning == 0 and worker._arriving == 1
        worker.call({"n": 4}, timeout=5, arrival=second)
    assert worker._returning == 1 and second.returning
    second.release()
    assert worker._returning == 0

    # Released before its answer (its connection closed meanwhile), an arrival is never counted.
    with worker.arriving(returns=True) as third:
        third.release()
        worker.call({"n": 5}, timeout=5, arrival=third)
    assert worker._returning == 0 and not third.returning


def test_only_batching_solvers_count_returning_connections() -> None:
    worker = SolverWorker("s", lambda n: n, None, max_size=8, max_wait_ms=100)  # no infer_batch
    with worker.arriving(returns=True) as arrival:
        worker.call({"n": 1}, timeout=5, arrival=arrival)
    assert worker._returning == 0

"""A solver's calls: one batch at a time, batches only while calls are arriving, failures isolated."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cvflow.runner.batching import CallTimeout, QueueFull, SolverWorker


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()

    def infer(self, n: int) -> int:
        return self.infer_batch([{"n": n}])[0]

    def infer_batch(self, calls: list[dict[str, Any]]) -> list[int]:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
            self.batches.append([c["n"] for c in calls])
        if any(c["n"] < 0 for c in calls):
            raise ValueError("negative")
        return [c["n"] * 10 for c in calls]


def test_a_lone_call_runs_at_once_on_the_calling_thread():
    seen = []
    worker = SolverWorker("s", lambda n: seen.append(threading.current_thread()) or n, None, max_size=8,
                          max_wait_ms=5000)
    start = time.perf_counter()
    assert worker.call({"n": 1}, timeout=5) == 1
    assert time.perf_counter() - start < 1  # nobody else was arriving: no wait for the batch to fill
    assert seen == [threading.current_thread()]


def test_calls_that_queue_behind_a_batch_run_together_and_never_concurrently():
    solver = Recorder(delay=0.1)
    worker = SolverWorker("s", solver.infer, solver.infer_batch, max_size=4, max_wait_ms=0)
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda n: worker.call({"n": n}, timeout=10), range(10)))
    assert results == [n * 10 for n in range(10)]
    assert solver.most_active == 1
    assert max(len(b) for b in solver.batches) == 4 and sorted(sum(solver.batches, [])) == list(range(10))
    assert worker.stats.requests == 10 and worker.stats.batches == len(solver.batches)


def test_the_batch_waits_for_calls_still_arriving_but_no_longer_than_max_wait():
    solver = Recorder()
    worker = SolverWorker("s", solver.infer, solver.infer_batch, max_size=8, max_wait_ms=2000)

    def late_arrival() -> int:
        with worker.arriving():
            time.sleep(0.2)  # receiving and decoding
        return worker.call({"n": 2}, timeout=10)

    with ThreadPoolExecutor(2) as pool:
        late = pool.submit(late_arrival)
        time.sleep(0.05)
        first = pool.submit(worker.call, {"n": 1}, timeout=10)
        assert (first.result(), late.result()) == (10, 20)
    assert solver.batches == [[1, 2]]

    # An arrival that never submits: the batch goes after max_wait_ms.
    worker = SolverWorker("s", solver.infer, solver.infer_batch, max_size=8, max_wait_ms=100)
    with worker.arriving():
        start = time.perf_counter()
        assert worker.call({"n": 3}, timeout=10) == 30
        assert 0.09 < time.perf_counter() - start < 1.5


def test_a_failing_batch_is_retried_call_by_call():
    solver = Recorder(delay=0.05)
    worker = SolverWorker("s", solver.infer, solver.infer_batch, max_size=8, max_wait_ms=0)

    def call(n: int) -> Any:
        try:
            return worker.call({"n": n}, timeout=10)
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(5) as pool:
        assert list(pool.map(call, [1, 2, -1, 3, 4])) == [10, 20, "negative", 30, 40]


def test_queue_limit_and_timeout():
    gate = threading.Event()
    worker = SolverWorker("s", lambda n: gate.wait(10) and n, None, max_queue=1)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(worker.call, {"n": 1}, timeout=10)  # runs, and blocks in the solver
        time.sleep(0.1)
        queued = pool.submit(worker.call, {"n": 2}, timeout=10)  # waits in the queue (max_queue=1)
        time.sleep(0.1)
        with pytest.raises(QueueFull, match="1 calls are queued for solver s"):
            worker.call({"n": 3}, timeout=1)
        gate.set()
        assert (running.result(), queued.result()) == (1, 2)

    gate.clear()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(worker.call, {"n": 4}, timeout=10)
        time.sleep(0.1)
        with pytest.raises(CallTimeout, match="did not answer within 0.2 s"):
            worker.call({"n": 5}, timeout=0.2)  # queued behind the running call, then dropped
        gate.set()
        assert running.result() == 4
    assert worker.stats.requests == 3  # the dropped call never ran

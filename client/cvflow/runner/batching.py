"""Calls to one solver, one batch at a time: a queue, and the connection threads take turns running it.

A solver's code never runs on two threads at once (most model code is not written for
that), whatever the number of HTTP connections. There is no thread of the solver's own:
a connection thread queues its call and, if no one is running the solver, runs it itself,
taking up to ``max_size`` queued calls as one batch (``infer_batch``), until its own call
is done; meanwhile the others wait for their results or for their turn. At concurrency 1 a
call thus runs on the thread that received it, with no hand-over between threads; under
load, the calls that queued while one batch ran form the next. (A dedicated solver thread
costs two thread wake-ups per request, which on two cores weighed more than the model.)
Each waiting caller sleeps on a gate of its own: a finished batch wakes exactly its callers,
and the turn passes to the oldest waiting call. (One shared condition woke every waiter after
every batch; under load that alone took a third of the runner's time.)

Batches form only for a solver whose manifest has ``batch = {max_size, max_wait_ms}`` and
that defines ``infer_batch``. The thread running it waits for a batch to fill only while
more calls for the solver are on their way, and never longer than ``max_wait_ms``: a lone
request does not wait at all. A call is on its way while another connection receives or
decodes it (``arriving``), and also, for up to ``max_wait_ms``, once a connection has had
its answer and not yet sent its next request (``returning``): clients in a loop send the
next call as soon as the answer is in, and on a busy runner the first of them to come
back would otherwise run alone while the others are still reading their answers and
sending again (under 16 connections on one core, most batches were of one call). The
wait costs nothing while the others are being received, which keeps the CPU busy; a
connection that goes quiet, asks something else or closes stops being counted.

When ``infer_batch`` raises, each call of that batch is run again alone with ``infer``, so
one bad input fails its own request only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("cvflow.runner")


class QueueFull(Exception):
    """The solver's queue holds ``max_queue`` calls already."""


class CallTimeout(Exception):
    """The call did not finish within its time limit."""


@dataclass
class Stats:
    requests: int = 0
    errors: int = 0
    batches: int = 0
    largest_batch: int = 0
    busy_seconds: float = 0.0
    batch_sizes: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "batches": self.batches,
                "largest_batch": self.largest_batch, "busy_seconds": round(self.busy_seconds, 6),
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())}}


class Arrival:
    """A call on its way to a solver (see ``SolverWorker.arriving``), then, when it ``returns``,
    its connection after the answer, which may bring the next call (see ``release``)."""

    __slots__ = ("expires", "pending", "returning", "returns", "worker")

    def __init__(self, worker: SolverWorker, returns: bool) -> None:
        self.worker = worker
        self.pending = True
        self.returns = returns  # counted as returning once answered, until released or expired
        self.returning = False
        self.expires = 0.0

    def release(self) -> None:
        """The connection will not bring the solver its next call (it asked something else, or
        closed): a batch no longer waits for it. Idempotent."""
        self.worker._release(self)


class _Call:
    """A queued call, and the gate its caller sleeps on until the call is done or it is its turn
    to run the solver. Every call has its own gate, so a batch wakes exactly its own callers."""

    __slots__ = ("arrival", "future", "gate", "kwargs", "lead", "woken")

    def __init__(self, kwargs: dict[str, Any], arrival: Arrival | None) -> None:
        self.kwargs = kwargs
        self.arrival = arrival
        self.future: Future[Any] = Future()
        self.gate = threading.Lock()
        self.gate.acquire()
        self.lead = False
        self.woken = False

    def wake(self) -> None:  # under the worker's lock
        if not self.woken:
            self.woken = True
            self.gate.release()


class SolverWorker:
    """Runs calls to one solver, in batches when the solver can take them."""

    def __init__(self, name: str, infer: Callable[..., Any] | None,
                 infer_batch: Callable[[list[dict[str, Any]]], list[Any]] | None, *,
                 max_size: int = 1, max_wait_ms: float = 0.0, max_queue: int = 1024) -> None:
        if infer is None and infer_batch is None:
            raise ValueError("a solver needs infer or infer_batch")
        self.name = name
        self._infer = infer
        self._infer_batch = infer_batch if max_size > 1 or infer is None else None
        self.max_size = max(1, max_size) if infer_batch is not None else 1
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self.max_queue = max_queue
        self.stats = Stats()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # only the thread filling a batch waits on it
        self._queue: deque[_Call] = deque()
        self._arriving = 0
        self._returns: deque[Arrival] = deque()  # answered calls that may come back, by expiry
        self._returning = 0  # how many of them are still counted
        self._running = False  # a thread is running the solver, or has been handed the turn

    @contextlib.contextmanager
    def arriving(self, after: Any = None, *, returns: bool = False) -> Iterator[Arrival]:
        """Held by a connection thread while it receives and decodes a call for this solver; pass
        the arrival to ``call``, which ends it as the call joins the queue (at the same instant, so
        a batch waiting for arrivals never misses it).

        ``after``: the connection's previous arrival (or anything with ``release()``), released as
        this one starts (for this solver at the same instant, so it is counted throughout). ``returns``: once answered,
        the connection counts as returning until the caller releases the arrival, passes it
        as ``after``, or ``max_wait_ms`` passes; give it only when something will release it.
        """
        mine = isinstance(after, Arrival) and after.worker is self
        if after is not None and not mine:
            after.release()
        arrival = Arrival(self, returns and self.max_size > 1 and self.max_wait > 0)
        with self._lock:
            self._arriving += 1
            if mine:
                self._unreturn(after)
        try:
            yield arrival
        finally:
            with self._lock:
                self._depart(arrival)

    def _depart(self, arrival: Arrival | None) -> None:  # under the lock
        if arrival is not None and arrival.pending:
            arrival.pending = False
            self._arriving -= 1
            if not self._arriving and not self._returning:
                self._arrived.notify()  # a batch waiting for arrivals need not wait longer

    def _unreturn(self, arrival: Arrival) -> None:  # under the lock
        if arrival.returning:
            arrival.returning = False
            self._returning -= 1

    def _release(self, arrival: Arrival) -> None:
        with self._lock:
            arrival.returns = False  # released before its answer: it will not be counted either
            if arrival.returning:
                self._unreturn(arrival)
                if not self._arriving and not self._returning:
                    self._arrived.notify()

    def _still_returning(self, now: float) -> int:  # under the lock
        """How many answered connections may still bring a call; drops the expired and released."""
        returns = self._returns
        while returns and (not returns[0].returning or returns[0].expires <= now):
            self._unreturn(returns.popleft())
        return self._returning

    def call(self, kwargs: dict[str, Any], *, timeout: float, arrival: Arrival | None = None) -> Any:
        """Run one call and return its result (or raise the solver's exception).

        Raises:
            QueueFull: ``max_queue`` calls are waiting already.
            CallTimeout: no result within ``timeout`` seconds (the call is dropped if it had not started).
        """
        call = _Call(kwargs, arrival)
        with self._lock:
            self._depart(arrival)
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} calls are queued for solver {self.name}")
            self._queue.append(call)
            if not self._running:
                self._running = call.lead = True
            elif len(self._queue) >= self.max_size:
                self._arrived.notify()  # the batch is full (``_depart`` tells when none is on its way)
        if not call.lead and not call.gate.acquire(timeout=timeout):
            with self._lock:
                if not call.lead:
                    if call in self._queue:
                        self._queue.remove(call)
                    call.future.cancel()
                    raise CallTimeout(f"solver {self.name} did not answer within {timeout:g} s")
                # Handed the turn just as the time ran out: run the solver anyway, the others wait on it.
        if not call.lead:
            return call.future.result()
        try:
            while not call.future.done():  # this thread runs the solver until its own call is done
                self._run(self._take())
        finally:
            with self._lock:
                if self._queue:  # the turn passes to the oldest waiting call
                    successor = self._queue[0]
                    successor.lead = True
                    successor.wake()
                else:
                    self._running = False
        return call.future.result()

    def _take(self) -> list[_Call]:
        with self._lock:
            if self.max_size > 1 and len(self._queue) < self.max_size and (self._arriving or self._returning):
                now = time.monotonic()
                deadline = now + self.max_wait
                while len(self._queue) < self.max_size:
                    returning = self._still_returning(now)
                    if not self._arriving and not returning:
                        break
                    left = deadline - now
                    if left <= 0:
                        break
                    if not self._arriving:  # only returning ones: no longer than the first of them counts
                        left = min(left, self._returns[0].expires - now)
                    self._arrived.wait(left)
                    now = time.monotonic()
            n = min(self.max_size, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _run(self, batch: list[_Call]) -> None:
        live = [c for c in batch if c.future.set_running_or_notify_cancel()]
        if live:
            start = time.perf_counter()
            self._call(live)
            seconds = time.perf_counter() - start
        with self._lock:
            now = time.monotonic()
            self._still_returning(now)
            for c in batch:  # answered at the same instant, so a batch formed next counts them
                a = c.arrival
                if a is not None and a.returns and not a.returning:
                    a.returning, a.expires = True, now + self.max_wait
                    self._returns.append(a)
                    self._returning += 1
            if live:
                s = self.stats
                s.batches += 1
                s.requests += len(live)
                s.largest_batch = max(s.largest_batch, len(live))
                s.busy_seconds += seconds
                s.batch_sizes[len(live)] = s.batch_sizes.get(len(live), 0) + 1
            for c in batch:
                if not c.lead:
                    c.wake()  # its result is in

    def _call(self, batch: list[_Call]) -> None:
        if self._infer_batch is not None and (len(batch) > 1 or self._infer is None):
            try:
                results = self._infer_batch([c.kwargs for c in batch])
                if not isinstance(results, list | tuple) or len(results) != len(batch):
                    got = len(results) if isinstance(results, list | tuple) else type(results).__name__
                    raise TypeError(f"infer_batch returned {got} results for {len(batch)} calls")
            except Exception as exc:
                if self._infer is None or len(batch) == 1:
                    for c in batch:
                        c.future.set_exception(exc)
                    return
                log.warning("solver %s: infer_batch failed on %d calls (%s: %s); running them one by one",
                            self.name, len(batch), type(exc).__name__, exc)
            else:
                for c, result in zip(batch, results, strict=True):
                    c.future.set_result(result)
                return
        infer = self._infer
        assert infer is not None, "a worker without infer_batch has infer (__init__)"
        for c in batch:
            try:
                c.future.set_result(infer(**c.kwargs))
            except Exception as exc:
                c.future.set_exception(exc)

    def stats_dict(self) -> dict[str, Any]:
        with self._lock:
            return self.stats.to_dict()

    def count_error(self) -> None:
        with self._lock:
            self.stats.errors += 1

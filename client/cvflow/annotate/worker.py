"""``cvflow annotate suggest``: a suggestion worker for one project.

The loop (docs/annotation.md, "Suggestions")::

    claim a batch (POST .../suggestions/claim)  ->  the model (package, version, solver) and items
    install that exact version if needed, and serve it (a runner already serving it is reused)
    for each item, on ``concurrency`` threads: GET its image from the hub, POST it to the runner
    map each output with ``outputs.to_suggestions``  ->  POST .../suggestions with the model version

It ends when a claim hands out nothing (``follow``: it waits, backing off, and claims again),
and stops the runners it started. Items are processed concurrently so that the runner forms
batches of them (``cvflow.runner.batching``) and fetching one image overlaps running another; a
batch's suggestions are posted while the next batch is claimed and run.

Failures: a transient hub error (no connection, 5xx, 408, 429) is retried with the download
loop's backoff (:class:`cvflow.transfer.RetryPolicy`), and forever under ``follow``; an image the
runner refuses or a solver error fails that item only (its lease expires on the hub and another
claim retries it); an output unlike the solver's ``suggest`` declaration, or a runner that died,
stops the worker. On Ctrl-C the runners it started are stopped; the items it held return to the
queue when their leases expire.
"""

from __future__ import annotations

import concurrent.futures as cf
import io
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from cvflow.annotate.outputs import Mapped, SuggestOutputError, to_suggestions
from cvflow.errors import CVFlowError, HubConflictError, HubError, HubNotFoundError, HubUnavailableError
from cvflow.manifest import MANIFEST_FILENAME, Suggest, parse_manifest
from cvflow.progress import Transfer
from cvflow.safeparse import loads_json
from cvflow.transfer import RetryPolicy, is_transient

if TYPE_CHECKING:
    from cvflow.api import HubClient
    from cvflow.config import Config
    from cvflow.install import InstalledPackage
    from cvflow.runtime.state import RunnerRecord

T = TypeVar("T")
Log = Callable[[str], None]

#: Retries of one hub call before a worker that does not follow gives up (about two minutes).
HUB_POLICY = RetryPolicy(attempts=8, base=0.5, cap=15.0, max_wait=120.0)


class WorkerError(CVFlowError):
    """The worker cannot go on: no suggestion model, a solver that breaks its declaration, a dead runner."""

    code = "worker_error"


class ItemFailed(Exception):
    """The runner refused one image, or its solver failed on it; only that item is affected."""


@dataclass(frozen=True)
class Model:
    """The suggestion model a claim names: one exact package version and one of its solvers."""

    package: str
    version: str
    solver: str

    def __str__(self) -> str:
        return f"{self.package}@{self.version}:{self.solver}"


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


@dataclass
class WorkerOptions:
    batch: int = 16  # items per claim
    follow: bool = False
    name: str = field(default_factory=default_worker_name)
    lease: int | None = None  # seconds; None: the hub's default
    concurrency: int | None = None  # requests in flight to the runner; None: from the solver's batch policy
    idle_min: float = 1.0  # --follow: the first wait after an empty claim, doubled up to idle_max
    idle_max: float = 30.0
    ready_timeout: float = 300.0
    policy: RetryPolicy = HUB_POLICY


@dataclass
class Summary:
    """What a worker did. ``suggest_seconds`` is the time spent claiming, suggesting and posting:
    installing and starting models, and waiting for work, are left out."""

    items: int = 0
    suggestions: int = 0
    failed: int = 0
    skipped: int = 0  # posted, but the hub did not store them
    batches: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    models: list[str] = field(default_factory=list)
    seconds: float = 0.0
    suggest_seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.suggest_seconds if self.suggest_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "suggestions": self.suggestions, "failed": self.failed, "skipped": self.skipped,
                "batches": self.batches, "dropped": dict(self.dropped), "models": list(self.models),
                "seconds": round(self.seconds, 3), "suggest_seconds": round(self.suggest_seconds, 3),
                "items_per_second": round(self.items_per_second, 3)}


class Served:
    """A runner serving one model version's solver, and how to call it."""

    def __init__(self, model: Model, record: RunnerRecord, suggest: Suggest, concurrency: int, *,
                 started: bool) -> None:
        self.model = model
        self.record = record
        self.suggest = suggest
        self.concurrency = concurrency
        self.started = started  # by this worker, which stops it
        self.claimed = model  # the model as the hub named it (its solver may be unnamed)
        self.url = f"{record.url}/solvers/{model.solver}/infer"
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.http = httpx.Client(timeout=httpx.Timeout(330.0, connect=5.0), trust_env=False, limits=limits)

    def infer(self, image: bytes) -> Any:
        """The solver's output for one image (its raw bytes are the request's body).

        Raises:
            ItemFailed: the runner refused the image, or the solver raised on it.
            WorkerError: the runner is gone.
        """
        ctype = "image/png" if image.startswith(b"\x89PNG") else "image/jpeg"
        for attempt in range(1, 31):
            try:
                response = self.http.post(self.url, content=image, headers={"content-type": ctype})
            except httpx.TransportError as exc:
                if not self.record.is_alive():
                    raise WorkerError(f"the runner for {self.model} stopped (its log: {self.record.log})") from exc
                if attempt >= 3:
                    raise WorkerError(f"the runner for {self.model} at {self.record.url} does not answer: {exc}"
                                      ) from exc
                time.sleep(0.5 * attempt)
                continue
            if response.status_code == 503 and attempt < 30:  # busy (its queue is full) or still loading
                time.sleep(min(2.0, 0.05 * 2 ** attempt))
                continue
            if response.status_code >= 400:
                raise ItemFailed(_runner_error(response))
            try:
                return loads_json(response.content)
            except (ValueError, UnicodeDecodeError) as exc:
                raise ItemFailed(f"the runner's answer is not JSON: {exc}") from None
        raise ItemFailed("the runner stayed busy")  # unreachable in practice: the loop returns or raises

    def close(self) -> None:
        self.http.close()


def _runner_error(response: httpx.Response) -> str:
    try:
        error = loads_json(response.content)["error"]
        return f"{error['message']} [{error['code']}]"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"HTTP {response.status_code}"


class SuggestWorker:
    """Suggestions for one project until nothing is left (or, following, until stopped).

    ``install`` and ``start`` default to the client's own machinery (``cvflow install``,
    ``cvflow run``); ``log`` receives the progress lines.
    """

    def __init__(self, client: HubClient, config: Config, project: str, options: WorkerOptions | None = None, *,
                 log: Log | None = None, progress: Transfer | None = None) -> None:
        self.client = client
        self.config = config
        self.project = project
        self.options = options or WorkerOptions()
        self.log = log or (lambda _: None)
        self.progress = progress
        self.summary = Summary()
        self.served: Served | None = None
        self._posting: cf.Future[None] | None = None
        self._lock = threading.Lock()  # the summary: the posting thread counts too

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> Summary:
        """Claim, suggest and post until a claim is empty (or forever with ``follow``).

        Raises:
            WorkerError: no suggestion model (``no_suggestion_model``), a solver whose output
                breaks its declaration, a runner that died.
            HubError: the hub refused (not found, not allowed), or stayed unreachable.
        """
        started = time.monotonic()
        doc = self._hub(lambda: self.client.project(self.project), "reading the project")
        task, classes = str(doc.get("task") or "detection"), list(doc.get("classes") or [])
        idle = self.options.idle_min
        poster = cf.ThreadPoolExecutor(1, thread_name_prefix="cvflow-post")
        try:
            while True:
                asked = time.monotonic()
                claim = self._claim()
                claiming = time.monotonic() - asked
                items = claim.get("items") or []
                if not items:
                    if not self.options.follow:
                        break
                    self._finish_post()
                    time.sleep(idle)
                    idle = min(idle * 2, self.options.idle_max)
                    # Meanwhile an owner may have added classes (they are only ever appended).
                    doc = self._hub(lambda: self.client.project(self.project), "reading the project", forever=True)
                    classes = list(doc.get("classes") or classes)
                    continue
                idle = self.options.idle_min
                served = self._serve(_model_of(claim), task)
                begun = time.monotonic()
                results = self._suggest(served, items, classes)
                self._finish_post()
                self._posting = poster.submit(self._post, served.model, results, len(items))
                self.summary.suggest_seconds += claiming + time.monotonic() - begun
            begun = time.monotonic()
            self._finish_post()
            self.summary.suggest_seconds += time.monotonic() - begun
        finally:
            poster.shutdown(wait=True, cancel_futures=True)
            self.close()
            self.summary.seconds = time.monotonic() - started
        return self.summary

    def _claim(self) -> dict[str, Any]:
        def claim() -> dict[str, Any]:
            return self.client.claim_suggestions(self.project, limit=self.options.batch, worker=self.options.name,
                                                 lease_seconds=self.options.lease)

        try:
            return self._hub(claim, "claiming items", forever=self.options.follow)
        except HubConflictError as exc:
            if exc.code == "no_suggestion_model":
                raise WorkerError(f"{self.project} has no suggestion model to run: {exc.message}. Set one with"
                                  " `cvflow annotate create ... --suggest NS/NAME --solver S` (or the project's"
                                  " settings page), and publish a version in its range") from exc
            raise

    def _suggest(self, served: Served, items: list[dict[str, Any]], classes: list[str]) -> list[dict[str, Any]]:
        """Each item's suggestions, in claim order; failed items are left out (and counted)."""
        results: list[dict[str, Any]] = []
        with cf.ThreadPoolExecutor(served.concurrency, thread_name_prefix="cvflow-suggest") as pool:
            futures = [pool.submit(self._one, served, item, classes) for item in items]
            try:
                for item, future in zip(items, futures, strict=True):
                    try:
                        mapped = future.result()
                    except ItemFailed as exc:
                        with self._lock:
                            self.summary.failed += 1
                        self.log(f"item {item.get('id')} ({item.get('file_name', '?')}): {exc}; it is left for"
                                 " another try when its lease expires")
                        continue
                    results.append({"item": item["id"], "suggestions": mapped.suggestions})
                    with self._lock:
                        self.summary.dropped.update(mapped.dropped)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return results

    def _one(self, served: Served, item: dict[str, Any], classes: list[str]) -> Mapped:
        item_id = int(item["id"])
        try:
            image = self._hub(lambda: self.client.item_image(self.project, item_id),
                              f"fetching item {item_id}'s image")
        except HubNotFoundError as exc:
            if exc.code == "item_not_found":  # removed since the claim
                raise ItemFailed(exc.message) from None
            raise
        width, height = item.get("width"), item.get("height")
        if not isinstance(width, int) or not isinstance(height, int):
            width, height = _size_of(image, item_id)
        output = served.infer(image)
        try:
            return to_suggestions(output, served.suggest, classes, width, height)
        except SuggestOutputError as exc:
            raise WorkerError(f"{served.model}: {exc.message}") from None

    def _post(self, model: Model, results: list[dict[str, Any]], claimed: int) -> None:
        skipped = 0
        if results:
            answer = self._hub(lambda: self.client.post_suggestions(
                self.project, worker=self.options.name, model_version=model.version, results=results),
                "posting suggestions")
            skipped = int(answer.get("skipped") or 0)
        count = sum(len(r["suggestions"]) for r in results)
        s = self.summary
        with self._lock:
            s.items += len(results) - skipped
            s.skipped += skipped
            s.suggestions += count
            s.batches += 1
            rate = s.items_per_second
        note = f", {skipped} skipped by the hub (saved or taken meanwhile, or a newer model)" if skipped else ""
        self.log(f"{model}: {len(results)} of {claimed} items suggested ({count} suggestions{note});"
                 f" {s.items} in all, {rate:.1f} items/s")

    def _finish_post(self) -> None:
        if self._posting is not None:
            posting, self._posting = self._posting, None
            posting.result()

    # -- the model ------------------------------------------------------------------------

    def _serve(self, claimed: Model, task: str) -> Served:
        if self.served is not None and self.served.claimed == claimed:
            return self.served
        if self.served is not None:
            self.log(f"the project moved from {self.served.model.version} to {claimed.version}")
            self._release()
        installed = self._installed(claimed)
        model, suggest, max_size = self._declaration(installed, claimed, task)
        concurrency = self.options.concurrency or min(self.options.batch, max(4, max_size))
        record = self._running(model)
        if record is not None:
            self.log(f"using the runner {record.name} already serving {model} at {record.url}")
            self.served = Served(model, record, suggest, concurrency, started=False)
            self.served.claimed = claimed
        else:
            from cvflow.runtime import supervisor

            self.log(f"starting {model}")
            record = supervisor.start(self.config, installed, [model.solver],
                                      supervisor.RunOptions(ready_timeout=self.options.ready_timeout))
            self.log(f"{model} is ready as runner {record.name} at {record.url}")
            self.served = Served(model, record, suggest, concurrency, started=True)
            self.served.claimed = claimed
        if str(model) not in self.summary.models:
            self.summary.models.append(str(model))
        return self.served

    def _installed(self, model: Model) -> InstalledPackage:
        from cvflow.install import install, list_installed

        for record in list_installed(self.config):
            if (record.name, record.version) == (model.package, model.version):
                return record
        self.log(f"installing {model.package}@{model.version}")
        lock = self.config.state_dir / "annotate" / f"{model.package.replace('/', '--')}@{model.version}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        report = install(self.client, self.config.cache(), self.config, f"{model.package}@={model.version}",
                         lock_path=lock, progress=self.progress)
        return next(p for p in report.packages if p.name == model.package)

    def _declaration(self, installed: InstalledPackage, model: Model, task: str) -> tuple[Model, Suggest, int]:
        """The model with its solver named, the solver's ``suggest`` declaration (the task's
        default when it has none) and its batch size."""
        manifest = parse_manifest((Path(installed.snapshot) / MANIFEST_FILENAME).read_text(encoding="utf-8"))
        names = ", ".join(s.name for s in manifest.solvers) or "none"
        if model.solver:
            solver = next((s for s in manifest.solvers if s.name == model.solver), None)
        else:  # the project names no solver: the package's one solver, or its one that declares suggest
            declaring = [s for s in manifest.solvers if s.suggest is not None]
            only = declaring if len(declaring) == 1 else manifest.solvers if len(manifest.solvers) == 1 else []
            solver = only[0] if only else None
            if solver is None:
                raise WorkerError(f"{self.project} names no solver of {model.package}, which has several ({names});"
                                  " name one in the project's settings")
            model = Model(model.package, model.version, solver.name)
        if solver is None:
            raise WorkerError(f"{model.package}@{model.version} has no solver {model.solver!r} (it has: {names})")
        suggest = solver.suggest
        if suggest is None:
            suggest = Suggest("scores", "scores") if task == "classification" else Suggest("boxes", "boxes")
            kind = suggest.kind
            self.log(f"{model} declares no suggest; reading its output as {{\"{kind}\": ...}}"
                     f" (declare `suggest = {{ kind = \"{kind}\", ... }}` in its cvflow.toml)")
        return model, suggest, solver.batch.max_size if solver.batch else 1

    def _running(self, model: Model) -> RunnerRecord | None:
        from cvflow.runtime import supervisor
        from cvflow.runtime.state import RunnerState

        for record in RunnerState(self.config.state_dir).all():
            if ((record.package, record.version) == (model.package, model.version) and model.solver in record.solvers
                    and supervisor.status(record) == "ready"):
                return record
        return None

    def _release(self) -> None:
        served, self.served = self.served, None
        if served is None:
            return
        served.close()
        if served.started:
            from cvflow.runtime import supervisor

            outcome = supervisor.stop(self.config, served.record)
            self.log(f"runner {served.record.name} for {served.model}: {outcome}")

    def close(self) -> None:
        """Stop the runner this worker started (one it found running stays)."""
        self._release()

    # -- the hub --------------------------------------------------------------------------

    def _hub(self, call: Callable[[], T], what: str, *, forever: bool = False) -> T:
        """``call()``, tried again on transient failures with backoff (``forever``: without end)."""
        policy = self.options.policy
        failures, waited = 0, 0.0
        while True:
            try:
                return call()
            except HubError as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                wait = policy.backoff(failures) if not forever else min(self.options.idle_max, 2.0 ** failures)
                if not forever and (failures >= policy.attempts or waited + wait > policy.max_wait):
                    raise HubUnavailableError(f"{what} failed {failures} times ({exc.message}); giving up",
                                              code=exc.code, status=exc.status) from exc
                self.log(f"{what} failed ({exc.message}); trying again in {wait:.1f} s")
                policy.sleep(wait)
                waited += wait


def _model_of(claim: dict[str, Any]) -> Model:
    model = claim.get("model")
    if not isinstance(model, dict):
        raise WorkerError("the hub's claim names no model; is it a CVFlow hub of this version?")
    try:
        solver = model["solver"]
        return Model(str(model["package"]), str(model["version"]), "" if solver is None else str(solver))
    except KeyError as exc:
        raise WorkerError(f"the hub's claim names no model {exc.args[0]}") from None


def _size_of(image: bytes, item_id: int) -> tuple[int, int]:
    from cvflow.datasets.images import ImageProblem, read_header_from

    try:
        header = read_header_from(io.BytesIO(image), len(image), where=f"item {item_id}")
    except ImageProblem as exc:
        raise ItemFailed(exc.problem.message) from None
    return header.width, header.height

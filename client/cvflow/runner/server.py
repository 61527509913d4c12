"""The runner: its routes over ``protocol``'s HTTP/1.1 server (a thread per connection, keep-alive).

Routes::

    GET  /                         the package, its version, its solvers (inputs, batching, counters)
    GET  /healthz                  200 while the process answers
    GET  /readyz                   200 once every solver is loaded, 503 before
    GET  /openapi.json             the OpenAPI 3.1 document, built from the solvers' type hints
    GET  /docs                     that document as a readable page (``cvflow.openapi_html``)
    POST /solvers/{solver}/infer   run a solver (multipart, JSON, or a raw image body)
    GET  /v2/...  POST /v2/models/{solver}[/versions/{v}]/infer   the KServe v2 protocol (see ``kserve``)
    GET  /health  POST /setup /predict /webhook /train   Label Studio's ML backend protocol, only
                                   with ``--label-studio URL`` (see ``label_studio``)

A connection thread receives, parses and decodes a request on its own, then queues the call
for the solver (``batching``): decoding runs on many threads, the solver on one at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cvflow import __version__, openapi_html
from cvflow.runner import kserve
from cvflow.runner.batching import Arrival, CallTimeout, QueueFull
from cvflow.runner.errors import RunnerError
from cvflow.runner.images import ImagePolicy
from cvflow.runner.label_studio import ROUTES as LABEL_STUDIO_ROUTES
from cvflow.runner.label_studio import LabelStudioBackend, LabelStudioSettings
from cvflow.runner.loader import LoadedSolver, PackageInfo, load_solver, read_package, resolve_device
from cvflow.runner.openapi import build_openapi
from cvflow.runner.protocol import BadRequest, BodyTooLarge, Limits, Request, Server
from cvflow.runner.requests import parse_inputs
from cvflow.runner.results import encode_result
from cvflow.solver import InputError

log = logging.getLogger("cvflow.runner")

#: Marks the readiness polls of ``cvflow run`` and ``cvflow ps`` (``cvflow.runtime.supervisor.probe``):
#: a ``GET /readyz`` with it is answered but not written to the access log.
POLL_HEADER = "x-cvflow-poll"
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class RunnerSettings:
    """Everything a runner is started with (``python -m cvflow.runner --help``)."""

    package_dir: Path
    solvers: tuple[str, ...] = ()  # empty: every solver of the package
    host: str = "127.0.0.1"
    port: int = 0
    device: str = "auto"
    images: ImagePolicy = field(default_factory=ImagePolicy)
    max_request_bytes: int = 64 << 20
    max_queue: int = 1024
    request_timeout: float = 300.0
    settings: dict[str, str] = field(default_factory=dict)
    access_log: bool = True
    http: Limits = field(default_factory=Limits)  # header, idle and body timeouts; head size and count
    label_studio: LabelStudioSettings | None = None  # None: no Label Studio routes


class Runner:
    """The package's solvers behind an HTTP server. ``bind()``, then ``load()``, then serve."""

    def __init__(self, settings: RunnerSettings) -> None:
        self.settings = settings
        self.info: PackageInfo = read_package(settings.package_dir)
        for name in settings.solvers:
            self.info.solver(name)  # LoadError early for a name the package lacks
        self.names = settings.solvers or tuple(s.name for s in self.info.solvers)
        self.solvers: dict[str, LoadedSolver] = {}
        self.device = settings.device
        self.ready = threading.Event()
        self.started = time.time()
        self.httpd: Server | None = None
        self._openapi: bytes | None = None
        self._docs: bytes | None = None
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self.label_studio = None if settings.label_studio is None else LabelStudioBackend(self, settings.label_studio)

    # -- lifecycle --------------------------------------------------------------------------

    def bind(self) -> Server:
        """Listen on the host and port (0: any free port). Raises OSError when it cannot."""
        self.httpd = Server((self.settings.host, self.settings.port), self.app, name=f"cvflow-runner/{__version__}",
                            limits=self.settings.http)
        return self.httpd

    @property
    def port(self) -> int:
        assert self.httpd is not None
        return int(self.httpd.server_address[1])

    def load(self) -> None:
        """Load every solver, start its worker, then become ready. Raises what loading raises."""
        self.device = resolve_device(self.settings.device)
        for name in self.names:
            start = time.perf_counter()
            solver = load_solver(self.info, name, device=self.device, settings=self.settings.settings,
                                 max_queue=self.settings.max_queue)
            self.solvers[name] = solver
            log.info("loaded solver %s (%s) in %.2f s on %s", name, solver.entry.class_path,
                     time.perf_counter() - start, self.device)
        self._openapi = json.dumps(build_openapi(self.info, self.solvers.values(), runner_version=__version__),
                                   indent=2).encode()
        self.ready.set()

    def close(self, grace: float = 10.0) -> None:
        """Stop accepting connections, let the requests in progress finish (``grace`` seconds at most),
        and let solvers release what they hold."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        deadline = time.monotonic() + grace
        while self._inflight and time.monotonic() < deadline:
            time.sleep(0.02)
        for solver in self.solvers.values():
            closer = getattr(solver.instance, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:
                    log.exception("solver %s: close() failed", solver.name)

    # -- routes -----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        solvers = []
        for entry in self.info.solvers:
            if entry.name not in self.names:
                continue
            loaded = self.solvers.get(entry.name)
            item: dict[str, Any] = {"name": entry.name, "description": entry.description, "class": entry.class_path,
                                    "url": f"/solvers/{entry.name}/infer"}
            if loaded is not None:
                item["batch"] = loaded.batching
                item["inputs"] = loaded.schema.request_schema(multipart=False)
                item["stats"] = loaded.worker.stats_dict()
            solvers.append(item)
        return {"package": self.info.name, "version": self.info.version, "description": self.info.description,
                "status": "ready" if self.ready.is_set() else "loading", "device": self.device, "pid": os.getpid(),
                "started_at": datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "uptime_s": round(time.time() - self.started, 3), "runner": __version__,
                "openapi": "/openapi.json", "solvers": solvers}

    def solver(self, name: str) -> LoadedSolver:
        if not self.ready.is_set():
            raise RunnerError("not_ready", "the runner is still loading its solvers; retry when /readyz says ready")
        found = self.solvers.get(name)
        if found is None:
            served = ", ".join(self.solvers) or "none"
            raise RunnerError("solver_not_found", f"no solver {name!r} here (this runner serves: {served})",
                              {"solver": name})
        return found

    def call(self, solver: LoadedSolver, kwargs: dict[str, Any], arrival: Arrival | None = None) -> Any:
        """Run one call through the solver's worker; its result, or RunnerError."""
        try:
            return solver.worker.call(kwargs, timeout=self.settings.request_timeout, arrival=arrival)
        except QueueFull as exc:
            raise RunnerError("busy", str(exc)) from None
        except CallTimeout as exc:
            raise RunnerError("solver_timeout", str(exc)) from None
        except InputError as exc:
            details = {"field": exc.field} if exc.field else {}
            raise RunnerError("invalid_input", exc.message, details) from None
        except Exception as exc:
            solver.worker.count_error()
            log.error("solver %s raised %s: %s", solver.name, type(exc).__name__, exc, exc_info=exc)
            raise RunnerError("solver_error", f"{type(exc).__name__}: {exc}", {"type": type(exc).__name__}) from None

    def infer(self, name: str, request: Request) -> bytes:
        """``POST /solvers/{name}/infer``: the call is on its way from the end of the headers (its
        body still to come), and its connection counts as returning once answered (``batching``)."""
        solver = self.solver(name)
        connection = request.connection
        with solver.worker.arriving(connection.held, returns=True) as arrival:
            connection.held = arrival
            body = request.body(self.settings.max_request_bytes)
            kwargs = parse_inputs(solver.schema, request.headers.get("content-type", ""), body, request.query,
                                  self.settings.images)
            result = self.call(solver, kwargs, arrival)
        return encode_result(result, solver.name)

    def openapi(self) -> bytes:
        if self._openapi is None:
            raise RunnerError("not_ready", "the OpenAPI document is built once the solvers are loaded")
        return self._openapi

    def docs(self) -> bytes:
        """The OpenAPI document as an HTML page, rendered once."""
        if self._docs is None:
            self._docs = openapi_html.page(json.loads(self.openapi()), json_url="/openapi.json").encode()
        return self._docs

    # -- HTTP -------------------------------------------------------------------------------

    def app(self, request: Request) -> tuple[int, bytes, str]:
        """Answer one request; never raises (a bug of the runner is a 500, logged)."""
        start = time.perf_counter()
        with self._inflight_lock:
            self._inflight += 1
        status = 500
        v2 = request.path.startswith("/v2/")  # errors in KServe's shape, {"error": "code: message"}
        held = request.connection.held  # the connection's last solver call (see ``infer``)
        try:
            status, body, ctype = self._route(request)
        except RunnerError as exc:
            status, body, ctype = exc.status, kserve.error_body(exc) if v2 else exc.body(), _JSON
        except BodyTooLarge as exc:
            err = RunnerError("request_too_large", f"{exc}; the runner takes bodies up to {exc.limit} bytes")
            status, body, ctype = err.status, kserve.error_body(err) if v2 else err.body(), _JSON
        except BadRequest as exc:
            err = RunnerError(exc.code, exc.message)
            status, body, ctype = err.status, kserve.error_body(err) if v2 else err.body(), _JSON
        except ConnectionError:
            raise  # the client went away inside its body: nobody to answer
        except Exception as exc:
            log.error("%s %s failed: %s", request.method, request.path, exc, exc_info=exc)
            status, body, ctype = 500, RunnerError("solver_error", f"internal error: {exc}").body(), _JSON
        finally:
            with self._inflight_lock:
                self._inflight -= 1
            if held is not None and request.connection.held is held:  # not a call that took it over
                request.connection.held = None
                held.release()
        if self.settings.access_log and not (request.path == "/readyz" and POLL_HEADER in request.headers):
            _access.write(request, status, len(body), (time.perf_counter() - start) * 1000)
        return status, body, ctype

    def _route(self, request: Request) -> tuple[int, bytes, str]:
        method, path = request.method, request.path
        parts = [p for p in path.split("/") if p]
        if self.label_studio is not None and len(parts) == 1 and parts[0] in LABEL_STUDIO_ROUTES:
            return self._label_studio(request, self.label_studio, parts[0])
        allowed = _allowed(parts)
        if allowed is not None and method not in allowed:
            request.response_headers.append(("Allow", ", ".join(allowed)))
            raise RunnerError("method_not_allowed", f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}")
        infer = allowed == _POST
        if method == "POST" and infer:
            if parts[0] == "v2":
                return kserve.infer(self, request, parts[1:])  # reads (and decompresses) its body itself
            return 200, self.infer(parts[1], request), _JSON
        if method in ("GET", "HEAD") and not infer:
            if not parts:
                return 200, _dumps(self.describe()), _JSON
            if parts == ["healthz"]:
                return 200, b'{"status":"ok"}', _JSON
            if parts == ["readyz"]:
                if self.ready.is_set():
                    return 200, b'{"status":"ready"}', _JSON
                return 503, b'{"status":"loading"}', _JSON
            if parts == ["openapi.json"]:
                return 200, self.openapi(), _JSON
            if parts == ["docs"]:
                return 200, self.docs(), _HTML
            if parts[0] == "v2" and allowed is not None:
                return kserve.get(self, parts[1:])
        raise RunnerError("not_found", f"no route {path}; see GET / and GET /openapi.json")


    def _label_studio(self, request: Request, backend: LabelStudioBackend, route: str) -> tuple[int, bytes, str]:
        allowed = LABEL_STUDIO_ROUTES[route]
        if request.method not in allowed:
            request.response_headers.append(("Allow", ", ".join(allowed)))
            raise RunnerError("method_not_allowed", f"{request.method} is not allowed on {request.path};"
                              f" allowed: {', '.join(allowed)}")
        body = request.body(self.settings.max_request_bytes) if request.method == "POST" else b""
        return 200, backend.handle(request.method, route, body), _JSON


_GET = ("GET", "HEAD")
_POST = ("POST",)


def _allowed(parts: list[str]) -> tuple[str, ...] | None:
    """The methods of the resource at ``parts`` (for 405 and its ``Allow``); None: no such resource."""
    if parts in ([], ["healthz"], ["readyz"], ["openapi.json"], ["docs"]):
        return _GET
    if len(parts) == 3 and parts[0] == "solvers" and parts[2] == "infer":
        return _POST
    if parts[:1] == ["v2"]:
        return kserve.allowed(parts[1:])
    return None


class _AccessLog:
    """One line per request on stderr, in the format of the runner's other log lines. Written
    directly: the logging module's record, formatter and handler took a tenth of a small request.
    No lock: the second's time stamp is cached as one tuple, replaced whole, and a line is one
    ``write`` (a lock here made sixteen connection threads queue behind each other's writes)."""

    def __init__(self) -> None:
        self._stamp: tuple[int, str] = (-1, "")

    def write(self, request: Request, status: int, size: int, ms: float) -> None:
        now = time.time()
        second, stamp = self._stamp
        if int(now) != second:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            self._stamp = (int(now), stamp)
        line = (f"{stamp},{int(now * 1000) % 1000:03d} INFO cvflow.runner: {request.client}"
                f' "{request.method} {request.path[:200]}" {status} {size} {ms:.1f}ms\n')
        with contextlib.suppress(OSError, ValueError):  # a closed or full log must not fail the request
            sys.stderr.write(line)


_access = _AccessLog()


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def served_urls(runner: Runner) -> Iterable[str]:
    host = runner.settings.host
    shown = f"[{host}]" if ":" in host else host
    return [f"http://{shown}:{runner.port}/solvers/{name}/infer" for name in runner.names]

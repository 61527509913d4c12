"""``python -m cvflow.runner PACKAGE_DIR [options]``: serve a package's solvers in the foreground.

``cvflow run`` starts this in the background with the installed venv's Python (through
``_boot.py``); running it by hand on a package directory is handy while writing a solver.
Exit status: 0 after SIGTERM/SIGINT, 2 for bad arguments or a port it cannot listen on,
3 when a solver fails to load (the traceback is in the log).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from cvflow.runner.images import ImagePolicy, url_allowed
from cvflow.runner.label_studio import LabelStudioSettings
from cvflow.runner.loader import LoadError
from cvflow.runner.protocol import Limits
from cvflow.runner.server import Runner, RunnerSettings, served_urls

log = logging.getLogger("cvflow.runner")
#: Names of the environment variables that ``cvflow run --env`` set: the solver's settings.
SETTINGS_VAR = "CVFLOW_RUNNER_SETTINGS"


def parse_args(argv: list[str] | None) -> tuple[RunnerSettings, Path | None]:
    p = argparse.ArgumentParser(prog="python -m cvflow.runner", description=__doc__.split("\n\n")[0])
    p.add_argument("package_dir", type=Path, help="the package directory (with cvflow.toml)")
    p.add_argument("--solver", action="append", default=[], help="serve only this solver (repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--max-image-bytes", type=int, default=20 << 20)
    p.add_argument("--max-image-pixels", type=int, default=40_000_000)
    p.add_argument("--max-request-bytes", type=int, default=64 << 20)
    p.add_argument("--max-queue", type=int, default=1024)
    p.add_argument("--request-timeout", type=float, default=300.0)
    p.add_argument("--allow-url", action="append", default=[], help="fetch image URLs under this prefix")
    p.add_argument("--label-studio", metavar="URL",
                   help="also answer Label Studio's ML backend protocol (/health, /setup, /predict, /webhook),"
                   " reading task images from the Label Studio at URL (token: env LABEL_STUDIO_API_KEY)")
    p.add_argument("--status-file", type=Path, help="write {pid, host, port} here once listening")
    p.add_argument("--no-access-log", action="store_true")
    # HTTP limits; `cvflow run --env CVFLOW_RUNNER_IDLE_TIMEOUT=30` reaches them through the environment.
    http = Limits()
    for flag, default in (("header-timeout", http.header_timeout), ("idle-timeout", http.idle_timeout),
                          ("body-timeout", http.body_timeout), ("max-header-bytes", http.max_head_bytes),
                          ("max-headers", http.max_headers)):
        var = "CVFLOW_RUNNER_" + flag.upper().replace("-", "_")
        kind = float if flag.endswith("timeout") else int
        p.add_argument(f"--{flag}", type=kind, default=kind(os.environ.get(var, default)), help=f"env: {var}")
    a = p.parse_args(argv)
    label_studio = None
    if a.label_studio:
        if not url_allowed(a.label_studio, (a.label_studio,)):
            p.error(f"--label-studio: {a.label_studio!r} is not an http(s) URL")
        label_studio = LabelStudioSettings(a.label_studio.rstrip("/"), os.environ.get("LABEL_STUDIO_API_KEY", ""))
    names = [n for n in os.environ.get(SETTINGS_VAR, "").split(",") if n]
    return RunnerSettings(
        package_dir=a.package_dir.resolve(), solvers=tuple(a.solver), host=a.host, port=a.port, device=a.device,
        images=ImagePolicy(a.max_image_bytes, a.max_image_pixels, tuple(a.allow_url)),
        max_request_bytes=a.max_request_bytes, max_queue=a.max_queue, request_timeout=a.request_timeout,
        settings={n: os.environ.get(n, "") for n in names}, access_log=not a.no_access_log,
        http=Limits(a.header_timeout, a.idle_timeout, a.body_timeout, a.max_header_bytes, a.max_headers),
        label_studio=label_studio,
    ), a.status_file


def _write_status(path: Path | None, data: dict[str, object]) -> None:
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings, status_file = parse_args(argv)
    try:
        runner = Runner(settings)
    except LoadError as exc:
        log.error("%s", exc)
        return 2
    try:
        server = runner.bind()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror or exc)
        return 2
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    _write_status(status_file, {"pid": os.getpid(), "host": settings.host, "port": runner.port})
    log.info("%s@%s: listening on http://%s:%d; loading %s", runner.info.name, runner.info.version,
             settings.host, runner.port, ", ".join(runner.names))
    try:
        runner.load()
    except BaseException as exc:
        log.error("loading failed: %s: %s", type(exc).__name__, exc, exc_info=not isinstance(exc, LoadError))
        server.shutdown()
        return 3
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("ready: %s", "  ".join(served_urls(runner)))
    stop.wait()
    runner.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

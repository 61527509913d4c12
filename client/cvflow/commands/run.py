"""Commands that run solvers as REST services: run, ps, stop, logs, restart."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import click

from cvflow.commands._common import config, emit_json, handle_errors, hub_client
from cvflow.config import Config
from cvflow.install import InstalledPackage, list_installed, parse_spec
from cvflow.runtime import supervisor
from cvflow.runtime.state import RunnerRecord, RunnerState
from cvflow.versions import Version, VersionRange

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def parse_run_spec(spec: str) -> tuple[str, str | None, list[str]]:
    """``"ns/name@^1:classify,detect"`` -> ``("ns/name", "^1", ["classify", "detect"])``.

    Raises:
        InvalidNameError, InvalidRangeError: as ``parse_spec``.
    """
    head, _, solvers = spec.strip().partition(":")
    name, text = parse_spec(head)
    return name, text, [s.strip() for s in solvers.split(",") if s.strip()]


def _installed(cfg: Config, name: str, text: str | None) -> InstalledPackage | None:
    """The highest installed version of ``name`` that ``text`` (a range) accepts."""
    rng = VersionRange.parse(text) if text else None
    found = [r for r in list_installed(cfg) if r.name == name
             and (rng is None or rng.contains(Version.parse(r.version)))]
    return max(found, key=lambda r: Version.parse(r.version).key) if found else None


def _install(ctx: click.Context, cfg: Config, name: str, text: str | None, offline: bool,
             quiet: bool, run_before_install: bool = False, verbose: bool = False) -> InstalledPackage:
    from cvflow.commands.install import before_install_consent
    from cvflow.install import install as run_install
    from cvflow.progress import step_printer, transfer_bar

    spec = f"{name}@{text}" if text else name
    lock = cfg.state_dir / "runners" / "locks" / f"{name.replace('/', '--')}.lock"
    client = None if offline else hub_client(ctx, cfg=cfg)
    try:
        if client is not None:
            from cvflow.commands.install import refuse_dataset

            refuse_dataset(client, spec)  # before installing it downloads a dataset
        if not quiet:
            click.echo(f"{spec} is not installed; installing it first", err=True)
        with transfer_bar(quiet=quiet) as bar:
            report = run_install(client, cfg.cache(), cfg, spec, offline=offline, lock_path=lock, progress=bar,
                                 before_install=before_install_consent(run_before_install, bar),
                                 steps=step_printer(bar, verbose=verbose, quiet=quiet), verbose=verbose)
    finally:
        if client is not None:
            client.close()
    return next(p for p in report.packages if p.name == name)


def _running(cfg: Config, name: str, text: str | None) -> list[RunnerRecord]:
    """The live runners of ``name`` (of a version ``text`` accepts, when given)."""
    rng = VersionRange.parse(text) if text else None
    return [r for r in RunnerState(cfg.state_dir).all() if r.package == name and r.is_alive()
            and (rng is None or rng.contains(Version.parse(r.version)))]


def _check_port(cfg: Config, host: str, port: int) -> None:
    """Refuse a ``--port`` that is taken, before anything is installed or started.

    Raises:
        RunnerError: another runner or another program listens there.
    """

    for other in RunnerState(cfg.state_dir).all():
        if other.port == port and other.is_alive():
            raise supervisor.RunnerError(f"port {port} is used by runner {other.name}; pick another --port")
    error = supervisor.bind_error(host, port)
    if error is not None:
        raise supervisor.RunnerError(
            f"port {port} on {host} is not free ({error}): another program listens there;"
            f" pick another --port, or leave --port out to get any free port")


def _warnings(installed: InstalledPackage, host: str) -> None:
    from cvflow.manifest import MANIFEST_FILENAME, parse_manifest

    manifest = parse_manifest((Path(installed.snapshot) / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    pickles = [w.path for w in manifest.weights if w.format == "pickle"]
    if pickles and manifest.allow_pickle:
        click.secho(f"warning: {installed.name}@{installed.version} may load pickle weights ({', '.join(pickles)}):"
                    " its manifest sets allow_pickle = true, and unpickling runs code from the file."
                    " Run it only if you trust its publisher.", fg="yellow", err=True)
    if host not in _LOOPBACK:
        click.secho(f"warning: the runner listens on {host}: anyone who can reach this machine can call it"
                    " (the runner has no authentication)", fg="yellow", err=True)


def _print_started(record: RunnerRecord, verb: str = "is running") -> None:
    click.echo(f"{record.package}@{record.version} {verb} as {record.name} (pid {record.pid})")
    for s in record.solvers:
        click.echo(f"  {record.url}/solvers/{s}/infer")
    click.echo(f"  schema: {record.url}/openapi.json   logs: cvflow logs {record.name}"
               f"   stop: cvflow stop {record.name}")


def _env_pairs(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--env")
        out[key] = value
    return out


def _http_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from cvflow.runner.images import url_allowed

    if value is not None and not url_allowed(value, (value,)):
        raise click.BadParameter(f"{value!r} is not an http(s) URL, e.g. http://localhost:8080")
    return value.rstrip("/") if value else None


@click.command()
@click.argument("spec", metavar="NS/NAME[@RANGE][:SOLVER[,SOLVER]]")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on [default: any free port].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--env", "env", multiple=True, metavar="K=V",
              help="A setting for the solver: set in its environment and in Context.settings (repeatable).")
@click.option("--name", help="The runner's name for ps/stop/logs [default: the package's name]."
              " A new name starts another copy even if the package already runs.")
@click.option("--another", is_flag=True,
              help="Start another copy even if the package already runs (named NAME-2, NAME-3...).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (Context.device).")
@click.option("--allow-url", "allow_urls", multiple=True, metavar="PREFIX",
              help="Let JSON requests give images as {\"url\": ...} under this prefix (repeatable).")
@click.option("--label-studio", "label_studio", metavar="URL", callback=_http_url,
              help="Also serve Label Studio's ML backend protocol (/health, /setup, /predict, /webhook) for the"
              " solver that declares `suggest`, reading task images from the Label Studio at URL with the"
              " token in LABEL_STUDIO_API_KEY. Connect it in Label Studio: Settings > Model > the runner's URL.")
@click.option("--max-image-mb", type=click.FloatRange(min=0, min_open=True), help="Largest image file [20].")
@click.option("--max-image-pixels", type=click.IntRange(min=1), help="Most pixels in one image [40000000].")
@click.option("--max-request-mb", type=click.FloatRange(min=0, min_open=True), help="Largest request body [64].")
@click.option("--offline", is_flag=True, help="If it must be installed first, install from the cache only.")
@click.option("--timeout", type=float, default=180, show_default=True, help="Seconds to wait for it to be ready.")
@click.option("--run-before-install", is_flag=True,
              help="Run a legacy CVPM package's before_install shell script, if it has one that has not run"
              " (without asking). Without it the script runs only if you answer yes at a terminal.")
@click.option("-v", "--verbose", is_flag=True, help="If it must be installed first, show the installer's output.")
@click.option("--json", "as_json", is_flag=True, help="Print the runner's record as JSON.")
@click.pass_context
@handle_errors
def run(ctx: click.Context, spec: str, port: int | None, host: str, env: tuple[str, ...], name: str | None,
        another: bool, device: str, allow_urls: tuple[str, ...], max_image_mb: float | None,
        max_image_pixels: int | None, max_request_mb: float | None, offline: bool, timeout: float, verbose: bool,
        as_json: bool, run_before_install: bool, label_studio: str | None) -> None:
    """Serve a package's solvers over REST, in the background, from its installed venv.

    Installs the package first if no installed version matches, starts the runner with the
    venv's Python, waits until every solver is loaded, and prints the URL. The runner listens
    on 127.0.0.1 unless --host says otherwise. A --port that is taken is refused before
    anything is installed.

    If the package already runs, says where (URL, pid, name) and starts nothing; --another
    (or a new --name) starts a second copy.

    \b
    Examples:
      cvflow run demo/digits-lenet
      cvflow run demo/digits-lenet --another     # a second copy, digits-lenet-2
      curl -F image=@digit.png http://127.0.0.1:PORT/solvers/classify/infer
      cvflow run 'demo/face-utility@^1:detect' --port 8080 --env OMP_NUM_THREADS=2
      cvflow run demo/digits-logreg --label-studio http://localhost:8080   # a Label Studio ML backend
      cvflow ps
      cvflow stop digits-lenet
    """
    pkg, text, solvers = parse_run_spec(spec)
    options = supervisor.RunOptions(
        host=host, port=port, device=device, env=_env_pairs(env), allow_urls=allow_urls,
        max_image_bytes=int(max_image_mb * (1 << 20)) if max_image_mb else None, max_image_pixels=max_image_pixels,
        max_request_bytes=int(max_request_mb * (1 << 20)) if max_request_mb else None, ready_timeout=timeout,
        label_studio=label_studio)
    cfg = config(ctx)
    running = [] if name or another else _running(cfg, pkg, text)
    if running:
        _print_running(running, as_json)
        return
    if port:
        _check_port(cfg, host, port)
    found = _installed(cfg, pkg, text)
    installed = found or _install(ctx, cfg, pkg, text, offline, quiet=as_json, run_before_install=run_before_install,
                                  verbose=verbose)
    if found is not None:  # installed earlier: its CVPM before_install script may not have run yet
        from cvflow.commands.install import before_install_consent
        from cvflow.install.before import handle

        handle(before_install_consent(run_before_install), found)
    _warnings(installed, host)
    record = supervisor.start(cfg, installed, solvers, options, name=name)
    if as_json:
        emit_json({**record.to_dict(), "url": record.url, "status": "ready"})
    else:
        _print_started(record)


def _print_running(running: list[RunnerRecord], as_json: bool) -> None:
    if as_json:
        record = running[0]
        emit_json({**record.to_dict(), "url": record.url, "status": supervisor.status(record),
                   "already_running": True})
        return
    for record in running:
        click.echo(f"{record.package}@{record.version} is already running as {record.name}"
                   f" (pid {record.pid}) at {record.url}")
    first = running[0]
    click.echo(f"  logs: cvflow logs {first.name}   restart: cvflow restart {first.name}"
               f"   a second copy: cvflow run {first.package} --another")


def _uptime(record: RunnerRecord) -> str:
    try:
        started = datetime.strptime(record.started_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "?"
    seconds = max(0, int(time.time() - started.timestamp()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the runners as JSON.")
@click.pass_context
@handle_errors
def ps(ctx: click.Context, as_json: bool) -> None:
    """Show the runners `cvflow run` started, and whether each still runs.

    STATUS is ready, starting (still loading), not answering, or dead: a runner whose
    process is gone (killed, crashed, or the machine rebooted) is shown as dead until
    `cvflow stop` or `cvflow restart` is run for it.

    \b
    Examples:
      cvflow ps
      cvflow ps --json
    """
    records = RunnerState(config(ctx).state_dir).all()
    rows = []
    for r in records:
        st = supervisor.status(r)
        rows.append((r, st, _uptime(r) if st != "dead" else "-"))
    if as_json:
        emit_json([{**r.to_dict(), "url": r.url, "status": st, "uptime": up} for r, st, up in rows])
        return
    if not rows:
        click.echo("no runners; start one with `cvflow run NS/NAME`")
        return
    table = [("NAME", "PACKAGE", "SOLVERS", "URL", "PID", "STATUS", "UPTIME")]
    table += [(r.name, f"{r.package}@{r.version}", ",".join(r.solvers), r.url, str(r.pid), st, up)
              for r, st, up in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        fg = "red" if row[5] == "dead" else None
        click.secho(line, fg=fg)


def _targets(cfg: Config, targets: tuple[str, ...], every: bool) -> list[RunnerRecord]:
    if every:
        return RunnerState(cfg.state_dir).all()
    if not targets:
        raise click.UsageError("name a runner (or a package), or use --all")
    found: dict[str, RunnerRecord] = {}
    for t in targets:
        for r in supervisor.find(cfg, t):
            found[r.name] = r
    return list(found.values())


@click.command()
@click.argument("targets", nargs=-1, metavar="[NAME|NS/NAME]...")
@click.option("--all", "every", is_flag=True, help="Stop every runner.")
@click.option("--timeout", type=float, default=10, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.pass_context
@handle_errors
def stop(ctx: click.Context, targets: tuple[str, ...], every: bool, timeout: float) -> None:
    """Stop runners: SIGTERM (queued calls finish), then SIGKILL after --timeout.

    A dead runner's record is removed. The log stays: `cvflow logs NAME` still shows it.

    \b
    Examples:
      cvflow stop digits-lenet
      cvflow stop demo/digits-lenet      # every runner of the package
      cvflow stop --all
    """
    cfg = config(ctx)
    records = _targets(cfg, targets, every)
    if not records:
        click.echo("no runners")
    for r in records:
        click.echo(f"{r.name}: {supervisor.stop(cfg, r, timeout=timeout)}")


@click.command()
@click.argument("target", metavar="NAME")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the runner writes, until it stops.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=100, show_default=True,
              help="How many of the last lines to print first.")
@click.pass_context
@handle_errors
def logs(ctx: click.Context, target: str, follow: bool, lines: int) -> None:
    """Print a runner's log: its start-up, one line per request, and solver tracebacks.

    \b
    Examples:
      cvflow logs digits-lenet
      cvflow logs digits-lenet -f
    """
    state = RunnerState(config(ctx).state_dir)
    record = state.load(target)
    path = Path(record.log) if record is not None else state.log_path(target)
    if not path.exists():
        supervisor.find(config(ctx), target)  # raises the not-found error with the list of runners
        raise supervisor.RunnerError(f"runner {target} has no log yet")
    text = supervisor.log_tail(path, lines)
    if text:
        click.echo(text)
    if follow:
        try:
            for chunk in supervisor.follow_log(path, record):
                click.echo(chunk, nl=False)
        except KeyboardInterrupt:
            return


@click.command()
@click.argument("targets", nargs=-1, metavar="NAME|NS/NAME...")
@click.option("--timeout", type=float, default=10, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.pass_context
@handle_errors
def restart(ctx: click.Context, targets: tuple[str, ...], timeout: float) -> None:
    """Restart runners (running or dead) as they were started, on the same port when it is free.

    \b
    Examples:
      cvflow restart digits-lenet
    """
    cfg = config(ctx)
    installed = {(p.name, p.version): p for p in list_installed(cfg)}
    for r in _targets(cfg, targets, every=False):
        pkg = installed.get((r.package, r.version))
        if pkg is None:
            raise supervisor.RunnerError(f"{r.package}@{r.version} is no longer installed; "
                                         f"`cvflow stop {r.name}`, then `cvflow run {r.package}`")
        _print_started(supervisor.restart(cfg, r, pkg, timeout=timeout), verb="restarted")

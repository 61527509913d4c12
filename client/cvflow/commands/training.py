"""``cvflow finetune`` and ``cvflow worker --train`` (docs/training.md)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cvflow.commands._common import config, emit_json, fail, handle_errors, hub_client
from cvflow.errors import CVFlowError, HubError, ValidationError


def _error_line(exc: CVFlowError) -> str:
    """The error as one line with its code, the way every command prints the hub's (``message [code]``)."""
    first, _, rest = exc.message.partition("\n")
    line = first if f"[{exc.code}]" in first else f"{first} [{exc.code}]"
    return f"{line}\n{rest}" if rest else line


def _value(text: str) -> object:
    """A ``--set`` value as TOML would read it: a number, true/false, else the text itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _hyperparameters(epochs: int | None, settings: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in settings:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise click.BadParameter(f"{item!r}: write KEY=VALUE, e.g. lr=0.0005", param_hint="--set")
        out[key.strip()] = _value(value)
    if epochs is not None:
        out["epochs"] = epochs
    return out


class _Display:
    """What a person watching ``cvflow finetune`` sees on stderr: download bars, then one bar over
    the trainer's steps (loss and epoch beside it) and a line per epoch with its metrics.

    It is the ``progress`` (a :class:`cvflow.progress.Transfer`) and the ``on_event`` of
    :func:`cvflow.training.finetune.finetune`. Without a terminal it prints the lines only.
    """

    def __init__(self, *, quiet: bool, epochs: int | None) -> None:
        self.console = Console(stderr=True)
        self.quiet = quiet
        self.epochs = epochs
        self.live = not quiet and self.console.is_terminal and not self.console.is_dumb_terminal
        self.bars = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                             console=self.console, transient=True)
        self.train_task: TaskID | None = None
        self._ids = 0
        self._lock = threading.Lock()

    def __enter__(self) -> _Display:
        if self.live:
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.bars.stop()

    # cvflow.progress.Transfer: the downloads of the base and the dataset
    def add(self, description: str, total: int | None) -> int:
        if not self.live:
            with self._lock:
                self._ids += 1
                return self._ids
        return int(self.bars.add_task(description, total=total, detail="bytes"))

    def advance(self, task_id: int, n: int) -> None:
        if self.live:
            self.bars.advance(TaskID(task_id), n)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False, highlight=False)

    # the trainer's events
    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "stage":
            self.log(str(event.get("message")))
            epochs = (event.get("hyperparameters") or {}).get("epochs")
            if isinstance(epochs, int) and not isinstance(epochs, bool):
                self.epochs = epochs  # the trainer's default when --epochs was not given
        elif kind == "progress":
            self._progress(event)
        elif kind == "epoch":
            metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in (event.get("metrics") or {}).items())
            of = f"/{self.epochs}" if self.epochs else ""
            self.log(f"epoch {event.get('epoch')}{of}: loss {_fmt(event.get('loss'))}"
                     + (f", {metrics}" if metrics else ""))
        elif kind == "log":
            self.log(f"  {event.get('message')}")
        elif kind == "checkpoint":
            state = event.get("state") or {}
            if "epoch" in state:
                self.log(f"  checkpoint (epoch {state['epoch']})")

    def _progress(self, event: dict[str, Any]) -> None:
        if not self.live:
            return
        step, total = int(event.get("step") or 0), int(event.get("total") or 0) or None
        of = f"/{self.epochs}" if self.epochs else ""
        detail = "  ".join(part for part in (
            "" if event.get("loss") is None else f"loss {_fmt(event.get('loss'))}",
            "" if event.get("epoch") is None else f"epoch {event.get('epoch')}{of}",
        ) if part)
        if self.train_task is None:
            self.train_task = self.bars.add_task("training", total=total, detail=detail)
        self.bars.update(self.train_task, completed=step, total=total, detail=detail)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@contextlib.contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """SIGTERM as SystemExit while the block runs, so the runner stops the trainer's process group
    (it runs in a session of its own, which a signal to this process does not reach) before this
    process ends; the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@click.argument("base", metavar="BASE")
@click.option("--data", "data", required=True, metavar="NS/DATASET@VERSION",
              help="The dataset package version to train on (a range picks its newest match).")
@click.option("--to", "target", required=True, metavar="NS/NAME",
              help="The package to publish the fine-tune to (a new one, yours, or the base's own).")
@click.option("--trainer", metavar="NAME",
              help="Which of the base's trainers [default: its first for the data's task].")
@click.option("--epochs", type=click.IntRange(1), metavar="N", help="Shorthand for --set epochs=N.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter (checked against the trainer's bounds); repeat for more.")
@click.option("--nproc-per-node", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Processes on this machine (torchrun, one per GPU); more than 1 trains with DDP.")
@click.option("--no-publish", is_flag=True, help="Build the new version in --out, publish nothing.")
@click.option("--out", "out_dir", type=click.Path(file_okay=True, path_type=Path), metavar="DIR",
              help="Keep the new package folder here (a new or empty folder) [default with --no-publish:"
                   " ./NAME-finetune].")
@click.option("--private/--public", default=None,
              help="Who may see the --to package, as with `cvflow publish` [default: a new package is public,"
                   " an existing one stays as it is].")
@click.option("--json", "as_json", is_flag=True, help="Print the result (version, lineage, metrics) as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Echo the trainer's own output as it runs.")
@click.pass_context
def finetune(ctx: click.Context, base: str, data: str, target: str, trainer: str | None, epochs: int | None,
             settings: tuple[str, ...], nproc_per_node: int, no_publish: bool, out_dir: Path | None,
             private: bool | None, as_json: bool, verbose: bool) -> None:
    """Fine-tune a model version on a dataset version and publish the result as a new version.

    Pulls BASE (NS/NAME[@VERSION], a model package with [[trainers]]) and the dataset, installs
    the base's venv, maps the dataset's classes onto the model's by name, trains in that venv
    (a bar with the loss; a line per epoch), and publishes the base's files with the new weights
    as the next minor version of --to (1.0.0 for a new package). Its cvflow.toml records the
    lineage: base, dataset, trainer, hyperparameters, and the validation metric before and after.

    \b
    Examples:
      cvflow finetune demo/digits-detector@1.0.0 --data demo/digits-shifted-data@1.0.0 \\
          --to alice/digits-detector-shifted --epochs 4
      cvflow finetune demo/digits-lenet --data alice/digits-data@^1 --to alice/digits-lenet \\
          --set lr=0.0005 --no-publish --out ./digits-ft
      cvflow finetune alice/detector@2.1.0 --data alice/street-data@1.3.0 --to alice/detector \\
          --nproc-per-node 4
    """
    from cvflow.training.finetune import finetune as run_finetune

    hyperparameters = _hyperparameters(epochs, settings)
    cfg = config(ctx)
    if no_publish and out_dir is None:
        out_dir = Path.cwd() / f"{target.strip().rpartition('/')[2] or 'finetune'}-finetune"
    shown_epochs = hyperparameters.get("epochs")
    try:
        with _exit_on_sigterm(), hub_client(ctx, cfg=cfg) as client, _Display(quiet=as_json, epochs=shown_epochs
                                                         if isinstance(shown_epochs, int) else None) as display:
            result = run_finetune(client, cfg.cache(), cfg, base, data, target, trainer=trainer,
                                  hyperparameters=hyperparameters, nproc_per_node=nproc_per_node,
                                  publish=not no_publish, out_dir=out_dir, on_event=display, progress=display,
                                  private=private, verbose=verbose)
    except ValidationError as exc:
        click.secho(f"error: {_error_line(exc)}", fg="red", err=True)
        for problem in exc.problems:
            if problem.message != exc.message:
                click.secho(f"  - {problem}", fg="red", err=True)
        raise SystemExit(1) from None
    except CVFlowError as exc:
        fail(_error_line(exc))
    except KeyboardInterrupt:
        click.secho("interrupted", fg="yellow", err=True)
        raise SystemExit(130) from None
    if as_json:
        emit_json(result.to_dict())
        return
    metric = result.metric
    click.echo(f"{metric}: base {_fmt(result.base_value)} -> fine-tuned {_fmt(result.value)}"
               f" ({result.lineage.device}, {result.lineage.seconds:.1f} s)")
    if result.published:
        click.echo(f"published {result.name}@{result.version}")
        click.echo(str(result.web_url))
    else:
        click.echo(f"built {result.name}@{result.version} in {result.folder} (not published;"
                   f" `cvflow publish {result.folder}` publishes it)")


@click.command()
@click.option("--train", is_flag=True, help="Run fine-tune jobs (the only kind of work so far).")
@click.option("--once", is_flag=True, help="Claim one job (or none), run it, and stop.")
@click.option("--nproc-per-node", type=click.IntRange(1, 64), default=1, show_default=True, metavar="N",
              help="Processes per job on this machine (torchrun, one per GPU).")
@click.option("--lease", type=click.IntRange(30, 86_400), metavar="SECONDS",
              help="How long the hub keeps a job for this worker between heartbeats [default: the hub's].")
@click.option("--poll", type=click.FloatRange(0.1, 3600), default=10, show_default=True, metavar="SECONDS",
              help="The wait between claims while nothing is queued.")
@click.option("--project", "projects", multiple=True, metavar="NS/NAME",
              help="Only this project's jobs; repeat for more [default: any this token may train].")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Where jobs run (data, checkpoints, logs) [default: CVFLOW_HOME/training/worker].")
@click.option("--name", "worker_name", metavar="NAME", help="This worker's name on the hub [default: HOST:PID].")
@click.option("--json", "as_json", is_flag=True, help="Print what each job came to as JSON (with --once).")
@click.option("-v", "--verbose", is_flag=True, help="Echo the trainer's own output as it runs.")
@click.pass_context
@handle_errors
def worker(ctx: click.Context, train: bool, once: bool, nproc_per_node: int, lease: int | None, poll: float,
           projects: tuple[str, ...], work_dir: Path | None, worker_name: str | None, as_json: bool,
           verbose: bool) -> None:
    """Run a worker that claims fine-tune jobs from the hub and publishes what it trains.

    Projects queue a job every N accepted labels (or when an owner asks): fine-tune the
    project's model on a snapshot of its labels. The worker claims the oldest job its token may
    train (the annotate scope, and publish rights on the target), trains it like `cvflow
    finetune`, reports progress, the epochs' curves and the log tail by heartbeats, uploads
    each checkpoint, publishes the new version and tells the hub, which promotes it when it
    beats the project's model. A worker that dies leaves the job to its lease: another one
    resumes it from the last checkpoint. Run as many as you have machines.

    \b
    Examples:
      cvflow worker --train
      cvflow worker --train --project alice/street --nproc-per-node 4
      cvflow worker --train --once --lease 120
    """
    if not train:
        raise click.UsageError("say what to work on: --train (fine-tune jobs)")
    from cvflow.training.worker import TrainWorker, TrainWorkerOptions, default_worker_name

    for project in projects:
        if project.count("/") != 1 or project.startswith("/") or project.endswith("/"):
            raise click.BadParameter(f"{project!r}: write it as NS/NAME", param_hint="--project")
    cfg = config(ctx)
    options = TrainWorkerOptions(once=once, nproc_per_node=nproc_per_node, lease=lease, poll=poll,
                                 projects=projects, work_dir=work_dir, name=worker_name or default_worker_name(),
                                 verbose=verbose)

    def log(line: str) -> None:
        click.echo(line, err=as_json)

    with _exit_on_sigterm(), hub_client(ctx, cfg=cfg) as client:
        runner = TrainWorker(client, cfg, options, log=log)
        if not once:
            log(f"worker {options.name}: waiting for fine-tune jobs on {cfg.hub}"
                + (f" ({', '.join(projects)})" if projects else "") + "; Ctrl-C stops it")
        try:
            reports = runner.run()
        except KeyboardInterrupt:
            click.secho("interrupted; a job this worker held goes back to the queue when its lease runs out",
                        fg="yellow", err=True)
            raise SystemExit(130) from None
        except HubError as exc:
            if exc.code == "insufficient_scope":
                fail(f"this token may not train: it needs the annotate scope [{exc.code}]")
            raise
    if as_json:
        emit_json([r.to_dict() for r in reports])
    elif once and not reports:
        log("no fine-tune job is queued")
    if any(r.state == "failed" for r in reports):
        raise SystemExit(1)

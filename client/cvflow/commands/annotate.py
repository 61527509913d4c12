"""``cvflow annotate``: annotation projects from the command line (docs/annotation.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cvflow.commands._common import config, emit_json, fail, handle_errors, hub_client
from cvflow.errors import HubError


@click.group()
def annotate() -> None:
    """Annotation projects: create one, push images, run a suggestion worker, snapshot.

    A project is a set of images, a label set and a suggestion model (a solver of a package
    on the hub). Annotators label in the browser at /projects/NAMESPACE/NAME; suggestion
    workers run the model on their own machines; a snapshot publishes what was accepted as
    a dataset version.

    \b
    Examples:
      cvflow annotate create alice/street --task detection --classes car,person \\
          --suggest demo/digits-detector --solver detect
      cvflow annotate push alice/street ./photos
      cvflow annotate suggest alice/street
      cvflow annotate status alice/street
      cvflow annotate snapshot alice/street
    """


def _classes(value: str) -> list[str]:
    names = [c.strip() for c in value.split(",") if c.strip()]
    if not names:
        raise click.BadParameter("name at least one class, e.g. --classes car,person", param_hint="--classes")
    return names


def _explain(exc: HubError, project: str) -> None:
    """Say what to do about the hub's annotation error codes; other errors as they are."""
    hints = {
        "project_not_found": f"no project {project}, or it is private and this token has no role in it",
        "project_exists": f"{project} exists already; see it with `cvflow annotate status {project}`",
        "no_suggestion_model": f"{project} has no suggestion model with a published version in its range",
        "nothing_to_snapshot": f"no item of {project} has saved labels yet; label some in the browser first",
        "insufficient_scope": "this token may not annotate; `cvflow login` again (its token has the annotate scope)",
    }
    hint = hints.get(exc.code or "")
    if hint is not None:
        fail(f"{hint} [{exc.code}]")


@annotate.command()
@click.argument("project", metavar="NAMESPACE/NAME")
@click.option("--task", type=click.Choice(["detection", "classification"]), required=True,
              help="Boxes (detection) or one class per image (classification).")
@click.option("--classes", "classes", required=True, metavar="A,B,...", help="The label set, comma-separated.")
@click.option("--suggest", "suggest", metavar="NS/NAME", help="The package whose solver suggests labels.")
@click.option("--range", "version_range", default="*", show_default=True,
              help="Versions of --suggest to use; the newest one in it runs.")
@click.option("--solver", help="The solver of --suggest to run (required with --suggest).")
@click.option("--public", is_flag=True, help="Let anyone see the project (it is private by default).")
@click.option("--order", type=click.Choice(["sequential", "uncertainty"]), default="sequential",
              show_default=True, help="Queue order: by item, or least confident suggestions first.")
@click.option("--description", help="One line shown on the project's page.")
@click.option("--dataset", "dataset_package", metavar="NS/NAME",
              help="Where snapshots are published [default: NAMESPACE/NAME-data].")
@click.option("--json", "as_json", is_flag=True, help="Print the project as JSON.")
@click.pass_context
@handle_errors
def create(ctx: click.Context, project: str, task: str, classes: str, suggest: str | None, version_range: str,
           solver: str | None, public: bool, order: str, description: str | None, dataset_package: str | None,
           as_json: bool) -> None:
    """Create an annotation project.

    \b
    Examples:
      cvflow annotate create alice/faces --task detection --classes face \\
          --suggest demo/face-utility --range '^1' --solver detect
      cvflow annotate create alice/pets --task classification --classes cat,dog --public
    """
    namespace, _, name = project.partition("/")
    if not namespace or not name or "/" in name:
        raise click.BadParameter(f"{project!r}: write it as NAMESPACE/NAME", param_hint="NAMESPACE/NAME")
    if (suggest is None) != (solver is None):
        raise click.UsageError("--suggest and --solver go together: the package and which of its solvers to run")
    model = None if suggest is None or solver is None else {"package": suggest, "range": version_range,
                                                            "solver": solver}
    with hub_client(ctx) as client:
        try:
            doc = client.create_project(namespace, name, task=task, classes=_classes(classes), suggest=model,
                                        private=not public, queue_order=order, description=description,
                                        dataset_package=dataset_package)
        except HubError as exc:
            _explain(exc, project)
            raise
    if as_json:
        emit_json(doc)
        return
    click.echo(f"created {project} ({task}: {', '.join(_classes(classes))})"
               f"{'' if model is None else f'; suggestions from {suggest}@{version_range}:{solver}'}")
    click.echo(f"  next: cvflow annotate push {project} DIR;  then: cvflow annotate suggest {project}")


@annotate.command()
@click.argument("project", metavar="NAMESPACE/NAME")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="[DIR]",
                required=False)
@click.option("--split", help="The split these images belong to [default: train]; with --from-dataset, the "
                               "split to take [default: every one].")
@click.option("--from-dataset", "dataset", metavar="NS/NAME@VERSION",
              help="Take a dataset version's images (already on the hub) instead of a folder's.")
@click.option("--labels", is_flag=True, help="With --from-dataset: its labels too (those items are then done).")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_context
@handle_errors
def push(ctx: click.Context, project: str, directory: Path | None, split: str | None, dataset: str | None,
         labels: bool, as_json: bool) -> None:
    """Upload the PNG and JPEG files of DIR and add them to a project as items.

    Files are checked first (PNG or JPEG headers, flat names with distinct stems): one bad
    file and nothing is uploaded. Images the hub has already are not sent again, an upload
    that was cut off resumes, and images the project has already are skipped, so running
    the same push again finishes it. Subfolders are not read.

    With --from-dataset, the items are the images of a dataset version you may read, with
    their names and splits (nothing is uploaded or copied); --labels makes its labels the
    items' labels, so the project continues or corrects that dataset. Taking it again adds
    only what is missing.

    \b
    Examples:
      cvflow annotate push alice/street ./photos
      cvflow annotate push alice/street ./held-out --split val
      cvflow annotate push alice/street --from-dataset alice/street-data@1.0.0 --labels
    """
    if (directory is None) == (dataset is None):
        raise click.UsageError("name a folder of images (DIR) or --from-dataset NS/NAME@VERSION, one of the two")
    if labels and dataset is None:
        raise click.UsageError("--labels goes with --from-dataset: a folder's images have no labels")
    if dataset is not None:
        _push_dataset(ctx, project, dataset, split, labels, as_json)
        return
    assert directory is not None
    from cvflow.annotate.push import push_images
    from cvflow.progress import transfer_bar

    cfg = config(ctx)
    with hub_client(ctx, cfg=cfg) as client, transfer_bar(quiet=as_json) as bar:
        try:
            report = push_images(client, project, directory, split=split or "train", state_dir=cfg.state_dir,
                                 progress=bar)
        except HubError as exc:
            _explain(exc, project)
            raise
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"{project}: {report.added} images added, {report.existing} there already"
               f" ({report.uploaded} uploaded, {report.present} already on the hub)")


def _push_dataset(ctx: click.Context, project: str, spec: str, split: str | None, labels: bool,
                  as_json: bool) -> None:
    package, _, version = spec.strip().partition("@")
    if package.count("/") != 1 or not version:
        raise click.BadParameter(f"{spec!r}: write it as NS/NAME@VERSION, e.g. alice/street-data@1.0.0",
                                 param_hint="--from-dataset")
    with hub_client(ctx) as client:
        try:
            doc = client.add_items_from_dataset(project, package, version, labels=labels,
                                                splits=[split] if split else None)
        except HubError as exc:
            _explain(exc, project)
            raise
    if as_json:
        emit_json(doc)
        return
    click.echo(f"{project}: {doc.get('added', 0)} images added from {package}@{version}"
               f"{' with their labels' if labels else ''}, {doc.get('existing', 0)} there already")


@annotate.command()
@click.argument("project", metavar="NAMESPACE/NAME")
@click.option("--batch", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Items per claim (and per post of suggestions).")
@click.option("--follow", is_flag=True, help="Keep claiming when nothing is left (new images, a new model version).")
@click.option("--poll-max", type=click.FloatRange(0.1, 3600), default=30, show_default=True, metavar="S",
              help="With --follow: the longest wait between empty claims (waits double from 1 s up to it).")
@click.option("--workers-name", "worker_name", metavar="NAME",
              help="This worker's name on the hub [default: HOST:PID].")
@click.option("--lease", type=click.IntRange(10, 3600), metavar="S",
              help="Seconds the hub keeps claimed items for this worker [default: the hub's].")
@click.option("--concurrency", type=click.IntRange(1, 256),
              help="Images in flight to the runner at once [default: the solver's batch size, at least 4].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def suggest(ctx: click.Context, project: str, batch: int, follow: bool, poll_max: float, worker_name: str | None,
            lease: int | None, concurrency: int | None, as_json: bool) -> None:
    """Run a suggestion worker: the project's model suggests labels for every item.

    Claims items from the hub in batches, installs the exact model version the hub names
    (`cvflow install`), serves it (`cvflow run`; a runner already serving it is used), sends
    each image to its solver, and posts the suggestions. It exits when nothing is left and
    stops the runner it started; --follow keeps it waiting for more. Run as many as you
    like, on as many machines. Progress goes to stderr, the summary to stdout. Ctrl-C stops
    it; the items it held go back to the queue when their leases expire.

    \b
    Examples:
      cvflow annotate suggest alice/street
      cvflow annotate suggest alice/street --follow --batch 64 --workers-name gpu-1
    """
    from cvflow.annotate.worker import SuggestWorker, WorkerOptions, default_worker_name
    from cvflow.progress import transfer_bar

    cfg = config(ctx)
    options = WorkerOptions(batch=batch, follow=follow, name=worker_name or default_worker_name(), lease=lease,
                            concurrency=concurrency, idle_min=min(1.0, poll_max), idle_max=poll_max)

    def log(line: str) -> None:
        click.echo(line, err=True)

    with hub_client(ctx, cfg=cfg) as client, transfer_bar(quiet=as_json) as bar:
        worker = SuggestWorker(client, cfg, project, options, log=log, progress=bar)
        try:
            summary = worker.run()
        except KeyboardInterrupt:
            click.secho(f"interrupted after {worker.summary.items} items; the items this worker held go back to"
                        " the queue when their leases expire", fg="yellow", err=True)
            raise SystemExit(130) from None
        except HubError as exc:
            _explain(exc, project)
            raise
    if as_json:
        emit_json(summary.to_dict())
    else:
        click.echo(f"{project}: {summary.items} items, {summary.suggestions} suggestions in {summary.seconds:.1f} s"
                   f" ({summary.items_per_second:.1f} items/s while suggesting)"
                   + (f"; {summary.failed} items failed" if summary.failed else "")
                   + (f"; {summary.skipped} skipped by the hub" if summary.skipped else ""))
        dropped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in sorted(summary.dropped.items()))
        if dropped:
            click.echo(f"  dropped: {dropped}")
    if summary.failed:
        sys.exit(1)


@annotate.command()
@click.argument("project", metavar="NAMESPACE/NAME")
@click.option("--json", "as_json", is_flag=True, help="Print the project document as JSON.")
@click.pass_context
@handle_errors
def status(ctx: click.Context, project: str, as_json: bool) -> None:
    """Show a project: its settings, progress, and how each model version's suggestions fared.

    \b
    Examples:
      cvflow annotate status alice/street
      cvflow annotate status alice/street --json
    """
    with hub_client(ctx) as client:
        try:
            doc = client.project(project)
        except HubError as exc:
            _explain(exc, project)
            raise
    if as_json:
        emit_json(doc)
        return
    _print_status(doc)


def _print_status(doc: dict[str, Any]) -> None:
    name = doc.get("full_name") or f"{doc.get('namespace')}/{doc.get('name')}"
    click.echo(f"{name}  ({doc.get('task')}, {'private' if doc.get('private') else 'public'},"
               f" queue {doc.get('queue_order')})")
    click.echo(f"  classes: {', '.join(doc.get('classes') or [])}")
    model = doc.get("suggest")
    if model:
        running = doc.get("model_version")
        click.echo(f"  suggestions: {model.get('package')}@{model.get('range')}:{model.get('solver')}"
                   + (f" (now {running})" if running else " (no worker has run yet)"))
    else:
        click.echo("  suggestions: none (no suggestion model)")
    progress = doc.get("counts") or {}
    if progress:
        total = int(progress.get("total") or 0)
        parts = [f"{progress.get(k, 0)} {k}" for k in ("todo", "done", "approved")]
        extra = [f"{progress[k]} {k.replace('_', ' ')}" for k in sorted(progress)
                 if k not in ("todo", "done", "approved", "total")]
        click.echo(f"  items: {total} ({', '.join(parts + extra)})")
    stats = doc.get("stats") or {}
    rows = stats.get("per_model_version") or []
    if rows:
        table: list[tuple[str, ...]] = [("MODEL VERSION", "ITEMS", "ACCEPTED", "EDITED", "REJECTED", "ADDED",
                                         "MEDIAN S")]
        table += [(str(r.get("model_version") or "(none)"), *(str(r.get(k, 0)) for k in
                   ("items", "accepted", "edited", "rejected", "added")), f"{(r.get('median_ms') or 0) / 1000:.1f}")
                  for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            click.echo("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for snap in doc.get("snapshots") or []:
        click.echo(f"  snapshot {snap.get('package')}@{snap.get('version')}: {snap.get('items')} items,"
                   f" {snap.get('labels')} labels")


@annotate.command()
@click.argument("project", metavar="NAMESPACE/NAME")
@click.option("--version", "version", help="The dataset version to publish [default: the next minor].")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
@click.pass_context
@handle_errors
def snapshot(ctx: click.Context, project: str, version: str | None, as_json: bool) -> None:
    """Publish the project's accepted labels as a version of its dataset package.

    Items saved or approved go in, in the canonical dataset layout; the version defaults to
    the next minor of the latest one (1.0.0 first). Pull it like any package.

    \b
    Examples:
      cvflow annotate snapshot alice/street
      cvflow annotate snapshot alice/street --version 2.0.0
      cvflow pull alice/street-data
    """
    with hub_client(ctx) as client:
        try:
            doc = client.snapshot(project, version=version)
        except HubError as exc:
            _explain(exc, project)
            raise
    if as_json:
        emit_json(doc)
        return
    click.echo(f"published {doc.get('package')}@{doc.get('version')}: {doc.get('items')} items,"
               f" {doc.get('labels')} labels")

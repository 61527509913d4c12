"""``cvflow-hub mirror``: copy an upstream hub's packages here, and keep them in step."""

from __future__ import annotations

import json

import click

from hub.cli._common import open_context, parse_duration


@click.group()
def mirror() -> None:
    """Mirror an upstream hub: copy its packages here, and keep them in step."""


@mirror.command("sync")
@click.option("--upstream", required=True, help="The upstream hub's URL, e.g. https://hub.example.com.")
@click.option("--token", envvar="CVFLOW_HUB_UPSTREAM_TOKEN", help="An API token on the upstream (private packages).")
@click.option("--filter", "filters", multiple=True, metavar="PATTERN[@RANGE]",
              help="Copy only matching packages (and versions): alice, alice/detector, 'alice/det*', "
                   "'alice/detector@^1.2'. Repeatable [default: everything].")
@click.option("--latest", type=int, help="Copy at most the N highest selected versions of each package.")
@click.option("--every", "every", metavar="DURATION", help="Run again this long after each run ends (30s, 10m, 1h), "
              "until stopped (SIGTERM, Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="Print each run's report as JSON.")
@click.pass_context
def mirror_sync(ctx: click.Context, upstream: str, token: str | None, filters: tuple[str, ...], latest: int | None,
                every: str | None, as_json: bool) -> None:
    """Copy packages, versions and blobs from an upstream hub, from where the last run stopped.

    Reads the upstream's change feed from the last serial applied, verifies every blob's
    sha256 and size, and keeps versions and digests exactly as the upstream has them.
    A run that is cut short resumes where it stopped. Exits 1 if something failed
    (without --every).

    \b
    Examples:
      cvflow-hub mirror sync --upstream https://hub.example.com
      cvflow-hub mirror sync --upstream https://hub.example.com --filter acme --filter 'bob/det@^2' --latest 3
      cvflow-hub mirror sync --upstream https://hub.example.com --every 10m
    """
    import signal
    import threading

    from hub.mirror.filters import FilterError, Filters
    from hub.mirror.sync import Syncer

    try:
        selected = Filters.parse(filters, latest)
    except FilterError as exc:
        raise click.BadParameter(str(exc), param_hint="--filter/--latest") from exc
    interval = parse_duration(every) if every else None
    context = open_context(ctx)
    syncer = Syncer.create(context, upstream, token, selected, log=lambda line: click.echo(line, err=True))
    stop = threading.Event()
    if interval is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        while True:
            report = syncer.run()
            if as_json:
                click.echo(json.dumps(report.as_dict()))
            else:
                for failure in report.failures:
                    click.echo(f"failed: {failure['package']}: {failure['message']} [{failure['code']}]", err=True)
                click.echo(report.summary())
            if interval is None:
                if not report.ok:
                    raise SystemExit(1)
                return
            if stop.wait(interval):
                return
    finally:
        syncer.close()
        context.engine.dispose()


@mirror.command("status")
@click.pass_context
def mirror_status(ctx: click.Context) -> None:
    """Show each upstream this hub syncs from: the serial reached, filters, failures."""
    from hub.mirror.sync import mirror_states

    click.echo(json.dumps(mirror_states(open_context(ctx)), indent=2))


"""``cvflow-hub gc``: remove blobs nothing references."""

from __future__ import annotations

import json

import click

from hub.cli._common import open_context


@click.command()
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@click.option("--grace", type=int, help="Keep unreferenced blobs younger than this many seconds [default: 3600].")
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, grace: int | None) -> None:
    """Remove blobs nothing references, and abandoned uploads. Safe while the hub serves."""
    import dataclasses

    from hub.services.gc import collect_garbage

    context = open_context(ctx)
    settings = dataclasses.replace(context.settings, gc_grace=grace) if grace is not None else context.settings
    report = collect_garbage(context.engine, context.store, settings, dry_run=dry_run)
    click.echo(json.dumps({"dry_run": dry_run, **report.as_dict()}))


"""``cvflow-hub export`` and ``import``: air-gap bundles."""

from __future__ import annotations

import json

import click

from hub.cli._common import hub_errors, open_context


@click.command("export")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The bundle file to write.")
@click.option("--filter", "filters", multiple=True, metavar="PATTERN[@RANGE]",
              help="Export only matching packages (and versions), as for `mirror sync`. Repeatable "
                   "[default: everything public].")
@click.option("--latest", type=int, help="Export at most the N highest selected versions of each package.")
@click.option("--include-private", is_flag=True, help="Export private packages too (they stay private).")
@click.option("--source", help="A name for this hub, recorded in the bundle (imported packages show it).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def export(ctx: click.Context, out: str, filters: tuple[str, ...], latest: int | None, include_private: bool,
           source: str | None, as_json: bool) -> None:
    """Write packages, versions and blobs to one file, for a hub with no network path to this one.

    The bundle holds a manifest of every digest; `cvflow-hub import` on the other side (or
    `cvflow install --from` on an edge machine) verifies each of them. The bundle's own
    sha256 is printed: carry it separately and pass it to `import --sha256`.

    \b
    Example:
      cvflow-hub export --out models.cvflow --filter acme --latest 2
    """
    from pathlib import Path

    from hub.mirror.bundle import export_bundle
    from hub.mirror.filters import FilterError, Filters

    try:
        selected = Filters.parse(filters, latest)
    except FilterError as exc:
        raise click.BadParameter(str(exc), param_hint="--filter/--latest") from exc
    context = open_context(ctx)
    with hub_errors():
        report = export_bundle(context, Path(out), selected, include_private=include_private, source=source)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        click.echo(f"wrote {out}: {len(report.versions)} version(s), {report.blobs} blob(s), {report.bytes} bytes")
        click.echo(f"sha256 {report.sha256}")


@click.command("import")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option("--sha256", help="The bundle's sha256 as printed by export: refuse any other file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def import_(ctx: click.Context, bundle: str, sha256: str | None, as_json: bool) -> None:
    """Load a bundle made by `cvflow-hub export` or `cvflow bundle`, verifying every digest.

    All of it or nothing of it: a bundle changed after it was written, or holding a version
    this hub has with other content, is refused and the catalogue stays as it was.
    """
    from pathlib import Path

    from hub.mirror.bundle import import_bundle

    context = open_context(ctx)
    with hub_errors():
        report = import_bundle(context, Path(bundle), sha256=sha256)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        click.echo(f"imported {len(report.versions)} version(s) ({len(report.present)} already here), "
                   f"{report.blobs} new blob(s), {report.bytes} bytes")


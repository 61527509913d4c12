"""``cvflow bundle``: a package and its dependencies in one file, for a machine with no hub."""

from __future__ import annotations

from pathlib import Path

import click

from cvflow.commands._common import config, emit_json, handle_errors, hub_client
from cvflow.progress import format_size, transfer_bar


@click.command()
@click.argument("spec", metavar="NS/NAME[@RANGE]")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The bundle file to write.")
@click.option("--pre", is_flag=True, help="Allow pre-release versions everywhere, not only where a range names one.")
@click.option("--json", "as_json", is_flag=True, help="Print what the bundle holds as JSON.")
@click.pass_context
@handle_errors
def bundle(ctx: click.Context, spec: str, output: Path, pre: bool, as_json: bool) -> None:
    """Write a package and its resolved dependencies to one file, for `cvflow install --from`.

    Resolves like `cvflow install`, downloads what the cache lacks (verifying every file),
    and writes an archive with a manifest of digests. Carry it to a machine with no hub
    and install it there; every byte is checked again on the way in. The printed sha256
    identifies the file: pass it to `install --from FILE --sha256 ...` to refuse any other.

    \b
    Examples:
      cvflow bundle alice/detector -o detector.cvflow
      cvflow install --from detector.cvflow          # on the edge machine, no hub needed
    """
    from cvflow.bundle import make_bundle

    cfg = config(ctx)
    with hub_client(ctx, cfg=cfg) as client, transfer_bar(quiet=as_json) as bar:
        summary = make_bundle(client, cfg.cache(), spec, output, prereleases=pre, progress=bar)
    if as_json:
        emit_json({"path": str(summary.path), "sha256": summary.sha256, "packages": summary.packages,
                   "blobs": summary.blobs, "size": summary.size})
        return
    for name, version in summary.packages.items():
        click.echo(f"bundled {name}@{version}")
    click.echo(f"wrote {summary.path} ({format_size(summary.size)}, {summary.blobs} blob(s))")
    click.echo(f"sha256 {summary.sha256}")

"""The ``cvflow`` command line.

Commands print problems for people and exit 1 on any error, so scripts and CI can rely on
the exit status; ``--json`` output is for scripts. Each group of commands lives in
``cvflow/commands/``.
"""

from __future__ import annotations

import click

from cvflow import __version__
from cvflow.commands import register


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cvflow")
@click.option("--hub", metavar="URL", help="Hub to talk to [env CVFLOW_HUB, else the one `cvflow login` saved].")
@click.option("--token", metavar="TOKEN", help="API token [env CVFLOW_TOKEN, else the saved one].")
@click.pass_context
def main(ctx: click.Context, hub: str | None, token: str | None) -> None:
    """cvflow: publish, pull, install and run computer-vision model packages.

    \b
    Everything the client keeps lives under CVFLOW_HOME (default ~/.local/share/cvflow).
    """
    from cvflow.commands._common import Options

    ctx.obj = Options(hub=hub, token=token)


register(main)

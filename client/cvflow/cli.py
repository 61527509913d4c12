"""The ``cvflow`` command line.

Commands print problems for people and exit 1 on any error, so scripts and CI can rely on
the exit status; ``--json`` output is for scripts. Each group of commands lives in
``cvflow/commands/``, and is imported only when it runs (``cvflow.commands.COMMANDS``).
"""

from __future__ import annotations

import errno

import click

from cvflow import __version__
from cvflow.commands import COMMANDS
from cvflow.commands.lazy import LazyGroup


class _Commands(LazyGroup):
    """The ``cvflow`` group: what no command turned into a clear error is turned here."""

    def invoke(self, ctx: click.Context) -> object:
        from cvflow.commands._common import fail, os_error_message
        from cvflow.errors import CVFlowError

        try:
            return super().invoke(ctx)
        except CVFlowError as exc:
            fail(exc.message)
        except OSError as exc:  # CVFLOW_HOME not writable, a full disk, a file that vanished
            if exc.errno == errno.EPIPE:  # click already ends quietly when stdout is closed
                raise
            fail(os_error_message(exc))
        return None


@click.group(cls=_Commands, lazy_commands=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


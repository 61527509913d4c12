"""The ``cvflow-hub`` command: serve, migrate, manage users and tokens, collect garbage, mirror.

This package is a composition root (with ``hub/app.py``): its commands may import ``web`` and
``indexer``. One module per group of commands; :data:`COMMANDS` names them, and a command's
module is imported only when that command runs (or its own ``--help`` is asked).
"""

from __future__ import annotations

import click

from cvflow.commands.lazy import Entry, LazyGroup
from hub import __version__

#: Every command, its module and its short help (``tests/client/test_cli_startup.py`` checks the help).
COMMANDS = (
    Entry("serve", "hub.cli.serve", "serve", "Serve the hub: its web API and its website."),
    Entry("migrate", "hub.cli.migrate", "migrate",
          "Apply database migrations (run this before starting a new release in production)."),
    Entry("user", "hub.cli.accounts", "user", "Manage user accounts."),
    Entry("token", "hub.cli.accounts", "token", "Manage API tokens."),
    Entry("org", "hub.cli.accounts", "org", "Manage organisations."),
    Entry("gc", "hub.cli.gc", "gc", "Remove blobs nothing references, and abandoned uploads."),
    Entry("indexer", "hub.cli.indexer", "indexer", "Run a git indexer worker: index repositories as their jobs come in."),
    Entry("index", "hub.cli.indexer", "index",
          "Index the git repository at URL once, in the foreground, and print the result."),
    Entry("mirror", "hub.cli.mirror", "mirror", "Mirror an upstream hub: copy its packages here, and keep them in step."),
    Entry("export", "hub.cli.bundle", "export",
          "Write packages, versions and blobs to one file, for a hub with no network path to this one."),
    Entry("import", "hub.cli.bundle", "import_",
          "Load a bundle made by `cvflow-hub export` or `cvflow bundle`, verifying every digest."),
)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cvflow-hub")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="CVFLOW_HUB_DATA_DIR",
              help="Where the embedded database and blobs live [default: ~/.local/share/cvflow-hub].")
@click.option("--database-url", envvar="CVFLOW_HUB_DATABASE_URL",
              help="sqlite:///path or postgresql://user@host/db [default: SQLite in the data dir].")
@click.option("--storage-url", envvar="CVFLOW_HUB_STORAGE_URL",
              help="file:///path or s3://bucket/prefix [default: <data dir>/storage].")
def main(data_dir: str | None, database_url: str | None, storage_url: str | None) -> None:
    """Run and administer a CVFlow model hub.

    \b
    Quick start (embedded SQLite + files, with demo packages):
      cvflow-hub serve --demo
    Production (PostgreSQL + S3-compatible store, migrations applied separately):
      export CVFLOW_HUB_DATABASE_URL=postgresql://hub@db/hub
      export CVFLOW_HUB_STORAGE_URL=s3://models/hub
      cvflow-hub migrate && cvflow-hub serve --host 0.0.0.0

    \b
    Accounts and tokens:
      cvflow-hub user create alice            # prompts for a password
      cvflow-hub token create --user alice --scope publish:alice
    Token scopes: read, publish, publish:NAMESPACE, publish:NAMESPACE/NAME, admin.

    \b
    Git indexer (docs/indexer.md):
      cvflow-hub indexer                        # a worker; run one or many
      cvflow-hub index URL --user alice         # index one repository now

    Every option also reads a CVFLOW_HUB_* environment variable (see docs/configuration.md).
    """

"""``cvflow-hub migrate``: apply the database migrations."""

from __future__ import annotations

import click

from hub.cli._common import redact_url, settings_from


@click.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to migrate to.")
@click.pass_context
def migrate(ctx: click.Context, revision: str) -> None:
    """Apply database migrations (run this before starting a new release in production)."""
    from hub import db

    settings = settings_from(ctx)
    db.migrate(settings.database_url, revision)
    click.echo(f"database {redact_url(settings.database_url)} is at {revision}")


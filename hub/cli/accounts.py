"""``cvflow-hub user``, ``token`` and ``org``: accounts, API tokens and organisations."""

from __future__ import annotations

import sys

import click

from hub.cli._common import hub_errors, open_context


@click.group()
def user() -> None:
    """Manage user accounts."""


@user.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user a hub administrator.")
@click.option("--email", help="Contact address.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
@click.pass_context
def user_create(ctx: click.Context, name: str, admin: bool, email: str | None, password_stdin: bool) -> None:
    """Create a user NAME (also their namespace). Prompts for the password.

    \b
    Example:  echo "$PASSWORD" | cvflow-hub user create alice --password-stdin
    """
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    from hub.db import session_scope
    from hub.services import accounts

    context = open_context(ctx)
    with hub_errors(), session_scope(context.engine, write=True) as session:
        created = accounts.create_user(session, context.hasher, name, password, email=email, admin=admin)
    click.echo(f"created user {created.name}{' (admin)' if admin else ''}")


@click.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option("--user", "username", required=True, help="Whose token it is.")
@click.option("--scope", "scopes", multiple=True,
              help="read | publish | publish:NAMESPACE | publish:NAMESPACE/NAME | admin. Repeatable "
                   "[default: read, publish].")
@click.option("--name", default="cli", show_default=True, help="A label to recognise the token by.")
@click.option("--expires-in", type=int, help="Seconds until it expires [default: never].")
@click.option("--hub-url", default="http://127.0.0.1:8000", show_default=True, metavar="URL",
              help="The hub's address as clients reach it, for the `cvflow login` line printed next.")
@click.pass_context
def token_create(ctx: click.Context, username: str, scopes: tuple[str, ...], name: str, expires_in: int | None,
                 hub_url: str) -> None:
    """Create an API token and print it. It is shown only this once.

    Only the token goes to standard output, so `$(cvflow-hub token create ...)` captures it; the
    `cvflow login` line to run next goes to standard error (naming $CVFLOW_TOKEN when standard
    output is not a terminal, so the token itself is not shown).

    \b
    Examples:
      cvflow-hub token create --user alice
      export CVFLOW_TOKEN=$(cvflow-hub token create --user alice --hub-url https://hub.example.org)
    """
    from hub.db import session_scope
    from hub.security import DEFAULT_SCOPES, Scopes
    from hub.services import accounts

    try:
        parsed = Scopes.parse(list(scopes) or list(DEFAULT_SCOPES))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from exc
    context = open_context(ctx)
    with hub_errors(), session_scope(context.engine, write=True) as session:
        owner = accounts.get_user(session, username)
        _, secret = accounts.create_token(session, owner, parsed, name=name, expires_in=expires_in)
    click.echo(secret)
    shown = secret if sys.stdout.isatty() else '"$CVFLOW_TOKEN"'
    click.echo(f"next: cvflow login --hub {hub_url.rstrip('/')} --token {shown}", err=True)


@click.group()
def org() -> None:
    """Manage organisations."""


@org.command("create")
@click.argument("name")
@click.option("--owner", required=True, help="User who becomes the first owner.")
@click.pass_context
def org_create(ctx: click.Context, name: str, owner: str) -> None:
    """Create an organisation NAME owned by --owner."""
    from hub.db import session_scope
    from hub.services import accounts

    context = open_context(ctx)
    with hub_errors(), session_scope(context.engine, write=True) as session:
        accounts.create_org(session, accounts.get_user(session, owner), name)
    click.echo(f"created organisation {name}")


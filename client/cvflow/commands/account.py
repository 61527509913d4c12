"""Commands about who you are on a hub: login, logout, whoami."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import click

from cvflow.api import HubClient
from cvflow.commands._common import Options, config, emit_json, fail, handle_errors
from cvflow.config import forget_login, load_config, normalise_hub, save_login

LOGIN_SCOPES = ["read", "publish"]


def _describe(who: dict[str, Any], hub: str) -> str:
    scopes = ", ".join(str(s) for s in who.get("scopes") or []) or "none"
    admin = " (admin)" if who.get("admin") else ""
    return f"{who.get('name')}{admin} at {hub} (token scopes: {scopes})"


@click.command()
@click.option("--hub", "hub_url", metavar="URL", help="The hub to log in to [default: as for every command].")
@click.option("-u", "--username", metavar="NAME", help="Your user name on the hub (prompted for if missing).")
@click.option("--token", "token", metavar="TOKEN", help="Save this API token instead of logging in with a password.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.pass_context
@handle_errors
def login(ctx: click.Context, hub_url: str | None, username: str | None, token: str | None,
          password_stdin: bool) -> None:
    """Log in to a hub and save a token for it; the hub becomes the default one.

    They go into CVFLOW_HOME/config.toml, readable by you only (mode 0600), which keeps
    one token per hub: a token is only ever sent to the hub it was saved for.
    With a user name and password, the hub issues a new token for reading and publishing.
    With --token, the token is checked against the hub and saved.

    \b
    Examples:
      cvflow login --hub https://hub.example.org
      echo "$PASSWORD" | cvflow login -u alice --password-stdin
      cvflow login --token cvf_...
    """
    token = token or (ctx.find_object(Options) or Options()).token  # `cvflow --token T login` means the same
    cfg = config(ctx)
    hub = normalise_hub(hub_url) if hub_url else cfg.hub
    if token and (username or password_stdin):
        fail("give either --token, or a user name and password, not both")
    if token:
        with HubClient(hub, token) as client:
            who = client.whoami()
    else:
        if password_stdin and not username:
            fail("--password-stdin needs --username")
        username = username or click.prompt("user name", err=True)
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("password", hide_input=True, err=True)
        if not password:
            fail("the password is empty")
        with HubClient(hub) as client:
            issued = client.login(username, password, scopes=LOGIN_SCOPES,
                                  name=f"cvflow login on {socket.gethostname()}")
        token = str(issued["token"])
        with HubClient(hub, token) as client:
            who = client.whoami()
    path = save_login(cfg.home, hub, token)
    click.echo(f"logged in as {_describe(who, hub)}")
    click.echo(f"saved the token for {hub} in {path}")
    if load_config(hub=hub).token_source == "environment":
        click.secho(f"note: CVFLOW_TOKEN is set and wins over the saved token for {hub};"
                    " unset it to use this login", fg="yellow", err=True)


@click.command()
@click.option("--hub", "hub_url", metavar="URL", help="The hub to log out of [default: as for every command].")
@click.pass_context
@handle_errors
def logout(ctx: click.Context, hub_url: str | None) -> None:
    """Forget the token saved for one hub (tokens for other hubs, and the default hub, stay).

    \b
    Examples:
      cvflow logout
      cvflow logout --hub https://hub.example.org
    """
    cfg = config(ctx)
    hub = normalise_hub(hub_url) if hub_url else cfg.hub
    if forget_login(cfg.home, hub):
        click.echo(f"logged out: forgot the token for {hub}")
    else:
        click.echo(f"not logged in to {hub}: no token is saved for it")
    if os.environ.get("CVFLOW_TOKEN"):
        click.secho("note: CVFLOW_TOKEN is still set in the environment", fg="yellow", err=True)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the hub's answer as JSON.")
@click.pass_context
@handle_errors
def whoami(ctx: click.Context, as_json: bool) -> None:
    """Show the user and token scopes the hub sees.

    \b
    Examples:
      cvflow whoami
      cvflow --hub https://hub.example.org whoami --json
    """
    cfg = config(ctx)
    if not cfg.token:
        fail(f"not logged in to {cfg.hub}: run `cvflow login` or set CVFLOW_TOKEN")
    with HubClient(cfg.hub, cfg.token) as client:
        who = client.whoami()
    if as_json:
        emit_json({**who, "hub": cfg.hub})
    else:
        click.echo(_describe(who, cfg.hub))

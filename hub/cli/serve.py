"""``cvflow-hub serve``: the hub's web server."""

from __future__ import annotations

import errno
import shlex
import socket
from typing import Any, NoReturn

import click

from hub import __version__
from hub.cli._common import redact_url, settings_from


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 0.0.0.0 for all.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port to listen on; 0 for any free one.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Same as the global option.")
@click.option("--database-url", help="Same as the global option.")
@click.option("--storage-url", help="Same as the global option.")
@click.option("--demo", is_flag=True, help="Publish the example packages from examples/ and create the demo annotation"
              " project demo/digits-shifted (once; skips what exists).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_context
def serve(ctx: click.Context, /, host: str, port: int, demo: bool, log_level: str, **explicit: Any) -> None:
    """Serve the hub: its web API and its website.

    On the embedded SQLite default, migrations are applied at start; on PostgreSQL run
    `cvflow-hub migrate` first (or set CVFLOW_HUB_AUTO_MIGRATE=1).
    """
    import uvicorn

    from hub.app import build_context, create_app

    _check_port(host, port)  # before migrations and the demo: a busy port fails at once, in one line
    settings = settings_from(ctx, **explicit)
    context = build_context(settings)
    if demo:
        from hub.demo import FINETUNE_EVERY, PROJECT, WORKER_HINT, load_demo

        for line in load_demo(context):
            click.echo(line)
        root = ctx.find_root().params  # the worker's token comes from this hub's database
        data_dir = explicit.get("data_dir") or root.get("data_dir")
        hub = "cvflow-hub" + (f" --data-dir {shlex.quote(str(data_dir))}" if data_dir else "")
        if explicit.get("database_url") or root.get("database_url"):
            hub += " --database-url ..."
        click.echo(WORKER_HINT.format(project=PROJECT, url=f"http://{host}:{port}", hub=hub, every=FINETUNE_EVERY))
    app = create_app(settings, context=context)
    click.echo(f"cvflow-hub {__version__}: database {redact_url(settings.database_url)}, storage {context.store.url}")
    from hub.redact import uvicorn_log_config

    # Tokens and Authorization values never reach the logs (the access log prints query strings).
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=True, timeout_graceful_shutdown=5,
                    log_config=uvicorn_log_config())
    finally:
        context.close()  # the app does not close a context it was given



def _check_port(host: str, port: int) -> None:
    """Exit 1 with one line if ``host:port`` cannot be listened on (taken, not allowed, no such address).

    A test socket binds and closes with SO_REUSEADDR, as uvicorn's own does, so a port left in
    TIME_WAIT by a hub that just stopped is not taken for a busy one.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except socket.gaierror as exc:
        _fail(f"cannot listen on {where}: no such address ({exc.strerror}); give --host an address of this machine")
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            _fail(f"cannot listen on {where}: the port is in use (another hub or program holds it);"
                  f" stop it, or choose another port with --port, e.g. --port {_next_free(host, port)}")
        if exc.errno == errno.EACCES:
            _fail(f"cannot listen on {where}: permission denied (ports below 1024 need privileges);"
                  " choose a port from 1024 up with --port, e.g. --port 8000")
        _fail(f"cannot listen on {where}: {exc.strerror or exc}; check --host and --port")


def _next_free(host: str, port: int) -> int:
    """A port near ``port`` that is free now, to suggest (``port + 1`` when none is found quickly)."""
    for candidate in range(port + 1, min(port + 20, 65536)):
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                probe.bind((host, candidate))
                return candidate
        except OSError:
            continue
    return port + 1


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)

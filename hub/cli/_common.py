"""What every ``cvflow-hub`` command shares: settings from the global options, the hub's context,
hub errors as one line and exit status 1, and URLs and durations for people."""

from __future__ import annotations

from typing import Any, Literal

import click


def settings_from(ctx: click.Context, **explicit: Any) -> Any:
    """The hub's settings: a command's own options, else the global ones, else the environment."""
    from hub.settings import Settings

    base = ctx.find_root().params
    return Settings.create(
        data_dir=explicit.get("data_dir") or base.get("data_dir"),
        database_url=explicit.get("database_url") or base.get("database_url"),
        storage_url=explicit.get("storage_url") or base.get("storage_url"),
    )


def open_context(ctx: click.Context) -> Any:
    """The hub's context (engine, blob store, settings) built from the command line's settings."""
    from hub.app import build_context

    return build_context(settings_from(ctx))


class hub_errors:
    """Turn hub errors into a one-line message and exit status 1."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> Literal[False]:
        from hub.errors import HubError

        if isinstance(exc, HubError):
            click.echo(f"error: {exc.message} [{exc.code}]", err=True)
            raise SystemExit(1)
        return False


def redact_url(url: str) -> str:
    """A database URL without its password, to print."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``10m``, ``1h``, ``2d`` or a bare number; BadParameter otherwise."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration such as 30s, 10m, 1h", param_hint="--every")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]

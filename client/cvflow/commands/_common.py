"""What every command shares: options, the hub client, errors, JSON output."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click

from cvflow.config import Config, home_dir, load_config
from cvflow.errors import CVFlowError, ValidationError

if TYPE_CHECKING:
    from cvflow.api import HubClient

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Options:
    hub: str | None = None
    token: str | None = None


def config(ctx: click.Context | None = None) -> Config:
    ctx = ctx or click.get_current_context()
    opts = ctx.find_object(Options) or Options()
    return load_config(hub=opts.hub, token=opts.token)


def hub_client(ctx: click.Context | None = None, *, cfg: Config | None = None) -> HubClient:
    from cvflow.api import HubClient  # httpx: only for commands that talk to a hub

    cfg = cfg or config(ctx)
    return HubClient(cfg.hub, cfg.token)


def fail(message: str, *, code: int = 1) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    raise SystemExit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print library errors as one clear line (plus problems) and exit 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ValidationError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            for problem in exc.problems:
                if problem.message != exc.message:
                    click.secho(f"  - {problem}", fg="red", err=True)
            raise SystemExit(1) from None
        except CVFlowError as exc:
            fail(exc.message)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            raise SystemExit(130) from None

    return wrapper


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error; one under CVFLOW_HOME says how to fix that."""
    what = exc.strerror or str(exc)
    where = exc.filename
    if where is None:
        return what
    path = Path(os.fsdecode(where))
    home = home_dir()
    if path == home or home in path.parents:
        return (f"cannot use CVFLOW_HOME ({home}): {what}: {path}; make it a directory you can write,"
                " or point CVFLOW_HOME at one")
    return f"{what}: {path}"


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")

"""What every command shares: options, the hub client, errors, JSON output."""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click

from cvflow.config import Config, home_dir, load_config
from cvflow.errors import CVFlowError, HubAuthError, HubError, HubNotFoundError, HubUnavailableError, ValidationError

if TYPE_CHECKING:
    from cvflow.api import HubClient

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Options:
    hub: str | None = None
    token: str | None = None


def config(ctx: click.Context | None = None) -> Config:
    """The command's configuration; a mended hub URL is noted on stderr, once per command."""
    ctx = ctx or click.get_current_context()
    opts = ctx.find_object(Options) or Options()
    cfg = load_config(hub=opts.hub, token=opts.token)
    meta = ctx.find_root().meta
    if cfg.hub_note and not meta.get("cvflow.hub_noted"):
        meta["cvflow.hub_noted"] = True
        click.secho(f"note: {cfg.hub_note}", fg="yellow", err=True)
    return cfg


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
        except HubError as exc:
            fail("; ".join([exc.message, *_hints(exc)]))
        except CVFlowError as exc:
            fail(exc.message)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            raise SystemExit(130) from None

    return wrapper


def _hints(exc: HubError) -> list[str]:
    """Lines that tell the user what to do about a hub error: a close name, a token's origin, --offline."""
    ctx = click.get_current_context(silent=True)
    if isinstance(exc, HubNotFoundError):
        found = exc.details.get("suggestions")
        names = [n for n in found if isinstance(n, str)][:3] if isinstance(found, list) else []
        return [f"did you mean {' or '.join(names)}?"] if names else []
    if ctx is None:
        return []
    try:
        cfg = config(ctx)
    except CVFlowError:
        return []
    if isinstance(exc, HubAuthError) and exc.status == 401 and exc.code == "unauthenticated":
        return [_token_hint(cfg)]
    if isinstance(exc, HubUnavailableError) and exc.status == 0:
        return _unreachable_hints(ctx, cfg)
    return []


def _token_hint(cfg: Config) -> str:
    login = f"cvflow login --hub {cfg.hub}"
    if cfg.token_source == "option":
        return f"the hub refused the token given with --token; check it, or run `{login}` and drop --token"
    if cfg.token_source == "environment":
        return (f"the hub refused the token in the CVFLOW_TOKEN environment variable; fix or unset it,"
                f" or run `{login}` and unset it")
    if cfg.token_source == "saved":
        return (f"the hub refused the token saved for {cfg.hub} in {cfg.config_file};"
                f" run `{login}` to replace it")
    return f"you have no token for {cfg.hub}: run `{login}`, or give --token or CVFLOW_TOKEN"


def _unreachable_hints(ctx: click.Context, cfg: Config) -> list[str]:
    """For a hub that cannot be reached: where its URL came from, and --offline when the cache has the package."""
    where = {"option": "--hub", "environment": "CVFLOW_HUB", "saved": "the saved login (`cvflow login`)",
             "default": "the default; set --hub or CVFLOW_HUB"}[cfg.hub_source]
    hints = [f"is it running? (that URL came from {where})"]
    spec, offline = ctx.params.get("spec"), ctx.params.get("offline")
    if isinstance(spec, str) and offline is False and _cached(cfg, spec):
        hints.append(f"{_package_of(spec)} is in the cache; to use it without the hub, run: {_with_offline(ctx)}")
    return hints


def _package_of(spec: str) -> str:
    return spec.partition(":")[0].partition("@")[0].strip()


def _cached(cfg: Config, spec: str) -> bool:
    """Whether the cache holds a version of the package ``spec`` asks for (in its range, if any)."""
    from cvflow.pull import choose_version, parse_spec

    try:
        name, rng = parse_spec(spec.partition(":")[0])
        versions = [{"version": d.get("version")} for d in cfg.cache().version_docs(name)]
        if not versions:
            return False
        choose_version(name, rng, versions, prereleases=True)
    except (CVFlowError, OSError):
        return False
    return True


def _with_offline(ctx: click.Context) -> str:
    """The command line as typed, with --offline added (rebuilt from its arguments when not run as a script)."""
    root = ctx.find_root()
    if os.path.basename(sys.argv[0]) == root.info_name:
        return shlex.join([str(root.info_name), *sys.argv[1:], "--offline"])
    return f"{ctx.command_path} {shlex.quote(str(ctx.params['spec']))} --offline"


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


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 solver``, ``2 solvers``, ``0 files``: a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")

"""Commands about the local cache: pull, and cache ls / prune / verify."""

from __future__ import annotations

import contextlib

import click

from cvflow.api import HubClient
from cvflow.commands._common import config, counted, emit_json, fail, handle_errors
from cvflow.config import Config
from cvflow.names import PackageName
from cvflow.progress import format_size, transfer_bar
from cvflow.pull import parse_spec
from cvflow.pull import pull as pull_package
from cvflow.versions import Version


@click.command()
@click.argument("spec", metavar="NAME[@RANGE]")
@click.option("--offline", is_flag=True, help="Use the local cache only; fail if what is asked for is not there.")
@click.option("--pre", is_flag=True, help="Let a range choose pre-release versions.")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Files downloaded at once.")
@click.option("--json", "as_json", is_flag=True, help="Print {name, version, path, files} as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or progress lines.")
@click.pass_context
@handle_errors
def pull(ctx: click.Context, spec: str, offline: bool, pre: bool, jobs: int, as_json: bool, quiet: bool) -> None:
    """Download a package version into the shared cache and print where it is.

    Prints the snapshot's path on stdout, and on stderr which version came from which hub.

    NAME is namespace/name; RANGE picks the highest version that matches and is not yanked
    (exact, ^1.2, ~1.2, >=1.0, <2, comma-joined, or *; the default is *). An exact version
    may pick a yanked one, with a warning. Only files the cache lacks are downloaded, each is
    checked against its sha256, and a cut download resumes where it stopped.

    \b
    Examples:
      cvflow pull alice/detector
      cvflow pull alice/detector@^1.2
      cvflow pull alice/detector@1.4.0 --json
      cvflow pull alice/detector --offline      # from the cache only
    """
    cfg = config(ctx)
    cache = cfg.cache()
    # An OSError from the cache folder itself (permissions, a read-only disk) becomes one line
    # naming CVFLOW_HOME in cvflow.cli, as for every command.
    with contextlib.ExitStack() as stack:
        client = None if offline else stack.enter_context(HubClient(cfg.hub, cfg.token))
        bar = stack.enter_context(transfer_bar(quiet=quiet))
        path = pull_package(client, cache, spec, offline=offline, prereleases=pre, workers=jobs, progress=bar)
    name = parse_spec(spec)[0]
    if as_json:
        doc = cache.read_version(path) or {}
        files = [{k: f.get(k) for k in ("path", "size", "sha256")} for f in doc.get("files") or []]
        emit_json({"name": name, "version": path.name, "path": str(path), "files": files})
        return
    if not quiet:  # on stderr: stdout stays the path alone, for $(cvflow pull ...)
        source = "the cache (offline)" if client is None else client.base_url
        click.echo(f"pulled {name}@{path.name} from {source}", err=True)
    click.echo(str(path))


@click.group()
def cache() -> None:
    """Look after the local cache of pulled packages (CVFLOW_HOME/cache).

    \b
    Examples:
      cvflow cache ls
      cvflow cache prune --dry-run
      cvflow cache verify
    """


@cache.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print [{name, version, size, path}] as JSON.")
@click.pass_context
@handle_errors
def ls(ctx: click.Context, as_json: bool) -> None:
    """List the cached package versions and their sizes.

    \b
    Example:
      cvflow cache ls --json
    """
    the_cache = config(ctx).cache()
    found = the_cache.ls()
    if as_json:
        emit_json([{"name": v.name, "version": v.version, "size": v.size,
                    "path": str(the_cache.snapshot_path(v.name, v.version))} for v in found])
        return
    if not found:
        click.echo(f"the cache at {the_cache.root} is empty")
        return
    width = max(len(v.name) for v in found)
    for v in found:
        click.echo(f"{v.name:<{width}}  {v.version:<12}  {format_size(v.size):>10}")
    click.echo(f"{counted(len(found), 'version')}, {format_size(sum(v.size for v in found))} of files")


@cache.command()
@click.option("--keep", "keep_specs", multiple=True, metavar="NAME@VERSION",
              help="Also keep this version (repeatable).")
@click.option("--all", "remove_all", is_flag=True,
              help="Do not keep the newest version of each package, only installed ones and --keep.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.pass_context
@handle_errors
def prune(ctx: click.Context, keep_specs: tuple[str, ...], remove_all: bool, dry_run: bool) -> None:
    """Remove cached versions that are not needed, and the files only they used.

    Kept: the newest cached version of each package (unless --all), versions that are
    installed, and every --keep. Downloads in progress and partial files are removed too.

    \b
    Examples:
      cvflow cache prune --dry-run
      cvflow cache prune --keep alice/detector@1.2.0
      cvflow cache prune --all
    """
    cfg = config(ctx)
    the_cache = cfg.cache()
    found = the_cache.ls()
    keep = {_parse_exact(s) for s in keep_specs} | _installed_versions(cfg)
    if not remove_all:
        newest: dict[str, str] = {}
        for v in found:  # ls sorts by version within a name: the last one is the newest
            newest[v.name] = v.version
        keep |= set(newest.items())
    doomed = [v for v in found if (v.name, v.version) not in keep]
    freed = the_cache.prune(keep, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for v in doomed:
        click.echo(f"{verb} {v.name}@{v.version}")
    click.echo(f"{'would free' if dry_run else 'freed'} {format_size(freed)}")


@cache.command()
@click.pass_context
@handle_errors
def verify(ctx: click.Context) -> None:
    """Hash every cached file again; remove the damaged ones so the next pull fetches them.

    \b
    Example:
      cvflow cache verify
    """
    the_cache = config(ctx).cache()
    bad = the_cache.verify_all()
    if bad:
        for digest in bad:
            click.secho(f"damaged and removed: blob {digest}", fg="red", err=True)
        fail(f"{counted(len(bad), 'cached file was', 'cached files were')} damaged;"
             " pull the packages again to download them")
    click.echo("every cached file matches its sha256")


def _parse_exact(spec: str) -> tuple[str, str]:
    name, _, version = spec.partition("@")
    PackageName.parse(name)
    return name, str(Version.parse(version))


def _installed_versions(cfg: Config) -> set[tuple[str, str]]:
    """(name, version) of every cached version an installed package's venv uses."""
    from cvflow.install import installed_versions  # only prune needs the installer

    return installed_versions(cfg)

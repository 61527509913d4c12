"""Commands that install packages into their own virtual environments: install, list, uninstall."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cvflow.commands._common import config, emit_json, handle_errors, hub_client
from cvflow.install import InstallReport
from cvflow.install import install as run_install
from cvflow.install import list_installed as installed_packages
from cvflow.install import uninstall as run_uninstall

if TYPE_CHECKING:
    from cvflow.api import HubClient
    from cvflow.install.before import BeforeInstall
    from cvflow.progress import Transfer


def refuse_dataset(client: HubClient, spec: str) -> None:
    """Refuse a dataset package before anything is downloaded: its package document says its kind.

    The install checks each version it would install again, after resolving (offline, locked
    and from bundles too); this only spares the download of a dataset it would refuse.

    Raises:
        DatasetNotInstallableError: the package is a dataset.
    """
    from cvflow.errors import HubNotFoundError
    from cvflow.install import DatasetNotInstallableError, parse_spec

    name, text = parse_spec(spec)
    try:
        doc = client.package(name)
    except HubNotFoundError as exc:
        if exc.details.get("suggestions"):
            raise  # a mistyped name: the CLI prints the hub's close names
        return  # the install reports it, as for any name
    if doc.get("kind") == "dataset":
        raise DatasetNotInstallableError(f"{doc.get('name') or name}@{text}" if text else str(doc.get("name") or name))


def lock_target(lock_file: Path | None, locked: bool) -> Path | None:
    """Where ``cvflow install`` reads or writes its lock: ``--lock`` when given; else ``cvflow.lock`` here
    when reading one (``--locked``) or when this folder is a package's (it holds ``cvflow.toml``); else nowhere."""
    if lock_file is not None:
        return lock_file
    from cvflow.manifest import MANIFEST_FILENAME

    here = Path("cvflow.lock")
    return here if locked or Path(MANIFEST_FILENAME).is_file() else None


def before_install_consent(agreed: bool, bar: Transfer | None = None) -> BeforeInstall:
    """What a legacy CVPM package's ``before_install`` script gets: run when the user agreed
    (``--run-before-install``), else a yes/no question when stdin is a terminal (``bar``'s
    progress bars, if drawn, pause while it is asked), else not run (and a line on stderr says
    so and how to run it)."""
    from cvflow.install.before import BeforeInstall

    def ask(package: str, script: str) -> bool:
        progress = getattr(bar, "_progress", None)  # rich's redraws would hide the question
        if progress is not None:
            progress.stop()
        try:
            return click.confirm(f"{package} asks to run {script}, a shell script from the package, before install."
                                 " Run it?", default=False, err=True)
        finally:
            if progress is not None:
                progress.start()

    def say(line: str) -> None:
        click.echo(line, err=True)

    return BeforeInstall(run=agreed, ask=ask if sys.stdin.isatty() else None, say=say)


RUN_BEFORE_INSTALL_HELP = ("Run a legacy CVPM package's before_install shell script (without asking). Without it"
                           " the script runs only if you answer yes at a terminal.")


@click.command()
@click.argument("spec", metavar="[NS/NAME[@RANGE]]", required=False)
@click.option("--offline", is_flag=True, help="Use the local cache only; never contact the hub.")
@click.option("--locked", is_flag=True,
              help="Install exactly what the lock file says (versions and file digests); do not resolve.")
@click.option("--lock", "--lock-file", "lock_file", type=click.Path(dir_okay=False, path_type=Path),
              metavar="PATH", help="Write the lock here (with --locked: read it from here)."
              " [default: ./cvflow.lock inside a package folder (one with cvflow.toml), else no lock]")
@click.option("--pre", is_flag=True, help="Allow pre-release versions everywhere, not only where a range names one.")
@click.option("--from", "bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Install from a bundle made by `cvflow bundle` (or `cvflow-hub export`); no hub is contacted.")
@click.option("--sha256", "bundle_sha256", help="With --from: the bundle's sha256; refuse any other file.")
@click.option("-v", "--verbose", is_flag=True, help="Show the installer's own output (uv or pip) as it runs.")
@click.option("--run-before-install", is_flag=True, help=RUN_BEFORE_INSTALL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print what was installed as JSON.")
@click.pass_context
@handle_errors
def install(ctx: click.Context, spec: str | None, offline: bool, locked: bool, lock_file: Path | None, pre: bool,
            bundle: Path | None, bundle_sha256: str | None, verbose: bool, as_json: bool,
            run_before_install: bool) -> None:
    """Install a package and its package dependencies, each in its own virtual environment.

    Resolves the newest versions that satisfy every range (yanked versions only when pinned
    exactly, pre-releases only when a range names one or with --pre), downloads everything
    into the shared cache, and creates one venv per package version under CVFLOW_HOME/venvs/
    with the package's Python requirements installed and its files importable. Prints each
    step on stderr; -v adds the installer's own output.

    Requirements are installed by uv from one wheel cache, CVFLOW_HOME/cache/uv (UV_CACHE_DIR
    wins), hard-linked into each venv, so a second torch package adds little disk. Your pip
    configuration (pip.conf, PIP_INDEX_URL, PIP_FIND_LINKS, ...) is passed on to uv.

    The resolution is written to cvflow.lock only inside a package folder (one holding
    cvflow.toml) or where --lock says. Ends with the `cvflow run` line that serves the package.

    \b
    Ranges: 1.2.3 (exactly), ^1.2 (>=1.2.0,<2.0.0), ~1.2 (>=1.2.0,<1.3.0), >=1.0,<2, *
    \b
    Examples:
      cvflow install alice/detector              # newest release
      cvflow install 'alice/detector@^1.2'
      cvflow install alice/detector --lock app.lock
      cvflow install --locked                    # reproduce ./cvflow.lock exactly
      cvflow install alice/detector --offline    # from the cache, no network
      cvflow install --from detector.cvflow      # from a bundle, no hub at all
      cvflow install alice/old-cvpm --run-before-install   # run its CVPM setup script
      cvflow install -v alice/detector           # with uv's own output
      cvflow list
    """
    if spec is None and not locked and bundle is None:
        raise click.UsageError("name a package to install (NS/NAME[@RANGE]), or use --locked or --from")
    from cvflow.progress import step_printer, transfer_bar  # rich: only when installing, not for `cvflow list`

    cfg = config(ctx)
    lock_path = lock_target(lock_file, locked)

    cache = cfg.cache()
    if bundle is not None:
        if locked:
            raise click.UsageError("--from installs what the bundle holds; it does not combine with --locked")
        import tempfile

        from cvflow.bundle import install_from

        with tempfile.TemporaryDirectory(prefix="cvflow-lock-") as scratch, transfer_bar(quiet=as_json) as bar:
            report = install_from(bundle, cache, cfg, spec, lock_path=lock_path or Path(scratch) / "cvflow.lock",
                                  sha256=bundle_sha256, prereleases=pre, progress=bar)
            if lock_path is None:
                report.lock_path = None
        _done(report, as_json)
        return
    client = None if offline else hub_client(ctx, cfg=cfg)
    try:
        if client is not None and spec is not None and not locked:
            refuse_dataset(client, spec)
        with transfer_bar(quiet=as_json) as bar:
            report = run_install(client, cache, cfg, spec, offline=offline, locked=locked,
                                 before_install=before_install_consent(run_before_install, bar),
                                 lock_path=lock_path or Path("cvflow.lock"), write_lock_file=lock_path is not None,
                                 prereleases=pre, progress=bar, verbose=verbose,
                                 steps=step_printer(bar, verbose=verbose, quiet=as_json))
    finally:
        if client is not None:
            client.close()
    _done(report, as_json)


def _done(report: InstallReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_report(report)


def _print_report(report: InstallReport) -> None:
    built = set(report.built)
    for p in report.packages:
        key = f"{p.name}@{p.version}"
        state = "installed" if key in built else "already installed"
        click.echo(f"{state} {key}  ->  {p.venv}")
    if report.lock_path is not None:
        click.echo(f"{'followed' if report.locked else 'wrote'} {report.lock_path}")
    roots = [p for p in report.packages if p.name in report.requested]
    for p in roots:
        click.echo(f"its Python: {p.python}")
    for p in roots:
        if _has_solvers(Path(p.snapshot)):
            click.echo(f"run it with: cvflow run {p.name}@{p.version}")


def _has_solvers(snapshot: Path) -> bool:
    from cvflow.manifest import MANIFEST_FILENAME, parse_manifest

    try:
        return bool(parse_manifest((snapshot / MANIFEST_FILENAME).read_text(encoding="utf-8")).solvers)
    except Exception:  # a snapshot it cannot read is reported by `cvflow run`, not here
        return False


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the installed packages as JSON.")
@click.pass_context
@handle_errors
def list_installed(ctx: click.Context, as_json: bool) -> None:
    """List installed package versions and their virtual environments.

    \b
    Examples:
      cvflow list
      cvflow list --json
    """
    records = installed_packages(config(ctx))
    if as_json:
        emit_json([asdict(r) for r in records])
        return
    if not records:
        click.echo("nothing installed; try `cvflow install NS/NAME`")
        return
    width = max(len(f"{r.name}@{r.version}") for r in records)
    for r in records:
        deps = ", ".join(f"{n}@{v}" for n, v in r.dependencies.items())
        click.echo(f"{r.name}@{r.version}".ljust(width) + f"  {r.venv}" + (f"  (uses {deps})" if deps else ""))


@click.command()
@click.argument("spec", metavar="NS/NAME[@VERSION]")
@click.pass_context
@handle_errors
def uninstall(ctx: click.Context, spec: str) -> None:
    """Remove an installed package's virtual environment (every version, or just VERSION).

    The downloaded files stay in the cache; `cvflow cache prune` removes those.

    \b
    Examples:
      cvflow uninstall alice/detector
      cvflow uninstall alice/detector@1.2.0
    """
    for r in run_uninstall(config(ctx), spec):
        click.echo(f"uninstalled {r.name}@{r.version} (removed {r.venv})")

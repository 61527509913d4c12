"""The ``cvflow-hub`` command: serve, migrate, manage users and tokens, collect garbage, mirror."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from hub import __version__


def _settings(ctx: click.Context, **explicit: Any) -> Any:
    from hub.settings import Settings

    base = ctx.find_root().params
    return Settings.create(
        data_dir=explicit.get("data_dir") or base.get("data_dir"),
        database_url=explicit.get("database_url") or base.get("database_url"),
        storage_url=explicit.get("storage_url") or base.get("storage_url"),
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 0.0.0.0 for all.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Same as the global option.")
@click.option("--database-url", help="Same as the global option.")
@click.option("--storage-url", help="Same as the global option.")
@click.option("--demo", is_flag=True, help="Publish the example packages from examples/ (once; skips existing).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, demo: bool, log_level: str, **explicit: Any) -> None:
    """Serve the hub's web API (and, later, its website).

    On the embedded SQLite default, migrations are applied at start; on PostgreSQL run
    `cvflow-hub migrate` first (or set CVFLOW_HUB_AUTO_MIGRATE=1).
    """
    import uvicorn

    from hub.app import build_context, create_app

    settings = _settings(ctx, **explicit)
    context = build_context(settings)
    if demo:
        from hub.demo import load_examples

        for line in load_examples(context):
            click.echo(line)
    app = create_app(settings, context=context)
    click.echo(f"cvflow-hub {__version__}: database {_redact(settings.database_url)}, storage {context.store.url}")
    from hub.redact import uvicorn_log_config

    # Tokens and Authorization values never reach the logs (the access log prints query strings).
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=True, timeout_graceful_shutdown=5,
                log_config=uvicorn_log_config())


@main.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to migrate to.")
@click.pass_context
def migrate(ctx: click.Context, revision: str) -> None:
    """Apply database migrations (run this before starting a new release in production)."""
    from hub import db

    settings = _settings(ctx)
    db.migrate(settings.database_url, revision)
    click.echo(f"database {_redact(settings.database_url)} is at {revision}")


@main.group()
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

    context = _context(ctx)
    with _errors(), session_scope(context.engine, write=True) as session:
        created = accounts.create_user(session, context.hasher, name, password, email=email, admin=admin)
    click.echo(f"created user {created.name}{' (admin)' if admin else ''}")


@main.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option("--user", "username", required=True, help="Whose token it is.")
@click.option("--scope", "scopes", multiple=True,
              help="read | publish | publish:NAMESPACE | publish:NAMESPACE/NAME | admin. Repeatable "
                   "[default: read, publish].")
@click.option("--name", default="cli", show_default=True, help="A label to recognise the token by.")
@click.option("--expires-in", type=int, help="Seconds until it expires [default: never].")
@click.pass_context
def token_create(ctx: click.Context, username: str, scopes: tuple[str, ...], name: str, expires_in: int | None) -> None:
    """Create an API token and print it. It is shown only this once."""
    from hub.db import session_scope
    from hub.security import DEFAULT_SCOPES, Scopes
    from hub.services import accounts

    try:
        parsed = Scopes.parse(list(scopes) or list(DEFAULT_SCOPES))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scope") from exc
    context = _context(ctx)
    with _errors(), session_scope(context.engine, write=True) as session:
        owner = accounts.get_user(session, username)
        _, secret = accounts.create_token(session, owner, parsed, name=name, expires_in=expires_in)
    click.echo(secret)


@main.group()
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

    context = _context(ctx)
    with _errors(), session_scope(context.engine, write=True) as session:
        accounts.create_org(session, accounts.get_user(session, owner), name)
    click.echo(f"created organisation {name}")


@main.command()
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@click.option("--grace", type=int, help="Keep unreferenced blobs younger than this many seconds [default: 3600].")
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, grace: int | None) -> None:
    """Remove blobs nothing references, and abandoned uploads. Safe while the hub serves."""
    import dataclasses

    from hub.services.gc import collect_garbage

    context = _context(ctx)
    settings = dataclasses.replace(context.settings, gc_grace=grace) if grace is not None else context.settings
    report = collect_garbage(context.engine, context.store, settings, dry_run=dry_run)
    click.echo(json.dumps({"dry_run": dry_run, **report.as_dict()}))


@main.command()
@click.option("--once", is_flag=True, help="Run the jobs that are queued now, then exit (for cron and tests).")
@click.pass_context
def indexer(ctx: click.Context, once: bool) -> None:
    """Run a git indexer worker: index repositories as their jobs come in.

    Jobs come from registrations, webhooks, `re-index` requests and the periodic poll
    (CVFLOW_HUB_INDEXER_POLL_INTERVAL). Run as many workers as you like, on as many
    machines: they share the job table, and each job runs once. Stops on SIGTERM or Ctrl-C.
    """
    import logging
    import signal
    import threading

    from indexer.jobs import Worker
    from indexer.service import Indexer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = _context(ctx)
    settings = context.settings
    service = Indexer(context)
    worker = Worker(context.engine, lambda rid: service.index(rid).summary(), lease=settings.indexer_job_lease,
                    poll_interval=settings.indexer_poll_interval, idle_sleep=settings.indexer_idle_sleep)
    try:
        if once:
            worker.maintain()
            click.echo(f"ran {worker.drain()} job(s)")
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        click.echo(f"indexer worker {worker.name}: database {_redact(settings.database_url)}")
        worker.run(stop)
    finally:
        service.close()
        context.engine.dispose()


@main.command("index")
@click.argument("url")
@click.option("--user", "username", help="Who registers the repository (and owns its package), if it is new.")
@click.option("--namespace", help="Namespace of the package [default: the user's own].")
@click.option("--subdir", default="", help="The package's directory in the repository.")
@click.option("--branch-pattern", help="Only tags on a branch matching this glob, e.g. main.")
@click.option("--tag-pattern", help="Only tags matching this glob, e.g. 'v*'.")
@click.option("--private", is_flag=True, help="Make the package it creates private.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def index(ctx: click.Context, url: str, username: str | None, namespace: str | None, subdir: str,
          branch_pattern: str | None, tag_pattern: str | None, private: bool, as_json: bool) -> None:
    """Index the git repository at URL once, in the foreground, and print the result.

    A repository not registered yet is registered first, as --user. Exits 1 when the run
    reports errors.

    \b
    Example:
      cvflow-hub index https://github.com/alice/detector.git --user alice
    """
    from hub.db import session_scope
    from hub.security import Scopes
    from hub.services import accounts
    from hub.services.accounts import Principal
    from indexer import registry
    from indexer.git import redact
    from indexer.service import Indexer
    from indexer.urls import UrlRefused, check_repository_url

    context = _context(ctx)
    settings = context.settings
    try:
        checked = check_repository_url(url, allow_file=settings.indexer_allow_file_urls,
                                       allow_private=settings.indexer_allow_private_addresses)
    except UrlRefused as exc:
        click.echo(f"error: {exc.message} [invalid_repository_url]", err=True)
        raise SystemExit(1) from None
    with _errors(), session_scope(context.engine, write=True) as session:
        repo = registry.find(session, checked.display, subdir)
        if repo is None:
            if not username:
                raise click.UsageError(f"{redact(url)} is not registered yet: say who registers it with --user")
            user = accounts.get_user(session, username)
            scopes = Scopes.parse("publish admin" if user.is_admin else "publish")
            repo = registry.register(session, settings, Principal(user=user, scopes=scopes), url=url,
                                     namespace=namespace, subdir=subdir, branch_pattern=branch_pattern,
                                     tag_pattern=tag_pattern, private=private, queue=False)
            click.echo(f"registered {checked.display} as repository {repo.id}", err=True)
        repository_id = repo.id
    service = Indexer(context)
    try:
        with _errors():
            result = service.index(repository_id)
    finally:
        service.close()
    if as_json:
        click.echo(json.dumps({"repository": repository_id, **result.as_dict()}, indent=2))
    else:
        _print_result(result)
    if result.errors:
        raise SystemExit(1)


def _print_result(result: Any) -> None:
    for v in result.versions:
        what = "published" if v.get("new") else "already published"
        click.echo(f"{what} {v['version']} from tag {v['tag']} (commit {str(v['commit'])[:12]})")
    for s in result.skipped:
        click.echo(f"skipped tag {s['tag']}: {s['reason']}")
    for m in result.moved:
        click.echo(f"moved tag {m['tag']}: {m['message']}")
    for n in result.notes:
        click.echo(f"note ({n['tag']}): {n['message']}")
    for e in result.errors:
        where = f"tag {e['tag']}" if e.get("tag") else "repository"
        click.echo(f"error ({where}) [{e['code']}]: {e['message']}", err=True)
        for p in e.get("problems", []):
            click.echo(f"  - {p['field']}: {p['message']}" if p.get("field") else f"  - {p['message']}", err=True)
    click.echo(result.summary())


@main.group()
def mirror() -> None:
    """Mirror an upstream hub: copy its packages here, and keep them in step."""


@mirror.command("sync")
@click.option("--upstream", required=True, help="The upstream hub's URL, e.g. https://hub.example.com.")
@click.option("--token", envvar="CVFLOW_HUB_UPSTREAM_TOKEN", help="An API token on the upstream (private packages).")
@click.option("--filter", "filters", multiple=True, metavar="PATTERN[@RANGE]",
              help="Copy only matching packages (and versions): alice, alice/detector, 'alice/det*', "
                   "'alice/detector@^1.2'. Repeatable [default: everything].")
@click.option("--latest", type=int, help="Copy at most the N highest selected versions of each package.")
@click.option("--every", "every", metavar="DURATION", help="Run again this long after each run ends (30s, 10m, 1h), "
              "until stopped (SIGTERM, Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="Print each run's report as JSON.")
@click.pass_context
def mirror_sync(ctx: click.Context, upstream: str, token: str | None, filters: tuple[str, ...], latest: int | None,
                every: str | None, as_json: bool) -> None:
    """Copy packages, versions and blobs from an upstream hub, from where the last run stopped.

    Reads the upstream's change feed from the last serial applied, verifies every blob's
    sha256 and size, and keeps versions and digests exactly as the upstream has them.
    A run that is cut short resumes where it stopped. Exits 1 if something failed
    (without --every).

    \b
    Examples:
      cvflow-hub mirror sync --upstream https://hub.example.com
      cvflow-hub mirror sync --upstream https://hub.example.com --filter acme --filter 'bob/det@^2' --latest 3
      cvflow-hub mirror sync --upstream https://hub.example.com --every 10m
    """
    import signal
    import threading

    from hub.mirror.filters import FilterError, Filters
    from hub.mirror.sync import Syncer

    try:
        selected = Filters.parse(filters, latest)
    except FilterError as exc:
        raise click.BadParameter(str(exc), param_hint="--filter/--latest") from exc
    interval = _duration(every) if every else None
    context = _context(ctx)
    syncer = Syncer.create(context, upstream, token, selected, log=lambda line: click.echo(line, err=True))
    stop = threading.Event()
    if interval is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        while True:
            report = syncer.run()
            if as_json:
                click.echo(json.dumps(report.as_dict()))
            else:
                for failure in report.failures:
                    click.echo(f"failed: {failure['package']}: {failure['message']} [{failure['code']}]", err=True)
                click.echo(report.summary())
            if interval is None:
                if not report.ok:
                    raise SystemExit(1)
                return
            if stop.wait(interval):
                return
    finally:
        syncer.close()
        context.engine.dispose()


@mirror.command("status")
@click.pass_context
def mirror_status(ctx: click.Context) -> None:
    """Show each upstream this hub syncs from: the serial reached, filters, failures."""
    from hub.mirror.sync import mirror_states

    click.echo(json.dumps(mirror_states(_context(ctx)), indent=2))


@main.command("export")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The bundle file to write.")
@click.option("--filter", "filters", multiple=True, metavar="PATTERN[@RANGE]",
              help="Export only matching packages (and versions), as for `mirror sync`. Repeatable "
                   "[default: everything public].")
@click.option("--latest", type=int, help="Export at most the N highest selected versions of each package.")
@click.option("--include-private", is_flag=True, help="Export private packages too (they stay private).")
@click.option("--source", help="A name for this hub, recorded in the bundle (imported packages show it).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def export(ctx: click.Context, out: str, filters: tuple[str, ...], latest: int | None, include_private: bool,
           source: str | None, as_json: bool) -> None:
    """Write packages, versions and blobs to one file, for a hub with no network path to this one.

    The bundle holds a manifest of every digest; `cvflow-hub import` on the other side (or
    `cvflow install --from` on an edge machine) verifies each of them. The bundle's own
    sha256 is printed: carry it separately and pass it to `import --sha256`.

    \b
    Example:
      cvflow-hub export --out models.cvflow --filter acme --latest 2
    """
    from pathlib import Path

    from hub.mirror.bundle import export_bundle
    from hub.mirror.filters import FilterError, Filters

    try:
        selected = Filters.parse(filters, latest)
    except FilterError as exc:
        raise click.BadParameter(str(exc), param_hint="--filter/--latest") from exc
    context = _context(ctx)
    with _errors():
        report = export_bundle(context, Path(out), selected, include_private=include_private, source=source)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        click.echo(f"wrote {out}: {len(report.versions)} version(s), {report.blobs} blob(s), {report.bytes} bytes")
        click.echo(f"sha256 {report.sha256}")


@main.command("import")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option("--sha256", help="The bundle's sha256 as printed by export: refuse any other file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def import_(ctx: click.Context, bundle: str, sha256: str | None, as_json: bool) -> None:
    """Load a bundle made by `cvflow-hub export` or `cvflow bundle`, verifying every digest.

    All of it or nothing of it: a bundle changed after it was written, or holding a version
    this hub has with other content, is refused and the catalogue stays as it was.
    """
    from pathlib import Path

    from hub.mirror.bundle import import_bundle

    context = _context(ctx)
    with _errors():
        report = import_bundle(context, Path(bundle), sha256=sha256)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        click.echo(f"imported {len(report.versions)} version(s) ({len(report.present)} already here), "
                   f"{report.blobs} new blob(s), {report.bytes} bytes")


def _duration(text: str) -> float:
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(f"{text!r} is not a duration such as 30s, 10m, 1h", param_hint="--every")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _context(ctx: click.Context) -> Any:
    from hub.app import build_context

    return build_context(_settings(ctx))


class _errors:
    """Turn hub errors into a one-line message and exit status 1."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        from hub.errors import HubError

        if isinstance(exc, HubError):
            click.echo(f"error: {exc.message} [{exc.code}]", err=True)
            raise SystemExit(1)
        return False


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


"""``cvflow-hub indexer`` (a worker) and ``cvflow-hub index`` (one repository, now)."""

from __future__ import annotations

import json
from typing import Any

import click

from hub.cli._common import hub_errors, open_context, redact_url


@click.command()
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

    from indexer.service import Indexer
    from indexer.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = open_context(ctx)
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
        click.echo(f"indexer worker {worker.name}: database {redact_url(settings.database_url)}")
        worker.run(stop)
    finally:
        service.close()
        context.engine.dispose()


@click.command("index")
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
    from hub.services import repositories as registry
    from hub.services.accounts import Principal
    from hub.services.urls import UrlRefused, check_repository_url, redact
    from indexer.service import Indexer

    context = open_context(ctx)
    settings = context.settings
    try:
        checked = check_repository_url(url, allow_file=settings.indexer_allow_file_urls,
                                       allow_private=settings.indexer_allow_private_addresses)
    except UrlRefused as exc:
        click.echo(f"error: {exc.message} [invalid_repository_url]", err=True)
        raise SystemExit(1) from None
    with hub_errors(), session_scope(context.engine, write=True) as session:
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
        assert repository_id is not None  # a stored row has its id
    service = Indexer(context)
    try:
        with hub_errors():
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



"""Commands about package directories and published packages."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cvflow.api import HubClient
from cvflow.commands._common import config, counted, emit_json, fail, handle_errors
from cvflow.errors import HubAuthError, ManifestError, Problem, ValidationError
from cvflow.manifest import TASKS
from cvflow.names import PackageName
from cvflow.progress import format_size, transfer_bar
from cvflow.publish import check_package_dir, for_hub, publish_dir
from cvflow.scaffold import DEFAULT_TASK, scaffold
from cvflow.versions import Version, VersionRange

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


def _print_problems(problems: list[Problem], *, level: str = "error") -> None:
    for problem in problems:
        click.secho(f"{level}: {problem}", fg="red" if level == "error" else "yellow", err=True)


def _split_spec(spec: str) -> tuple[str, str | None]:
    """``ns/name@range`` -> (``ns/name``, ``range``); the name is checked."""
    name, sep, rest = spec.partition("@")
    PackageName.parse(name)
    if sep and not rest.strip():
        fail(f"{spec!r}: nothing after '@'; write namespace/name@RANGE, e.g. {name}@^1.0")
    return name, rest.strip() if sep else None


def _not_logged_in_hint(client: HubClient, exc: HubAuthError, token: str | None) -> None:
    if exc.code == "unauthenticated" and not token:
        fail(f"not logged in to {client.base_url}: run `cvflow login` or set CVFLOW_TOKEN")


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", "name", required=True, metavar="NS/NAME", help="The package name, namespace/name.")
@click.option("--task", type=click.Choice(sorted(TASKS)), default=DEFAULT_TASK, show_default=True,
              help="What the model does.")
@click.option("--description", metavar="TEXT", help="One line about the package.")
@click.option("--trainer", is_flag=True,
              help="Also write trainer.py and a [[trainers]] entry, for `cvflow finetune` (classification).")
@handle_errors
def init(directory: Path, name: str, task: str, description: str | None, trainer: bool) -> None:
    """Create a new package that validates and publishes as it is.

    Writes cvflow.toml, solver.py, README.md and weights/ into DIRECTORY (default: here,
    created if missing), and trainer.py with --trainer. Never replaces an existing file.

    \b
    Example:
      cvflow init my-model --name alice/my-model --task detection
      cvflow init my-model --name alice/my-model --trainer
    """
    made = scaffold(directory, name, task=task, description=description, trainer=trainer)
    click.echo(f"created {name} in {made.root}:")
    for rel in made.written:
        click.echo(f"  {rel}")
    for rel in made.kept:
        click.echo(f"  {rel} (kept the existing file)")
    edit = "solver.py and trainer.py" if trainer else "solver.py"
    click.echo(f"next: edit {edit}, then `cvflow validate {made.root}` and `cvflow publish {made.root}`")


@click.command()
@click.argument("directory", default=".", type=_DIR)
@click.option("--namespace", help="Namespace for a legacy CVPM package (cvpm.toml has none).")
def validate(directory: Path, namespace: str | None) -> None:
    """Check a package directory the way the hub will.

    Reads the manifest in DIRECTORY (default: here), lists and hashes its files, and
    reports every problem at once; exits 1 if there is any.

    \b
    Example:
      cvflow validate my-model
    """
    try:
        package = check_package_dir(directory, namespace=namespace)
    except ValidationError as exc:
        click.secho(f"error: {exc.message}", fg="red", err=True)
        _print_problems([p for p in exc.problems if p.message != exc.message])
        raise SystemExit(1) from None
    manifest, files = package.manifest, package.files
    try:
        for_hub(package)
    except ManifestError as exc:  # a legacy package that reads fine but cannot be published yet
        click.secho(f"warning: {exc.message}", fg="yellow", err=True)
        _print_problems(exc.problems, level="warning")
    click.echo(
        f"ok: {manifest.name} {manifest.version}: {counted(len(files), 'file')},"
        f" {counted(len(manifest.solvers), 'solver')}, {counted(len(manifest.weights), 'weight')}"
    )


@click.command()
@click.argument("directory", default=".", type=_DIR)
@click.option("--private/--public", default=None, help="For a new package: who may see it [default: public].")
@click.option("--namespace", help="Namespace for a legacy CVPM package (cvpm.toml has none), or for --git.")
@click.option("--git", "git_url", metavar="URL",
              help="Instead of a directory: register this git repository; the hub publishes its release tags.")
@click.option("--branch-pattern", metavar="GLOB", help="With --git: only tags on branches matching GLOB, e.g. main.")
@click.option("--tag-pattern", metavar="GLOB", help="With --git: only tags matching GLOB, e.g. 'v*'.")
@click.option("--subdir", metavar="PATH", help="With --git: the package's directory in the repository.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or progress lines.")
@click.pass_context
@handle_errors
def publish(ctx: click.Context, directory: Path, private: bool | None, namespace: str | None, git_url: str | None,
            branch_pattern: str | None, tag_pattern: str | None, subdir: str | None, as_json: bool,
            quiet: bool) -> None:
    """Publish a package directory to the hub, or register a git repository with --git.

    Checks DIRECTORY (default: here) like `cvflow validate`, uploads only the files the hub lacks (largest first;
    an interrupted upload resumes on the next run), then publishes the version and prints
    its page on the hub's website and its API URL. Versions are immutable: publishing one
    again is refused.

    With --git URL the hub's indexer fetches the repository and publishes each SemVer tag
    (v1.2.0 or 1.2.0) as a version, now and whenever a webhook or its poll finds new tags.
    You own the package it creates. Nothing from the repository runs on the hub.

    \b
    Examples:
      cvflow publish my-model
      cvflow publish --private --json .
      cvflow publish --git https://github.com/alice/detector.git --tag-pattern 'v*'
    """
    cfg = config(ctx)
    if git_url is not None:
        _register_git(cfg, git_url, namespace=namespace, subdir=subdir, branch_pattern=branch_pattern,
                      tag_pattern=tag_pattern, private=private, as_json=as_json)
        return
    if branch_pattern or tag_pattern or subdir:
        fail("--branch-pattern, --tag-pattern and --subdir go with --git URL")
    with HubClient(cfg.hub, cfg.token) as client, transfer_bar(quiet=quiet) as bar:
        try:
            result = publish_dir(client, directory, state_dir=cfg.state_dir, private=private,
                                 namespace=namespace, progress=bar)
        except HubAuthError as exc:
            _not_logged_in_hint(client, exc, cfg.token)
            raise
    # The version's page on the hub's website (web/: /NS/NAME/v/VERSION), beside its API URL.
    result["page"] = f"{client.base_url.rstrip('/')}/{result['package']}/v/{quote(result['version'])}"
    if as_json:
        emit_json(result)
        return
    click.echo(f"published {result['package']}@{result['version']}"
               f" ({result['files']} files, {format_size(result['size'])})")
    click.echo(f"page: {result['page']}")
    click.echo(f"api:  {result['url']}")


def _register_git(cfg: Any, url: str, *, namespace: str | None, subdir: str | None, branch_pattern: str | None,
                  tag_pattern: str | None, private: bool | None, as_json: bool) -> None:
    with HubClient(cfg.hub, cfg.token) as client:
        try:
            doc = client.register_repository(url, namespace=namespace, subdir=subdir, branch_pattern=branch_pattern,
                                             tag_pattern=tag_pattern, private=private)
        except HubAuthError as exc:
            _not_logged_in_hint(client, exc, cfg.token)
            raise
    if as_json:
        emit_json(doc)
        return
    where = f" (directory {doc['subdir']})" if doc.get("subdir") else ""
    click.echo(f"registered {doc['url']}{where} as repository {doc['id']} in {doc['namespace']}; "
               "the indexer publishes its SemVer tags")
    click.echo(f"status: {cfg.hub.rstrip('/')}/api/v1/repositories/{doc['id']}")
    if doc.get("webhook_secret"):
        click.echo("to index new tags as soon as they are pushed, add a webhook (push and tag events):")
        click.echo(f"  URL:    {cfg.hub.rstrip('/')}{doc['webhook_url']}")
        click.echo(f"  secret: {doc['webhook_secret']}")


@click.command()
@click.argument("spec", metavar="NS/NAME@VERSION")
@click.option("--reason", required=True, metavar="TEXT", help="Why (shown to everyone who resolves it).")
@click.option("--undo", is_flag=True, help="Un-yank the version instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the version's new state as JSON.")
@click.pass_context
@handle_errors
def yank(ctx: click.Context, spec: str, reason: str, undo: bool, as_json: bool) -> None:
    """Yank a published version (or undo a yank with --undo).

    Resolvers skip a yanked version unless it is pinned exactly. A yanked version is
    never deleted, and stays downloadable for those who pinned it.

    \b
    Examples:
      cvflow yank alice/detector@1.0.1 --reason "wrong weights"
      cvflow yank alice/detector@1.0.1 --undo --reason "the weights were right"
    """
    name, version = _split_spec(spec)
    if version is None:
        fail(f"{spec!r}: say which version, e.g. {name}@1.0.0")
    Version.parse(version)
    cfg = config(ctx)
    with HubClient(cfg.hub, cfg.token) as client:
        try:
            doc = client.yank(name, version, reason, undo=undo)
        except HubAuthError as exc:
            _not_logged_in_hint(client, exc, cfg.token)
            raise
    if as_json:
        emit_json({"package": name, **doc})
    elif undo:
        click.echo(f"un-yanked {name}@{doc['version']}")
    else:
        click.echo(f"yanked {name}@{doc['version']}: {doc.get('yank_reason') or reason}")


@click.command()
@click.argument("query", default="")
@click.option("--task", type=click.Choice(sorted(TASKS)), help="Only packages for this task.")
@click.option("--tag", metavar="TAG", help="Only packages with this tag.")
@click.option("--sort", type=click.Choice(["downloads", "recent", "name"]), default="downloads", show_default=True)
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--per-page", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the hub's answer as JSON.")
@click.pass_context
@handle_errors
def search(ctx: click.Context, query: str, task: str | None, tag: str | None, sort: str, page: int, per_page: int,
           as_json: bool) -> None:
    """Find packages on the hub by name and description.

    \b
    Examples:
      cvflow search face
      cvflow search --task detection --sort recent --json
    """
    cfg = config(ctx)
    with HubClient(cfg.hub, cfg.token) as client:
        found = client.search(query, task=task, tag=tag, sort=sort, page=page, per_page=per_page)
    if as_json:
        emit_json(found)
        return
    results = found.get("results") or []
    if not results:
        click.echo(f"no packages match {query!r}" if query else "no packages found")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("package", no_wrap=True)
    table.add_column("latest", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("downloads", justify="right", no_wrap=True)
    table.add_column("description", overflow="ellipsis", no_wrap=True, max_width=60)
    for p in results:
        name = p["name"] + (" (private)" if p.get("private") else "")
        cells = (name, p.get("latest_version") or "-", p.get("task") or "-", str(p.get("downloads", 0)),
                 p.get("description") or "")
        table.add_row(*(Text(c) for c in cells))
    console = _console()
    console.print(table)
    total, per = int(found.get("total", len(results))), int(found.get("per_page", per_page))
    pages = max(1, -(-total // per))
    console.print(f"page {found.get('page', page)} of {pages}, {total} package(s)", highlight=False)


@click.command()
@click.argument("spec", metavar="NS/NAME[@RANGE]")
@click.option("--json", "as_json", is_flag=True, help="Print the package (and the chosen version) as JSON.")
@click.pass_context
@handle_errors
def info(ctx: click.Context, spec: str, as_json: bool) -> None:
    """Show a package, or the version a range picks.

    Without @RANGE: the package and all its versions. With @RANGE: the highest version
    it matches (yanked versions only when pinned exactly), with its files and dependencies.

    \b
    Examples:
      cvflow info alice/detector
      cvflow info alice/detector@^1.2 --json
    """
    name, range_text = _split_spec(spec)
    wanted = VersionRange.parse(range_text) if range_text is not None else None
    cfg = config(ctx)
    with HubClient(cfg.hub, cfg.token) as client:
        package = client.package(name)
        version_doc = None
        if wanted is not None:
            chosen = _best_version(package, wanted)
            if chosen is None:
                fail(_no_match(package, wanted))
            version_doc = client.version(name, chosen)
    if as_json:
        emit_json({"package": package, "version": version_doc})
        return
    console = _console()
    _print_package(console, package, show_versions=version_doc is None)
    if version_doc is not None:
        _print_version(console, name, version_doc, wanted)


def _best_version(package: dict[str, Any], wanted: VersionRange) -> str | None:
    by_version = {}
    for v in package.get("versions") or []:
        if wanted.is_exact or not v.get("yanked"):
            by_version[Version.parse(v["version"])] = v["version"]
    best = wanted.best_match(by_version)
    return None if best is None else by_version[best]


def _no_match(package: dict[str, Any], wanted: VersionRange) -> str:
    versions = package.get("versions") or []
    live = [v["version"] for v in versions if not v.get("yanked")]
    listed = ", ".join(live[:10]) + (", ..." if len(live) > 10 else "") if live else "none that are not yanked"
    return f"no version of {package['name']} matches {wanted} (versions: {listed})"


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _print_package(console: Console, p: dict[str, Any], *, show_versions: bool) -> None:
    console.print(f"[bold]{p['name']}[/bold]" + (" (private)" if p.get("private") else ""))
    if p.get("description"):
        console.print(f"  {p['description']}", markup=False)
    facts = [("latest", p.get("latest_version")), ("task", p.get("task")), ("license", p.get("license")),
             ("tags", ", ".join(p.get("tags") or [])), ("downloads", p.get("downloads"))]
    console.print("  " + "   ".join(f"{k}: {v}" for k, v in facts if v not in (None, "")), markup=False)
    if not show_versions:
        return
    console.print("versions:")
    for v in p.get("versions") or []:
        notes = []
        if v.get("prerelease"):
            notes.append("pre-release")
        if v.get("yanked"):
            notes.append(f"YANKED: {v.get('yank_reason') or 'no reason given'}")
        size = f"{counted(int(v.get('file_count') or 0), 'file')}, {format_size(v.get('size') or 0)}"
        line = f"  {v['version']:<16} {(v.get('created_at') or '')[:10]}  {size}"
        console.print(line + (f"  ({'; '.join(notes)})" if notes else ""), markup=False)


def _print_version(console: Console, name: str, v: dict[str, Any], wanted: VersionRange | None) -> None:
    header = f"{name}@{v['version']}"
    if wanted is not None and str(wanted) != v["version"]:
        header += f" (best match for {wanted})"
    console.print(f"[bold]{header}[/bold]")
    if v.get("yanked"):
        console.print(f"  YANKED: {v.get('yank_reason') or 'no reason given'}", style="yellow", markup=False)
    manifest = v.get("manifest") or {}
    solvers = manifest.get("solvers") or []
    if solvers:
        console.print("solvers:")
        for s in solvers:
            console.print(f"  {s['name']}  ({s['class']})", markup=False)
    deps = v.get("dependencies") or {}
    console.print("dependencies:" + ("" if deps else " none"))
    for dep, rng in sorted(deps.items()):
        console.print(f"  {dep} {rng}", markup=False)
    files = v.get("files") or []
    console.print(f"files: {len(files)}, {format_size(sum(f['size'] for f in files))}")
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("path", overflow="fold")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    for f in files:
        table.add_row(Text("  " + f["path"]), format_size(f["size"]), f["sha256"][:12])
    console.print(table)

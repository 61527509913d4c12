"""Pages to find and judge packages: home, search, package, model zoo, users and organisations."""

from __future__ import annotations

import itertools
import json
import re
import shlex
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from cvflow.manifest import TASKS
from cvflow.names import package_key
from cvflow.solver import declared_input
from hub.context import ctx, in_session, run_sync
from hub.errors import HubError
from hub.models import Dependency, File, Namespace, Organisation, Package, Version, utcnow
from hub.services import access, accounts, catalog, lineage, packages
from hub.services.accounts import Principal
from hub.storage import BlobNotFound, StorageError
from web.charts import ZooPoint, downloads_svg, pareto_frontier, quality_metric, zoo_svg
from web.datasets import IMAGE_TYPES, dataset_context
from web.markdown import render_markdown
from web.session import web_principal
from web.templating import render

README_LIMIT = 1 << 20
SEARCH_PER_PAGE = 20
NAMESPACE_PER_PAGE = 50
MAX_PAGE = 10_000  # deeper than anyone pages; keeps OFFSET within what every database takes
DOWNLOAD_DAYS = 90  # the package page's download chart: one slot per day, today the last
#: The port the package page's run line asks for, so its curl lines work as they are.
RUNNER_PORT = 8765
_readme_cache: dict[str, str] = {}


async def home(request: Request) -> Response:
    who = await web_principal(request)

    def work(session: Session) -> dict[str, Any]:
        recent = catalog.search(session, who, sort="recent", per_page=8)["results"]
        popular = catalog.search(session, who, sort="downloads", per_page=8)["results"]
        return {"recent": recent, "popular": popular, "tasks": sorted(TASKS)}

    return render(request, "home.html", **await in_session(request, work))


def page_number(request: Request) -> int:
    try:
        return min(MAX_PAGE, max(1, int(request.query_params.get("page", "1"))))
    except ValueError:
        return 1


async def search(request: Request) -> Response:
    who = await web_principal(request)
    q = request.query_params
    args: dict[str, Any] = {"query": q.get("q", "").strip()[:200], "task": q.get("task") or None, "tag": q.get("tag") or None,
            "framework": q.get("framework") or None, "kind": q.get("kind") or None,
            "sort": q.get("sort") or "downloads"}
    page = page_number(request)

    try:
        found = await in_session(request, catalog.search, who, page=page, per_page=SEARCH_PER_PAGE, **args)
    except HubError as exc:
        return render(request, "search.html", status=400, error=exc.message, args=args, found=None, tasks=sorted(TASKS))
    return render(request, "search.html", args=args, found=found, pages=page_count(found), tasks=sorted(TASKS),
                  error=None)


def page_count(found: dict[str, Any]) -> int:
    total: int = found["total"]
    per_page: int = found["per_page"]
    return max(1, -(-total // per_page))


def _readme(hub: Any, files: list[File], manifest: dict[str, Any]) -> str | None:
    wanted = manifest.get("readme") or "README.md"
    entry = next((f for f in files if f.path == wanted), None)
    if entry is None or entry.size > README_LIMIT:
        return None
    if entry.sha256 not in _readme_cache:
        data = b"".join(hub.store.open_range(entry.sha256))
        if len(_readme_cache) > 500:
            _readme_cache.clear()
        _readme_cache[entry.sha256] = render_markdown(data.decode("utf-8", "replace"))
    return _readme_cache[entry.sha256]


def package_context(session: Session, hub: Any, who: Principal, namespace: str, name: str,
                    version: str | None, split: str | None = None, hub_url: str = "") -> dict[str, Any]:
    package = packages.get_package(session, who, namespace, name)
    doc = catalog.package_document(session, package)
    chosen = version or package.latest_version or (doc["versions"][0]["version"] if doc["versions"] else None)
    if chosen is None:
        raise HubError("version_not_found", f"{package.full_name} has no versions")
    row = packages.get_version(session, package, chosen)
    files = list(session.exec(select(File).where(File.version_id == row.id).order_by(File.path)))
    manifest = json.loads(row.manifest)
    deps = list(session.exec(select(Dependency).where(Dependency.version_id == row.id).order_by(Dependency.package)))
    visible = access.visible_filter(session, who)
    reverse = sorted(set(session.exec(
        select(Package.full_name).join(Version, col(Version.package_id) == Package.id)
        .join(Dependency, col(Dependency.version_id) == Version.id)
        # Dependencies keep the spelling they were written with; valid names have single separators,
        # so mapping '_' and '.' to '-' is the normalised form (cvflow.names.package_key).
        .where(sa.func.replace(sa.func.replace(Dependency.package, "_", "-"), ".", "-") == package_key(package.full_name),
               visible)
    )))
    today = utcnow().date()
    history = catalog.download_history(session, package, today - timedelta(days=DOWNLOAD_DAYS - 1))
    return {
        "package": doc, "version": catalog.version_summary(row), "manifest": manifest, "files": files,
        "dependencies": deps, "reverse": reverse, "readme": _readme(hub, files, manifest),
        "downloads_chart": downloads_svg(history, today=today, span=DOWNLOAD_DAYS), "history": history,
        **use_it(hub_url, f"{package.full_name}@{row.version}", manifest.get("solvers") or []),
        "source": {"repository": row.source_repository, "commit": row.source_commit} if row.source_repository else None,
        "can_publish": access.may_publish(session, who, package),
        "dataset": dataset_context(hub.store, manifest, files, split, f"{package.full_name}@{row.version}")
        if manifest.get("kind") == "dataset" else None,
        # Fine-tuned from / trained on (links for their readers only), and this package's fine-tunes.
        "lineage": lineage.lineage_view(session, who, row),
        "fine_tunes": lineage.fine_tunes(session, who, package) if manifest.get("kind") != "dataset" else None,
    }


# --- the package page's "Use it" box ------------------------------------------------------------

#: "(default 3)", "default: 0.5", "default=fast" in an input's declared meaning.
_DEFAULT_RE = re.compile(r"\bdefault\b\s*[:=]?\s*([\w.+-]{1,32})", re.IGNORECASE)
_EXAMPLES = {"integer": 1, "number": 0.5, "string": "text", "boolean": True}


def example_value(kind: str, meaning: str) -> Any:
    """A value to show for a scalar input: the default its meaning names, when that fits the
    kind, else a plain example of the kind."""
    match = _DEFAULT_RE.search(meaning)
    if match:
        text = match[1]
        try:
            if kind == "integer":
                return int(text)
            if kind == "number":
                return float(text)
        except ValueError:
            pass
        if kind == "boolean" and text.lower() in {"true", "false"}:
            return text.lower() == "true"
        if kind == "string":
            return text
    return _EXAMPLES.get(kind, "text")


def _form_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def solver_usage(solver: dict[str, Any], base: str) -> dict[str, Any]:
    """A curl line and a Python (httpx) snippet that call one solver on a runner at ``base``,
    built from the inputs its manifest declares: an image input becomes a file part, other
    inputs form fields (multipart) or, with no image at all, a JSON body (docs/runner.md)."""
    url = f"{base}/solvers/{solver.get('name')}/infer"
    declared = solver.get("inputs") or {}
    inputs = {k: declared_input(str(v)) for k, v in declared.items()} if declared else {"image": ("image", "")}
    files: list[tuple[str, str]] = []
    fields: dict[str, Any] = {}
    for key, (kind, meaning) in inputs.items():
        if kind == "image":
            files.append((key, "photo.jpg"))
        elif kind == "images":
            files += [(key, "photo1.jpg"), (key, "photo2.jpg")]
        else:
            fields[key] = example_value(kind, meaning)
    if files:
        args = [f"-F {shlex.quote(f'{k}=@{path}')}" for k, path in files]
        args += [f"-F {shlex.quote(f'{k}={_form_text(v)}')}" for k, v in fields.items()]
        curl = " ".join(["curl", *args, url])
        opened = ", ".join(f"({k!r}, open({path!r}, 'rb'))" for k, path in files)
        body = [f"files=[{opened}]"] + ([f"data={ {k: _form_text(v) for k, v in fields.items()}!r}"] if fields else [])
    else:
        payload = json.dumps(fields)
        curl = f"curl -H 'content-type: application/json' -d {shlex.quote(payload)} {url}"
        body = [f"json={fields!r}"]
    call_args = "".join(f"    {a},\n" for a in [repr(url), *body, "timeout=60"])
    python = f"import httpx\n\nr = httpx.post(\n{call_args})\nr.raise_for_status()\nprint(r.json())"
    return {"name": solver.get("name"), "url": url, "curl": curl, "python": python, "declared": bool(declared)}


def use_it(hub_url: str, ref: str, solvers: list[dict[str, Any]]) -> dict[str, Any]:
    """What the package page's "Use it" box shows: how to point the client at this hub, pull,
    install and serve ``ref`` (``name@version``), then call each solver."""
    base = f"http://127.0.0.1:{RUNNER_PORT}"
    return {
        "hub_url": hub_url, "runner_url": base,
        "login_line": f"cvflow login --hub {hub_url}",
        "env_line": f"export CVFLOW_HUB={hub_url}",
        "pull_line": f"cvflow pull {ref}",
        "install_line": f"cvflow install {ref}",
        "run_line": f"cvflow run {ref} --port {RUNNER_PORT}",
        "solver_calls": [solver_usage(s, base) for s in solvers if isinstance(s, dict) and s.get("name")],
    }


async def package_page(request: Request) -> Response:
    who = await web_principal(request)
    p = request.path_params
    hub = ctx(request)

    def work(session: Session) -> dict[str, Any] | str:
        package = packages.get_package(session, who, p["namespace"], p["name"])
        if package.full_name != f"{p['namespace']}/{p['name']}":
            return package.full_name  # a look-alike spelling: sent on to the canonical page
        return package_context(session, hub, who, p["namespace"], p["name"], p.get("version"),
                               request.query_params.get("split"), str(request.base_url).rstrip("/"))

    try:
        context = await in_session(request, work)
    except HubError as exc:
        if exc.status == 404:
            return render(request, "error.html", status=404, title="Not found", message=exc.message)
        raise
    if isinstance(context, str):
        return RedirectResponse(_canonical_url(request, context), status_code=301)
    return render(request, "package.html", **context)


async def dataset_image(request: Request) -> Response:
    """One image of a dataset version, for the thumbnails on its page.

    The website's own route (not the API's file download): it follows the signed-in user's
    access to private packages, sends the image's type rather than a download, and never
    redirects to the blob store, whose origin the pages' Content-Security-Policy does not name.
    """
    who = await web_principal(request)
    p = request.path_params
    hub = ctx(request)
    path = f"images/{p['image']}"
    media_type = IMAGE_TYPES.get(path[path.rfind("."):].lower()) if "." in path else None

    def work(session: Session) -> tuple[File, bool]:
        package = packages.get_package(session, who, p["namespace"], p["name"])
        row = packages.get_version(session, package, p["version"])
        file = session.exec(select(File).where(File.version_id == row.id, File.path == path)).first()
        if file is None or media_type is None or json.loads(row.manifest).get("kind") != "dataset":
            raise HubError("file_not_found", f"{package.full_name}@{row.version} has no image {path!r}")
        return file, package.private

    try:
        file, private = await in_session(request, work)
        local = hub.store.local_path(file.sha256)
    except BlobNotFound:
        return render(request, "error.html", status=404, title="Not found", message="the image is missing from storage")
    except HubError as exc:
        if exc.status == 404:
            return render(request, "error.html", status=404, title="Not found", message=exc.message)
        raise
    headers = {"etag": f'"{file.sha256}"',
               "cache-control": ("private" if private else "public") + ", max-age=86400"}
    if request.headers.get("if-none-match") == headers["etag"]:
        return Response(status_code=304, headers=headers)
    if local is not None:
        return FileResponse(local, media_type=media_type, headers=headers)

    def first() -> tuple[bytes, Iterator[bytes]]:  # "not found" before the headers go out
        chunks = iter(hub.store.open_range(file.sha256))
        return next(chunks, b""), chunks

    try:
        head, rest = await run_sync(first)
    except (BlobNotFound, StorageError):
        return render(request, "error.html", status=404, title="Not found", message="the image cannot be read now")
    return StreamingResponse(itertools.chain((head,), rest), media_type=media_type, headers=headers)


def _canonical_url(request: Request, full_name: str) -> str:
    namespace, name = full_name.split("/", 1)
    version = request.path_params.get("version")
    if version is None:
        url = request.url_for("package", namespace=namespace, name=name)
    else:
        url = request.url_for("package_version", namespace=namespace, name=name, version=version)
    query = request.url.query
    return url.path + (f"?{query}" if query else "")


def zoo_points(session: Session, who: Principal, task: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Each visible model package's latest version with its value of the task's quality metric
    (``quality``: :func:`web.charts.quality_metric`, e.g. ``map50`` for detection) and latency,
    and the names of those that report no usable value of the two (not charted); a fine-tune is
    marked with its base (``fine_tune_of``: ``name@version``, or "a private package" to those who
    may not read it) and, since it keeps its base's network, lent the base's latency and memory
    when its own ``[metrics]`` (replaced by the validation metrics) lack them and the reader may
    read the base."""
    rows = list(session.exec(
        select(Version.id, Package.full_name, Version.manifest).join(Version, col(Version.package_id) == Package.id)
        .where(Package.task == task, Package.kind == "model", Version.version == Package.latest_version,
               access.visible_filter(session, who))
        .order_by(Package.full_name)
    ))
    marks = lineage.zoo_marks(session, who, [id_ for id_, _, _ in rows if id_ is not None])
    key = quality_metric(task).key
    points, missing = [], []
    for id_, name, manifest in rows:
        metrics = json.loads(manifest).get("metrics") or {}
        mark = marks.get(id_) if id_ is not None else None
        if mark is not None:
            metrics = {**{k: mark["metrics"][k] for k in ("latency_ms", "memory_mb") if k in mark["metrics"]},
                       **metrics}
        quality, latency = metrics.get(key), metrics.get("latency_ms")
        if isinstance(quality, (int, float)) and isinstance(latency, (int, float)) and latency > 0:
            memory = metrics.get("memory_mb")
            points.append({"name": name, "quality": float(quality), "latency_ms": float(latency),
                           "memory_mb": float(memory) if isinstance(memory, (int, float)) else None,
                           "fine_tune_of": None if mark is None else mark["label"],
                           "fine_tune_url": None if mark is None else mark["url"]})
        else:
            missing.append(name)
    return points, missing


def task_counts(session: Session, who: Principal) -> dict[str, int]:
    """How many models the caller can see per task, in one query (datasets have tasks too)."""
    rows = session.exec(
        select(Package.task, sa.func.count()).where(col(Package.task).is_not(None), Package.kind == "model",
                                                    access.visible_filter(session, who))
        .group_by(Package.task)
    )
    found = dict(rows.all())
    return {t: int(found.get(t, 0)) for t in sorted(TASKS)}


async def zoo(request: Request) -> Response:
    who = await web_principal(request)
    task = request.path_params.get("task")
    if task is not None and task not in TASKS:
        return render(request, "error.html", status=404, title="Not found", message=f"no task {task!r}")

    def work(session: Session) -> dict[str, Any]:
        if task is None:
            return {"task": None, "counts": task_counts(session, who)}
        points, missing = zoo_points(session, who, task)
        metric = quality_metric(task)
        drawn = [ZooPoint(p["name"], p["quality"], p["latency_ms"], p["memory_mb"], p["fine_tune_of"])
                 for p in points]
        by_name = {p["name"]: p for p in points}
        frontier = [by_name[p.name] for p in pareto_frontier(drawn)]  # fastest first
        return {"task": task, "metric": metric, "points": points, "chart": zoo_svg(drawn, metric=metric),
                "missing": missing, "frontier": frontier, "any_memory": any(p["memory_mb"] for p in points)}

    return render(request, "zoo.html", **await in_session(request, work))


async def namespace_page(request: Request) -> Response:
    who = await web_principal(request)
    name = request.path_params["namespace"]
    page = page_number(request)

    def work(session: Session) -> dict[str, Any] | None:
        ns = session.exec(select(Namespace).where(Namespace.name == name)).first()
        if ns is None:
            return None
        members = []
        if ns.kind == "org":
            org = session.exec(select(Organisation).where(Organisation.namespace_id == ns.id)).one()
            members = [{"name": u.name, "role": r} for u, r in accounts.org_members(session, org)]
        found = catalog.search(session, who, namespace=name, sort="name", page=page, per_page=NAMESPACE_PER_PAGE)
        return {"namespace": name, "kind": ns.kind, "members": members, "found": found, "pages": page_count(found)}

    context = await in_session(request, work)
    if context is None:
        return render(request, "error.html", status=404, title="Not found", message=f"no user or organisation {name!r}")
    return render(request, "namespace.html", **context)

"""Helpers for the indexer tests: manifests, registering over the API, running the worker."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
from sqlmodel import select

from hub.db import session_scope
from hub.models import IndexJob, Package, Version
from indexer.service import Indexer
from indexer.worker import Worker
from tests.helpers import LiveHub

SOLVER = b"class Detector:\n    def infer(self, image):\n        return {'boxes': []}\n"


def manifest(name: str = "alice/detector", version: str = "1.0.0", *, weights: str = "", extra: str = "") -> str:
    return (f'[package]\nname = "{name}"\nversion = "{version}"\ndescription = "Indexed from git"\n'
            f'license = "MIT"\ntask = "detection"\n{extra}\n[[solvers]]\nname = "detect"\n'
            f'class = "solver:Detector"\n{weights}')


def url_weight(path: str, url: str, sha256: str, size: int) -> str:
    return f'\n[[weights]]\npath = "{path}"\nurl = "{url}"\nsha256 = "{sha256}"\nsize = {size}\n'


def register(client: httpx.Client, url: str, **fields: Any) -> dict[str, Any]:
    r = client.post("/api/v1/repositories", json={"url": url, **fields})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def repository(client: httpx.Client, repository_id: int) -> dict[str, Any]:
    r = client.get(f"/api/v1/repositories/{repository_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def make_worker(hub: LiveHub, *, name: str | None = None, **overrides: Any) -> tuple[Worker, Indexer]:
    settings = dataclasses.replace(hub.context.settings, **overrides)
    service = Indexer(hub.context, settings=settings)
    worker = Worker(hub.context.engine, lambda rid: service.index(rid).summary(), lease=600, poll_interval=0,
                    idle_sleep=0.01, name=name)
    return worker, service


def run_jobs(hub: LiveHub, **overrides: Any) -> int:
    """Run every queued index job with a worker of this hub (settings changed by ``overrides``)."""
    worker, service = make_worker(hub, **overrides)
    try:
        return worker.drain()
    finally:
        service.close()


def published(hub: LiveHub, package: str) -> dict[str, Version]:
    """The versions of ``package`` in the database, by version string."""
    with session_scope(hub.context.engine) as session:
        pkg = session.exec(select(Package).where(Package.full_name == package)).first()
        if pkg is None:
            return {}
        return {v.version: v for v in session.exec(select(Version).where(Version.package_id == pkg.id))}


def package_count(hub: LiveHub) -> int:
    with session_scope(hub.context.engine) as session:
        return len(session.exec(select(Package.id)).all())


def jobs(hub: LiveHub) -> list[IndexJob]:
    with session_scope(hub.context.engine) as session:
        return list(session.exec(select(IndexJob).order_by(IndexJob.id)))  # type: ignore[arg-type]


def by_tag(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["tag"]: item for item in items}

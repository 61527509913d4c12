"""Helpers shared by the mirror tests."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlmodel import select

from hub.db import session_scope
from hub.models import Blob
from tests.helpers import LiveHub, publish
from tests.mirror.conftest import hub_cli

SOLVER = b"class Detector:\n    def infer(self, x):\n        return {'ok': True}\n"


def publish_ok(client: httpx.Client, name: str, version: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("files", {"solver.py": SOLVER, "weights.safetensors": f"{name}@{version} weights".encode() * 100})
    kw.setdefault("weights", ("weights.safetensors",))
    r = publish(client, name, version, **kw)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def sync(mirror: LiveHub, upstream: LiveHub, *args: str, ok: bool = True) -> dict[str, Any]:
    """``cvflow-hub mirror sync --json`` into ``mirror``; its report."""
    result = hub_cli(mirror, "mirror", "sync", "--upstream", upstream.url, "--json", *args)
    assert result.exit_code == (0 if ok else 1), result.output
    mirror.context.cache.clear()  # the serving hub would see the copies within metadata_cache_ttl
    return json.loads(result.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def version_doc(live: LiveHub, name: str, version: str) -> dict[str, Any]:
    r = live.client().get(f"/api/v1/packages/{name}/versions/{version}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def same_release(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("version", "manifest_toml", "dependencies", "yanked")
    files = [(f["path"], f["size"], f["sha256"]) for f in a["files"]] == [(f["path"], f["size"], f["sha256"])
                                                                          for f in b["files"]]
    return files and all(a[k] == b[k] for k in keys)


def blob_rows(live: LiveHub) -> set[str]:
    with session_scope(live.context.engine) as session:
        return set(session.exec(select(Blob.sha256)).all())


def stored_blobs(live: LiveHub) -> set[str]:
    return {b.digest for b in live.context.store.iter_blobs()}


def feed(live: LiveHub, since: int = 0) -> list[dict[str, Any]]:
    r = live.client().get("/api/v1/changes", params={"since": since})
    assert r.status_code == 200, r.text
    return r.json()["events"]  # type: ignore[no-any-return]

"""Annotation projects over a live hub: a team with every role, and items made from real PNG blobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from sqlmodel import select

from hub.db import session_scope
from hub.models import AnnotationItem, AnnotationProject
from hub.services.annotation.labels import confidence
from tests.helpers import LiveHub
from tests.runner._images import png

#: The roles a team holds in ``alice/street``; ``eve`` holds none.
ROLES = {"ann": "annotator", "ann2": "annotator", "rev": "reviewer"}


@dataclass
class Team:
    hub: LiveHub
    alice: httpx.Client  # the namespace's user: an owner, token scope ``annotate``
    ann: httpx.Client
    ann2: httpx.Client
    rev: httpx.Client
    eve: httpx.Client  # a stranger with an ``annotate`` token
    alice_read: httpx.Client  # alice, with a ``read`` token
    anonymous: httpx.Client
    project: str = "alice/street"

    def url(self, rest: str = "") -> str:
        return f"/api/v1/projects/{self.project}{rest}"


def make_team(hub: LiveHub, *, task: str = "detection", classes: tuple[str, ...] = ("car", "person"),
              **settings: Any) -> Team:
    alice = hub.client(hub.create_user("alice", scopes="annotate"))
    alice_read = hub.client(_token(hub, "alice", "read"))
    users = {name: hub.client(hub.create_user(name, scopes="annotate")) for name in ("ann", "ann2", "rev", "eve")}
    r = alice.post("/api/v1/projects", json={"namespace": "alice", "name": "street", "task": task,
                                             "classes": list(classes), **settings})
    assert r.status_code == 201, r.text
    for name, role in ROLES.items():
        r = alice.put(f"/api/v1/projects/alice/street/members/{name}", json={"role": role})
        assert r.status_code == 204, r.text
    return Team(hub, alice, users["ann"], users["ann2"], users["rev"], users["eve"], alice_read, hub.client())


def _token(hub: LiveHub, name: str, scopes: str) -> str:
    from hub.models import User
    from hub.security import Scopes
    from hub.services import accounts

    with session_scope(hub.context.engine, write=True) as session:
        user = session.exec(select(User).where(User.name == name)).one()
        _, secret = accounts.create_token(session, user, Scopes.parse(scopes))
    return secret


def add_items(hub: LiveHub, project: str, count: int, *, width: int = 64, height: int = 48,
              suggestions: list[list[dict[str, Any]] | None] | None = None, model_version: str | None = "1.0.0",
              task: str = "detection") -> list[int]:
    """``count`` items of ``project``, each a distinct PNG stored as a blob, inserted as rows."""
    ids = []
    with session_scope(hub.context.engine) as session:
        project_id = session.exec(select(AnnotationProject.id).where(AnnotationProject.full_name == project)).one()
    rows = []
    for i in range(count):
        data = png(width, height, bytes([(i * 7) % 256]))
        digest = hub.context.uploads.put_small(data, grant_to=None)
        shown = suggestions[i] if suggestions is not None else None
        rows.append(AnnotationItem(project_id=project_id, sha256=digest, file_name=f"img{i:05d}.png", width=width,
                                   height=height, suggestions=shown,
                                   suggestion_version=model_version if shown is not None else None,
                                   confidence=confidence(shown, task) if shown else None))
    with session_scope(hub.context.engine, write=True) as session:
        session.add_all(rows)
        session.flush()
        ids = [r.id for r in rows if r.id is not None]
    return ids


def item_row(hub: LiveHub, item_id: int) -> AnnotationItem:
    with session_scope(hub.context.engine) as session:
        row = session.get(AnnotationItem, item_id)
        assert row is not None
        return row

"""Every endpoint against every kind of token, each answer held to the endpoint's declared access.

The endpoints come from the registry the app is built from, so a new endpoint joins this test by
being registered, and one registered without a declaration cannot be built at all. The oracle
below (``SATISFIES``) is written out by hand from the scope table in ``hub.security``; it does not
call the code under test.

The world: ``alice`` is a hub administrator who owns the private package ``alice/pkg`` (1.0.0),
the organisation ``acme``, an open upload session, a registered repository, a spare token, and
the private annotation project ``alice/pkg`` with one item (a PNG). ``bob`` is another user with
``read publish``. Kinds of caller: no token, alice's expired, revoked, ``read``,
``publish:alice/pkg``, ``publish:alice``, ``publish``, ``annotate`` and ``admin`` tokens, and
bob's token.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from hub import api
from hub.api.access import Access
from hub.db import session_scope
from hub.models import AnnotationItem, Repository, Token, TrainingJob, User, row_id, utcnow
from hub.security import Scopes
from hub.services import accounts
from hub.services.accounts import Principal
from hub.services.annotation import projects
from tests.helpers import PASSWORD, LiveHub, manifest, publish, sha256, upload
from tests.runner._images import png

KINDS = ("none", "expired", "revoked", "read", "publish:alice/pkg", "publish:alice", "publish", "annotate", "admin",
         "bob")
INVALID = {"none", "expired", "revoked"}

#: Which kinds of caller hold each declared scope, for a target in alice's namespace ("alice")
#: and for one outside it ("acme", the organisation).
SATISFIES: dict[tuple[str, str], set[str]] = {
    ("token", ""): {"read", "publish:alice/pkg", "publish:alice", "publish", "annotate", "admin", "bob"},
    ("read", ""): {"read", "publish", "admin", "bob"},
    ("publish", ""): {"publish", "admin", "bob"},
    ("publish:any", ""): {"publish:alice/pkg", "publish:alice", "publish", "admin", "bob"},
    ("publish:ns", "alice"): {"publish:alice", "publish", "admin", "bob"},
    ("publish:ns", "acme"): {"publish", "admin", "bob"},
    ("publish:pkg", "alice"): {"publish:alice/pkg", "publish:alice", "publish", "admin", "bob"},
    ("annotate", ""): {"annotate", "publish", "admin", "bob"},
    ("admin", ""): {"admin"},
}

PATH = {"namespace": "alice", "name": "pkg", "version": "1.0.0", "org": "acme", "user": "bob",
        "path": "cvflow.toml"}


class World:
    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.counter = itertools.count(1)
        ctx = hub.context
        self.tokens: dict[str, str] = {}
        with session_scope(ctx.engine, write=True) as session:
            alice = accounts.create_user(session, ctx.hasher, "alice", PASSWORD, admin=True)
            bob = accounts.create_user(session, ctx.hasher, "bob", PASSWORD)
            for kind in ("read", "publish:alice/pkg", "publish:alice", "publish", "annotate", "admin", "expired",
                         "revoked"):
                scopes = "read publish" if kind in ("expired", "revoked") else kind
                row, self.tokens[kind] = accounts.create_token(session, alice, Scopes.parse(scopes))
                if kind == "expired":
                    row.expires_at = utcnow() - timedelta(seconds=1)
                if kind == "revoked":
                    row.revoked_at = utcnow()
            _, self.tokens["bob"] = accounts.create_token(session, bob, Scopes.parse("read publish"))
            spare, _ = accounts.create_token(session, alice, Scopes.parse("read"), name="spare")
            accounts.create_org(session, alice, "acme")
            session.flush()
            self.spare_token_id = spare.id
            self.alice_id, self.bob_id = alice.id, bob.id
        self.owner = hub.client(self.tokens["admin"])
        r = publish(self.owner, "alice/pkg", "1.0.0", private=True)
        assert r.status_code == 201, r.text
        created = self.owner.post("/api/v1/uploads", json={"size": 4})
        assert created.status_code == 201, created.text
        self.upload_id = created.json()["location"].rstrip("/").rsplit("/", 1)[1]
        digest = self.image = ctx.uploads.put_small(png(8, 6), grant_to=None)  # the project's image
        with session_scope(ctx.engine, write=True) as session:
            ns_id = session.exec(sa.select(User.namespace_id).where(User.id == self.alice_id)).scalar_one()  # type: ignore[call-overload]
            repo = Repository(namespace_id=ns_id, registered_by=self.alice_id, url="https://git.example.com/alice/pkg.git",
                              display_url="https://git.example.com/alice/pkg.git", webhook_secret="0" * 64)
            session.add(repo)
            session.flush()
            self.repository_id = repo.id
            project = projects.create_project(session, Principal(user=alice, scopes=Scopes.parse("admin")),
                                              namespace="alice", name="pkg", task="detection", classes=["a", "b"])
            item = AnnotationItem(project_id=row_id(project), sha256=digest, file_name="a.png", width=8, height=6)
            session.add(item)
            job = TrainingJob(project_id=row_id(project), base_package="alice/pkg", base_version="1.0.0",
                              trainer="t", dataset_package="alice/pkg-data", dataset_version="1.0.0",
                              target_package="alice/pkg")  # a queued training job of the project
            session.add(job)
            session.flush()
            self.item_id, self.job_id = item.id, job.id

    def path_params(self) -> dict[str, Any]:
        return {**PATH, "token_id": self.spare_token_id, "upload_id": self.upload_id,
                "repository_id": self.repository_id, "item_id": self.item_id, "job_id": self.job_id}

    def token_scopes(self, kind: str) -> list[str]:
        return {"bob": ["read", "publish"]}.get(kind, kind.split())


def _bodies(world: World) -> dict[tuple[str, str], Callable[[str], dict[str, Any]]]:
    """A request each caller could make, so that an allowed caller gets past the body's checks."""

    def new_version(kind: str) -> dict[str, Any]:
        version = f"1.0.{next(world.counter)}"
        text = manifest("alice/pkg", version)
        solver = b"class Detector: pass\n"
        files = [{"path": "cvflow.toml", "size": len(text.encode()), "sha256": upload(world.owner, text.encode())},
                 {"path": "solver.py", "size": len(solver), "sha256": upload(world.owner, solver)}]
        return {"json": {"manifest": text, "files": files}}

    return {
        ("POST", "/api/v1/auth/login"): lambda k: {"json": {"username": "alice", "password": PASSWORD}},
        ("POST", "/api/v1/tokens"): lambda k: {"json": {"scopes": world.token_scopes(k) if k not in INVALID else ["read"]}},
        ("POST", "/api/v1/orgs"): lambda k: {"json": {"name": f"org-{next(world.counter)}"}},
        ("PUT", "/api/v1/orgs/{org}/members/{user}"): lambda k: {"json": {"role": "member"}},
        ("POST", "/api/v1/index"): lambda k: {"json": {"packages": ["alice/pkg"]}},
        ("PATCH", "/api/v1/packages/{namespace}/{name}"): lambda k: {"json": {"private": True}},
        ("POST", "/api/v1/packages/{namespace}/{name}/versions"): new_version,
        ("POST", "/api/v1/packages/{namespace}/{name}/versions/{version}/yank"): lambda k: {"json": {"reason": "matrix"}},
        ("POST", "/api/v1/packages/{namespace}/{name}/versions/{version}/unyank"): lambda k: {"json": {"reason": "matrix"}},
        ("DELETE", "/api/v1/packages/{namespace}/{name}/versions/{version}"): lambda k: {"json": {"reason": "matrix"}},
        ("PUT", "/api/v1/packages/{namespace}/{name}/roles/{user}"): lambda k: {"json": {"role": "maintainer"}},
        ("POST", "/api/v1/blobs/check"): lambda k: {"json": {"digests": [sha256(b"matrix")]}},
        ("POST", "/api/v1/uploads"): lambda k: {"json": {"size": 4}},
        ("PATCH", "/api/v1/uploads/{upload_id}"): lambda k: {"content": b"data", "headers": {"upload-offset": "0"}},
        ("POST", "/api/v1/uploads/{upload_id}/finish"): lambda k: {"json": {"sha256": sha256(b"data")}},
        ("POST", "/api/v1/repositories"): lambda k: {"json": {"url": "https://git.example.com/alice/other.git",
                                                              "namespace": "alice"}},
        ("POST", "/api/v1/repositories/{repository_id:int}/webhook"): lambda k: {"content": b"{}"},
        ("POST", "/api/v1/projects"): lambda k: {"json": {"namespace": "alice", "name": f"p-{next(world.counter)}",
                                                          "task": "detection", "classes": ["a"]}},
        ("PATCH", "/api/v1/projects/{namespace}/{name}"): lambda k: {"json": {"description": "matrix"}},
        ("PUT", "/api/v1/projects/{namespace}/{name}/members/{user}"): lambda k: {"json": {"role": "annotator"}},
        ("PUT", "/api/v1/projects/{namespace}/{name}/items/{item_id:id}/labels"): lambda k: {
            "json": {"revision": 0, "labels": [{"class": "a", "bbox": [1, 1, 2, 2], "from": None}]}},
        ("POST", "/api/v1/projects/{namespace}/{name}/items/{item_id:id}/review"): lambda k: {
            "json": {"revision": 1, "verdict": "approve"}},
        ("POST", "/api/v1/projects/{namespace}/{name}/items"): lambda k: {
            "json": {"items": [{"sha256": world.image, "file_name": f"m{next(world.counter)}.png"}]}},
        ("POST", "/api/v1/projects/{namespace}/{name}/items/from-dataset"): lambda k: {
            "json": {"package": "alice/pkg", "version": "1.0.0"}},
        ("POST", "/api/v1/projects/{namespace}/{name}/suggestions/claim"): lambda k: {"json": {"worker": "matrix"}},
        ("POST", "/api/v1/projects/{namespace}/{name}/suggestions"): lambda k: {
            "json": {"worker": "matrix", "model_version": "1.0.0", "results": [{"item": world.item_id, "suggestions": []}]}},
        ("POST", "/api/v1/projects/{namespace}/{name}/snapshots"): lambda k: {"json": {}},
        ("PATCH", "/api/v1/projects/{namespace}/{name}/training"): lambda k: {"json": {"every": 3}},
        ("POST", "/api/v1/training-jobs/claim"): lambda k: {"json": {"worker": "matrix"}},
        ("POST", "/api/v1/training-jobs/{job_id:id}/heartbeat"): lambda k: {"json": {"lease": "matrix"}},
        ("POST", "/api/v1/training-jobs/{job_id:id}/finish"): lambda k: {"json": {"lease": "matrix", "state": "failed"}},
        ("PUT", "/api/v1/training-jobs/{job_id:id}/checkpoint"): lambda k: {"content": b"x", "headers": {"cvflow-lease": "m"}},
        ("GET", "/api/v1/training-jobs/{job_id:id}/checkpoint"): lambda k: {"headers": {"cvflow-lease": "m"}},
        ("PUT", "/api/v1/training-jobs/{job_id:id}/preview"): lambda k: {"content": b"x", "headers": {"cvflow-lease": "m"}},
    }


def _url(path: str, params: dict[str, Any]) -> str:
    for key, value in params.items():
        for convertor in ("", ":int", ":id", ":path"):
            path = path.replace("{" + key + convertor + "}", str(value))
    assert "{" not in path, path
    return path


def _target(access: Access, path: str, body: dict[str, Any]) -> str:
    if access.scope == "publish:ns":
        return "acme" if "{org}" in path else "alice"
    if access.scope == "publish:pkg":
        return "alice"
    if access.target and access.target.startswith("body:"):
        return "acme" if body.get("json", {}).get(access.target[5:]) == "acme" else "alice"
    if access.target == "repository":
        return "alice"  # the world's repository is registered in alice's namespace, with no package yet
    return ""


ENDPOINTS = api.endpoints()


def test_every_endpoint_declares_its_access():
    for e in ENDPOINTS:
        assert isinstance(e.access, Access), f"{e.method} {e.path} has no access declaration"
        if e.access.target:
            assert e.access.scope == "publish:any", f"{e.method} {e.path}: a target found later is checked by the handler"


def test_the_app_serves_only_registered_endpoints(hub: LiveHub):
    from starlette.routing import Route

    from hub.app import create_app

    def flat(routes: list[Any]) -> list[Any]:
        return [leaf for r in routes for leaf in (flat(r.routes) if getattr(r, "routes", None) else [r])]

    registered = {e.path for e in ENDPOINTS}
    app = create_app(hub.context.settings, context=hub.context)
    api_paths = {r.path for r in flat(app.routes)
                 if isinstance(r, Route) and r.path.startswith(("/api/", "/healthz", "/readyz"))}
    assert api_paths - registered == {"/api/v1/openapi.json"}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{e.method} {e.path}" for e in ENDPOINTS])
def test_answers_match_the_declaration(hub: LiveHub, endpoint):  # type: ignore[no-untyped-def]
    world = World(hub)
    bodies = _bodies(world)
    access: Access = endpoint.access
    url = _url(endpoint.path, world.path_params())
    statuses: dict[str, int] = {}
    for kind in KINDS:
        token = world.tokens.get(kind)
        client = hub.client(token)
        make_body = bodies.get((endpoint.method, endpoint.path))
        if make_body is None and endpoint.request is not None:
            pytest.fail(f"{endpoint.method} {endpoint.path} takes a body: give the matrix an example in _bodies")
        kwargs = make_body(kind) if make_body else {}
        r = client.request(endpoint.method, url, **kwargs)
        statuses[kind] = r.status_code
        where = f"{endpoint.method} {url} as {kind}: {r.status_code} {r.text[:300]}"
        assert r.status_code < 500, where
        if access.scope == "public":
            continue
        if kind in INVALID:
            if kind == "none" and access.scope == "optional":
                assert r.status_code not in (401, 403), where
            else:
                assert r.status_code == 401, where
                assert r.json()["error"]["code"] == "unauthenticated", where
                assert r.headers.get("www-authenticate") == "Bearer", where
            continue
        if access.scope == "optional":
            assert r.status_code not in (401, 403), where
            continue
        scope = "publish:ns" if access.target else access.scope  # the handler checks the namespace it finds
        holders = SATISFIES[(scope, _target(access, endpoint.path, kwargs))]
        if kind not in holders:
            assert r.status_code == 403, where
            assert r.json()["error"]["code"] == "insufficient_scope", where
        elif kind == "bob" and access.role:
            assert r.status_code in (403, 404), where
            if r.status_code == 403:
                assert r.json()["error"]["code"] == "forbidden", where
        else:
            assert r.status_code not in (401, 403), where
    if access.scope == "public":
        # A public endpoint never looks at the token: every caller gets the same answer
        # (the first call of a creating endpoint aside, which later calls find done).
        assert len(set(list(statuses.values())[1:])) == 1, statuses


def test_token_kinds_are_what_they_claim(hub: LiveHub):
    # Guards the matrix: the expired and revoked tokens really are refused, the others resolve.
    world = World(hub)
    for kind in KINDS[1:]:
        r = hub.client(world.tokens[kind]).get("/api/v1/whoami")
        assert (r.status_code == 401) == (kind in INVALID), (kind, r.status_code)
    with session_scope(hub.context.engine) as session:
        revoked = session.exec(sa.select(Token).where(Token.revoked_at.is_not(None))).all()  # type: ignore[call-overload,union-attr]
        assert len(revoked) == 1


def test_a_read_token_cannot_change_the_account(hub: LiveHub):
    # The defect that started this: a read token created organisations and revoked other tokens.
    world = World(hub)
    reader = hub.client(world.tokens["read"])
    assert reader.post("/api/v1/orgs", json={"name": "evil"}).status_code == 403
    assert reader.put("/api/v1/orgs/acme/members/bob", json={"role": "owner"}).status_code == 403
    assert reader.delete(f"/api/v1/tokens/{world.spare_token_id}").status_code == 403
    assert hub.client(world.tokens["publish"]).delete(f"/api/v1/tokens/{world.spare_token_id}").status_code == 204
    assert httpx.get(hub.url + "/api/v1/orgs/evil").status_code == 404

"""Projects over a live hub on both backends: create, list, read, change, members, every role."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from hub.db import session_scope
from hub.models import AnnotationEvent, AnnotationItem, AnnotationProject, User
from hub.services.accounts import ANONYMOUS
from hub.services.annotation import projects
from tests.annotation import Team, add_items, make_team
from tests.helpers import LiveHub, error_code


@pytest.fixture
def team(hub: LiveHub) -> Team:
    return make_team(hub)


def test_create_sets_defaults_and_answers_the_document(hub: LiveHub):
    alice = hub.client(hub.create_user("alice", scopes="annotate"))
    r = alice.post("/api/v1/projects", json={"namespace": "alice", "name": "street", "task": "detection",
                                             "classes": ["car", "person"]})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert r.headers["location"] == "/api/v1/projects/alice/street"
    assert doc["full_name"] == "alice/street" and doc["role"] == "owner"
    assert doc["private"] is True and doc["queue_order"] == "sequential" and doc["suggest"] is None
    assert doc["dataset_package"] == "alice/street-data"
    assert doc["classes"] == ["car", "person"]
    assert doc["counts"] == {"todo": 0, "done": 0, "approved": 0, "total": 0}
    assert doc["members"] == [] and doc["snapshots"] == []
    assert doc["stats"]["total"]["items"] == 0
    again = alice.get("/api/v1/projects/alice/street").json()
    assert {k: again[k] for k in ("full_name", "classes", "private")} == {k: doc[k] for k in ("full_name", "classes", "private")}

    r = alice.post("/api/v1/projects", json={"namespace": "alice", "name": "street", "task": "classification",
                                             "classes": ["x"]})
    assert r.status_code == 409 and error_code(r) == "project_exists"

    r = alice.post("/api/v1/projects", json={
        "namespace": "alice", "name": "cats", "task": "classification", "classes": ["cat", "dog"], "private": False,
        "queue_order": "uncertainty", "description": "pets", "dataset_package": "alice/pets",
        "suggest": {"package": "demo/digits-detector", "range": "^1.2", "solver": "detect"}})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["suggest"] == {"package": "demo/digits-detector", "range": "^1.2", "solver": "detect"}
    assert (doc["private"], doc["queue_order"], doc["dataset_package"]) == (False, "uncertainty", "alice/pets")


@pytest.mark.parametrize(("change", "field"), [
    ({"name": "Street"}, "name"),
    ({"name": "a--b"}, "name"),
    ({"classes": []}, "classes"),
    ({"classes": ["car", "Car"]}, "classes[1]"),
    ({"classes": ["<b>car</b>"]}, "classes.0"),
    ({"classes": [" car"]}, "classes.0"),
    ({"classes": "car"}, "classes"),
    ({"task": "segmentation"}, "task"),
    ({"queue_order": "random"}, "queue_order"),
    ({"suggest": {"package": "demo/det", "range": "1.2.x.y", "solver": "detect"}}, "suggest.range"),
    ({"suggest": {"package": "nope", "solver": "detect"}}, "suggest.package"),
    ({"suggest": {"package": "demo/det", "solver": "Bad Solver"}}, "suggest.solver"),
    ({"dataset_package": "no-slash"}, "dataset_package"),
])
def test_bad_settings_are_invalid_project_naming_the_field(hub: LiveHub, change: dict[str, Any], field: str):
    alice = hub.client(hub.create_user("alice", scopes="annotate"))
    body = {"namespace": "alice", "name": "street", "task": "detection", "classes": ["car"], **change}
    r = alice.post("/api/v1/projects", json=body)
    assert r.status_code == 422, r.text
    assert error_code(r) == "invalid_project"
    fields = [p["field"] for p in r.json()["error"]["details"]["problems"]]
    assert any(f == field or f.startswith(field) for f in fields), fields
    assert alice.get("/api/v1/projects/alice/street").status_code == 404


def test_service_rules_match_the_bodys(hub: LiveHub):
    # The service is the rule's home (the website and the CLI call it too): the same refusals.
    from hub.security import Scopes
    from hub.services.accounts import Principal

    ctx = hub.context
    hub.create_user("alice", scopes="annotate")
    with session_scope(ctx.engine, write=True) as session:
        alice = session.exec(select(User).where(User.name == "alice")).one()
        who = Principal(user=alice, scopes=Scopes.parse("annotate"))
        for bad in ({"classes": ["a", "A"]}, {"classes": ["a&b"]}, {"name": "-x"}, {"classes": ["ok"] * 0},
                    {"suggest": {"package": "a/b", "range": ">>1", "solver": "s"}}):
            args: dict[str, Any] = {"namespace": "alice", "name": "p", "task": "detection", "classes": ["a"], **bad}
            with pytest.raises(Exception) as caught:
                projects.create_project(session, who, **args)
            assert getattr(caught.value, "code", None) == "invalid_project", bad


def test_where_a_project_may_be_created(hub: LiveHub):
    alice = hub.client(hub.create_user("alice", scopes="annotate"))
    bob = hub.client(hub.create_user("bob", scopes="read publish"))
    reader = hub.client(hub.create_user("carol", scopes="read"))
    body = {"task": "detection", "classes": ["car"]}
    r = bob.post("/api/v1/projects", json={"namespace": "alice", "name": "p", **body})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = alice.post("/api/v1/projects", json={"namespace": "nobody", "name": "p", **body})
    assert r.status_code == 404 and error_code(r) == "namespace_not_found"
    r = reader.post("/api/v1/projects", json={"namespace": "carol", "name": "p", **body})
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    r = hub.client().post("/api/v1/projects", json={"namespace": "carol", "name": "p", **body})
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    # an organisation's members create in it (bob's unscoped publish token implies annotate)
    assert bob.post("/api/v1/orgs", json={"name": "acme"}).status_code == 201
    r = bob.post("/api/v1/projects", json={"namespace": "acme", "name": "p", **body})
    assert r.status_code == 201, r.text
    assert alice.post("/api/v1/projects", json={"namespace": "acme", "name": "q", **body}).status_code == 403


def test_a_private_project_is_absent_to_everyone_without_a_role(team: Team):
    absent = team.anonymous.get("/api/v1/projects/alice/nothing-here")
    assert absent.status_code == 404 and error_code(absent) == "project_not_found"
    for who in (team.anonymous, team.eve):
        for path in ("", "/items", "/items/1", "/items/1/history", "/items/1/image"):
            r = who.get(team.url(path))
            assert r.status_code == 404, (path, r.text)
            assert error_code(r) == "project_not_found", path
        for method, path, body in (("POST", "/queue", None), ("PATCH", "", {"description": "x"}),
                                   ("PUT", "/members/eve", {"role": "owner"}),
                                   ("PUT", "/items/1/labels", {"revision": 0, "labels": []}),
                                   ("POST", "/items/1/review", {"revision": 0, "verdict": "approve"}),
                                   ("DELETE", "/items/1/lease", None)):
            r = who.request(method, team.url(path), json=body)
            expected = 401 if who is team.anonymous else 404
            assert r.status_code == expected, (method, path, r.text)
    # every role holder sees it, with their role; alice's read token too
    for client, role in ((team.alice, "owner"), (team.ann, "annotator"), (team.rev, "reviewer"),
                         (team.alice_read, "owner")):
        r = client.get(team.url())
        assert r.status_code == 200, r.text
        assert r.json()["role"] == role
        assert ("members" in r.json()) == (role == "owner")
    members = team.alice.get(team.url()).json()["members"]
    assert {m["user"]: m["role"] for m in members} == {"ann": "annotator", "ann2": "annotator", "rev": "reviewer"}


def test_lists_show_what_each_caller_may_see(team: Team):
    team.eve.post("/api/v1/projects", json={"namespace": "eve", "name": "open", "task": "classification",
                                            "classes": ["x"], "private": False})
    team.eve.post("/api/v1/projects", json={"namespace": "eve", "name": "shut", "task": "classification",
                                            "classes": ["x"]})

    def names(client: Any, query: str = "") -> list[str]:
        r = client.get("/api/v1/projects" + query)
        assert r.status_code == 200, r.text
        return [p["full_name"] for p in r.json()["projects"]]

    assert names(team.anonymous) == ["eve/open"]
    assert names(team.ann) == ["alice/street", "eve/open"]
    assert names(team.eve) == ["eve/open", "eve/shut"]
    assert names(team.alice, "?namespace=eve") == ["eve/open"]
    add_items(team.hub, "alice/street", 3)
    page = team.alice.get("/api/v1/projects?per_page=1&page=2").json()
    assert page["total"] == 2 and [p["full_name"] for p in page["projects"]] == ["eve/open"]
    first = team.alice.get("/api/v1/projects?per_page=1").json()["projects"][0]
    assert first["counts"] == {"todo": 3, "done": 0, "approved": 0, "total": 3}
    r = team.anonymous.get("/api/v1/projects?per_page=1000")
    assert r.status_code == 422 and error_code(r) == "invalid_field"


def test_owners_change_settings_and_no_one_else(team: Team):
    r = team.alice.patch(team.url(), json={"description": "cars and people", "queue_order": "uncertainty",
                                           "suggest": {"package": "demo/digits-detector", "solver": "detect"}})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["description"], doc["queue_order"]) == ("cars and people", "uncertainty")
    assert doc["suggest"] == {"package": "demo/digits-detector", "range": "*", "solver": "detect"}
    assert team.alice.patch(team.url(), json={"suggest": None}).json()["suggest"] is None
    for who in (team.ann, team.rev):
        r = who.patch(team.url(), json={"description": "mine"})
        assert r.status_code == 403 and error_code(r) == "forbidden"
    r = team.eve.patch(team.url(), json={"description": "mine"})
    assert r.status_code == 404 and error_code(r) == "project_not_found"
    r = team.alice_read.patch(team.url(), json={"description": "mine"})
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    assert team.alice.get(team.url()).json()["description"] == "cars and people"

    # classes only grow
    r = team.alice.patch(team.url(), json={"classes": ["car", "person", "bike"]})
    assert r.status_code == 200 and r.json()["classes"] == ["car", "person", "bike"]
    for bad in (["car", "bike"], ["person", "car", "bike"], ["car", "person", "bike", "Bike"], ["auto", "person", "bike"]):
        r = team.alice.patch(team.url(), json={"classes": bad})
        assert r.status_code == 422 and error_code(r) == "invalid_project", bad
    r = team.alice.patch(team.url(), json={"private": None})
    assert r.status_code == 422 and error_code(r) == "invalid_project"
    assert team.alice.get(team.url()).json()["classes"] == ["car", "person", "bike"]

    # making it public shows it to everyone, to read only
    assert team.alice.patch(team.url(), json={"private": False}).status_code == 200
    assert team.anonymous.get(team.url()).status_code == 200
    assert "members" not in team.anonymous.get(team.url()).json()
    r = team.eve.post(team.url("/queue"))
    assert r.status_code == 403 and error_code(r) == "forbidden"


def test_members_are_set_and_removed_by_owners(team: Team):
    r = team.alice.put(team.url("/members/eve"), json={"role": "reviewer"})
    assert r.status_code == 204
    assert team.eve.get(team.url()).json()["role"] == "reviewer"
    assert team.alice.put(team.url("/members/eve"), json={"role": "owner"}).status_code == 204
    # an owner named in the project manages it, and may remove themself
    assert team.eve.put(team.url("/members/rev"), json={"role": "annotator"}).status_code == 204
    assert team.eve.delete(team.url("/members/eve")).status_code == 204
    r = team.eve.get(team.url())
    assert r.status_code == 404 and error_code(r) == "project_not_found"
    # the namespace's user stays owner whatever is named
    assert team.alice.put(team.url("/members/alice"), json={"role": "reviewer"}).status_code == 204
    assert team.alice.get(team.url()).json()["role"] == "owner"
    assert team.alice.delete(team.url("/members/alice")).status_code == 204
    assert team.alice.delete(team.url("/members/alice")).status_code == 204  # nothing to remove is fine

    r = team.alice.put(team.url("/members/nobody"), json={"role": "annotator"})
    assert r.status_code == 404 and error_code(r) == "user_not_found"
    r = team.alice.put(team.url("/members/eve"), json={"role": "boss"})
    assert r.status_code == 422
    for who in (team.ann, team.rev):
        r = who.put(team.url("/members/eve"), json={"role": "annotator"})
        assert r.status_code == 403 and error_code(r) == "forbidden"
        r = who.delete(team.url("/members/ann2"))
        assert r.status_code == 403 and error_code(r) == "forbidden"
    members = {m["user"]: m["role"] for m in team.alice.get(team.url()).json()["members"]}
    assert members == {"ann": "annotator", "ann2": "annotator", "rev": "annotator"}


def test_the_project_page_renders_fast_at_ten_thousand_items(hub: LiveHub):
    # The statistics are one query: the document of a project with 10,000 saved items is quick.
    team = make_team(hub)
    digest = hub.context.uploads.put_small(b"\x89PNG\r\n\x1a\n" + b"\0" * 32, grant_to=None)
    engine = hub.context.engine
    with session_scope(engine, write=True) as session:
        project = session.exec(select(AnnotationProject)).one()
        user_id = session.exec(select(User.id).where(User.name == "ann")).one()
        session.execute(sa.insert(AnnotationItem), [
            {"project_id": project.id, "sha256": digest, "file_name": f"{i}.png", "width": 10, "height": 10,
             "status": "done" if i % 3 else "todo", "revision": 1, "labels": [], "time_ms": 1000 + i,
             "suggestion_version": f"1.{i % 4}.0"} for i in range(10_000)])
        ids = session.exec(select(AnnotationItem.id)).all()
        session.execute(sa.insert(AnnotationEvent), [
            {"project_id": project.id, "item_id": item_id, "user_id": user_id, "action": "save", "revision": 1,
             "model_version": f"1.{item_id % 4}.0", "accepted": 2, "edited": 1, "rejected": 1, "added": 0,
             "duration_ms": 1000} for item_id in ids])
    with session_scope(engine) as session:
        project = session.exec(select(AnnotationProject)).one()
        projects.project_document(session, ANONYMOUS, project)  # warm
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            doc = projects.project_document(session, ANONYMOUS, project)
            best = min(best, time.perf_counter() - start)
    assert doc["counts"]["total"] == 10_000
    assert doc["stats"]["total"]["items"] == 10_000 and doc["stats"]["total"]["accepted"] == 20_000
    assert [v["model_version"] for v in doc["stats"]["per_model_version"]] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    print(f"project document at 10,000 items ({hub.backend}): {best * 1000:.1f} ms")
    assert best < 0.2, best  # measured well under 50 ms; the bound leaves room for a loaded machine
    r = team.alice.get(team.url())
    assert r.status_code == 200

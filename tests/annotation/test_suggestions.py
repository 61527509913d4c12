"""Suggestion workers over a live hub on both backends: claims with leases, posts, a model that moves on."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from hub.db import session_scope
from hub.models import AnnotationEvent, AnnotationItem, AnnotationProject, utcnow
from tests.annotation import Team, _token, add_items, item_row, make_team
from tests.helpers import LiveHub, error_code, publish

BOX = {"class": "car", "bbox": [1, 2, 10, 20], "score": 0.9}


@pytest.fixture
def team(hub: LiveHub) -> Team:
    return make_team(hub)


@pytest.fixture
def publisher(team: Team) -> httpx.Client:
    return team.hub.client(_token(team.hub, "alice", "read publish"))


def use_model(team: Team, publisher: httpx.Client, *versions: str, range_: str = "^1") -> None:
    for version in versions:
        assert publish(publisher, "alice/detector", version).status_code == 201
    r = team.alice.patch(team.url(), json={"suggest": {"package": "alice/detector", "range": range_, "solver": "detect"}})
    assert r.status_code == 200, r.text


def claim(team: Team, client: httpx.Client, worker: str, limit: int = 256, lease: int = 600) -> httpx.Response:
    return client.post(team.url("/suggestions/claim"), json={"worker": worker, "limit": limit, "lease_seconds": lease})


def claimed(team: Team, client: httpx.Client, worker: str, limit: int = 256) -> list[int]:
    r = claim(team, client, worker, limit)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["items"]]


def post(team: Team, client: httpx.Client, worker: str, version: str, results: list[dict[str, Any]]) -> httpx.Response:
    return client.post(team.url("/suggestions"), json={"worker": worker, "model_version": version, "results": results})


def model_version(team: Team) -> str | None:
    with session_scope(team.hub.context.engine) as session:
        return session.exec(select(AnnotationProject.model_version)).one()


def test_no_model_no_claim(team: Team, publisher: httpx.Client):
    add_items(team.hub, team.project, 2)
    r = claim(team, team.ann, "w")
    assert r.status_code == 409 and error_code(r) == "no_suggestion_model"
    use_model(team, publisher, range_="^1")  # named, but never published
    r = claim(team, team.ann, "w")
    assert r.status_code == 409 and error_code(r) == "no_suggestion_model"
    assert publish(publisher, "alice/detector", "2.0.0").status_code == 201  # outside the range
    r = claim(team, team.ann, "w")
    assert r.status_code == 409 and error_code(r) == "no_suggestion_model"
    # A private model the worker may not read is no model to them; its owner may use it.
    bob = team.hub.user_client("bob")
    assert publish(bob, "bob/secret", "1.0.0", private=True).status_code == 201
    assert team.alice.patch(team.url(), json={"suggest": {"package": "bob/secret", "range": "*", "solver": "detect"}}
                            ).status_code == 200
    r = claim(team, team.ann, "w")
    assert r.status_code == 409 and error_code(r) == "no_suggestion_model"
    assert claim(team, bob, "w").status_code == 404  # bob holds no role: the project is not his to see


def test_claim_answers_the_model_and_the_items(team: Team, publisher: httpx.Client):
    ids = add_items(team.hub, team.project, 3)
    use_model(team, publisher, "1.0.0", "1.1.0-rc.1")  # a pre-release is not in ^1
    r = claim(team, team.ann, "gpu-1", limit=2, lease=60)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model"] == {"package": "alice/detector", "version": "1.0.0", "solver": "detect"}
    assert [i["id"] for i in doc["items"]] == ids[:2]
    first = doc["items"][0]
    assert (first["width"], first["height"], first["file_name"]) == (64, 48, "img00000.png")
    image = team.ann.get(first["image"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert team.hub.context.uploads and first["sha256"] == item_row(team.hub, ids[0]).sha256
    assert model_version(team) == "1.0.0"
    row = item_row(team.hub, ids[0])
    assert row.suggest_worker == "gpu-1" and row.suggest_lease_until is not None
    assert timedelta(seconds=50) < row.suggest_lease_until - utcnow() <= timedelta(seconds=60)
    # The rest go to the next worker; then nothing is left.
    assert claimed(team, team.ann2, "gpu-2") == ids[2:]
    assert claimed(team, team.alice, "owner") == []


def test_roles(team: Team, publisher: httpx.Client):
    ids = add_items(team.hub, team.project, 1)
    use_model(team, publisher, "1.0.0")
    for client, status, code in ((team.rev, 403, "forbidden"), (team.eve, 404, "project_not_found"),
                                 (team.alice_read, 403, "insufficient_scope"), (team.anonymous, 401, "unauthenticated")):
        r = claim(team, client, "w")
        assert r.status_code == status and error_code(r) == code, r.text
        r = post(team, client, "w", "1.0.0", [{"item": ids[0], "suggestions": [BOX]}])
        assert r.status_code == status and error_code(r) == code, r.text
    assert item_row(team.hub, ids[0]).suggestions is None


def test_concurrent_workers_never_share_an_item(team: Team, publisher: httpx.Client):
    ids = add_items(team.hub, team.project, 60)
    use_model(team, publisher, "1.0.0")
    clients = [team.ann, team.ann2, team.alice, team.hub.client(_token(team.hub, "ann", "annotate"))]
    got: dict[str, list[int]] = {}
    errors: list[str] = []
    start = threading.Barrier(len(clients))

    def work(n: int, client: httpx.Client) -> None:
        mine = got.setdefault(f"w{n}", [])
        start.wait()
        while True:
            r = claim(team, client, f"w{n}", limit=3)
            if r.status_code != 200:
                errors.append(r.text)
                return
            items = [i["id"] for i in r.json()["items"]]
            if not items:
                return
            mine.extend(items)

    threads = [threading.Thread(target=work, args=(n, c)) for n, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    every = [i for items in got.values() for i in items]
    assert sorted(every) == ids  # each item exactly once
    with session_scope(team.hub.context.engine) as session:
        owners = dict(session.exec(select(AnnotationItem.id, AnnotationItem.suggest_worker)).all())
    assert all(owners[i] == worker for worker, items in got.items() for i in items)


def test_an_expired_lease_is_offered_again_and_the_late_worker_is_skipped(team: Team, publisher: httpx.Client):
    ids = add_items(team.hub, team.project, 2)
    use_model(team, publisher, "1.0.0")
    assert claimed(team, team.ann, "slow", limit=1) == ids[:1]
    with session_scope(team.hub.context.engine, write=True) as session:  # the lease runs out
        session.exec(sa.update(AnnotationItem).where(col(AnnotationItem.id) == ids[0])
                     .values(suggest_lease_until=utcnow() - timedelta(seconds=1)))
    assert claimed(team, team.ann2, "fast", limit=5) == ids
    r = post(team, team.ann, "slow", "1.0.0", [{"item": ids[0], "suggestions": [BOX]}])
    assert r.status_code == 200 and r.json() == {"stored": 0, "skipped": 1}
    assert item_row(team.hub, ids[0]).suggestions is None
    r = post(team, team.ann2, "fast", "1.0.0", [{"item": i, "suggestions": [BOX]} for i in ids])
    assert r.status_code == 200 and r.json() == {"stored": 2, "skipped": 0}


def test_post_stores_suggestions_and_clears_the_lease(team: Team, publisher: httpx.Client):
    ids = add_items(team.hub, team.project, 2)
    use_model(team, publisher, "1.0.0")
    assert claimed(team, team.ann, "w") == ids
    low = {"class": "person", "bbox": [0, 0, 64.2, 48], "score": 0.25}  # rounding overhang: clipped
    r = post(team, team.ann, "w", "1.0.0", [{"item": ids[0], "suggestions": [BOX, low]},
                                            {"item": ids[1], "suggestions": []},
                                            {"item": 99_999, "suggestions": [BOX]}])  # not the project's
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": 2, "skipped": 1}
    row = item_row(team.hub, ids[0])
    assert row.suggestions == [{"class": "car", "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.9},
                               {"class": "person", "bbox": [0.0, 0.0, 64.0, 48.0], "score": 0.25}]
    assert (row.suggestion_version, row.confidence, row.revision) == ("1.0.0", 0.25, 1)
    assert row.suggest_worker is None and row.suggest_lease_until is None and row.status == "todo"
    assert item_row(team.hub, ids[1]).suggestions == []
    with session_scope(team.hub.context.engine) as session:
        events = session.exec(select(AnnotationEvent.item_id, AnnotationEvent.model_version, AnnotationEvent.revision)
                              .where(AnnotationEvent.action == "suggest")).all()
    assert sorted(events) == [(ids[0], "1.0.0", 1), (ids[1], "1.0.0", 1)]
    # The annotator sees them, and nothing is left to claim for this model.
    doc = team.ann.get(team.url(f"/items/{ids[0]}")).json()
    assert len(doc["suggestions"]) == 2
    assert claimed(team, team.ann, "w") == []


@pytest.mark.parametrize("bad", [
    {"class": "car", "bbox": [60, 40, 10, 10], "score": 0.5},  # leaves the 64x48 image
    {"class": "car", "bbox": [1, 1, 0, 5], "score": 0.5},  # no width
    {"class": "truck", "bbox": [1, 1, 5, 5], "score": 0.5},  # not a class of the project
    {"class": "car", "bbox": [1, 1, 5, 5], "score": 1.5},
    {"class": "car", "bbox": [1, 1, 5], "score": 0.5},
    {"class": "car", "bbox": [1, 1, 5, 5]},
    "car",
])
def test_a_bad_suggestion_refuses_the_whole_post(team: Team, publisher: httpx.Client, bad: Any):
    ids = add_items(team.hub, team.project, 2)
    use_model(team, publisher, "1.0.0")
    assert claimed(team, team.ann, "w") == ids
    r = post(team, team.ann, "w", "1.0.0", [{"item": ids[0], "suggestions": [BOX]},
                                            {"item": ids[1], "suggestions": [BOX, bad]}])
    assert r.status_code == 422 and error_code(r) == "invalid_labels", r.text
    assert r.json()["error"]["details"]["item"] == ids[1]
    assert str(ids[1]) in r.json()["error"]["message"]
    assert [item_row(team.hub, i).suggestions for i in ids] == [None, None]
    assert item_row(team.hub, ids[0]).suggest_worker == "w"  # still the worker's


def test_malformed_posts(team: Team, publisher: httpx.Client):
    ids = add_items(team.hub, team.project, 1)
    use_model(team, publisher, "1.0.0")
    for body in ({"worker": "w", "model_version": "1.0", "results": [{"item": ids[0], "suggestions": []}]},
                 {"worker": "w", "model_version": "1.0.0", "results": []},
                 {"worker": "", "model_version": "1.0.0", "results": [{"item": ids[0], "suggestions": []}]},
                 {"worker": "w", "model_version": "1.0.0", "results": [{"item": ids[0], "suggestions": []}] * 2},
                 {"worker": "w", "model_version": "1.0.0", "results": [{"item": ids[0], "suggestions": {}}]}):
        r = team.ann.post(team.url("/suggestions"), json=body)
        assert r.status_code == 422 and error_code(r) == "invalid_field", (body, r.text)
    for body in ({"worker": "w", "limit": 0}, {"worker": "w", "limit": 257}, {"worker": "w", "lease_seconds": 5},
                 {"worker": "x" * 201}, {"limit": 3}):
        r = team.ann.post(team.url("/suggestions/claim"), json=body)
        assert r.status_code == 422 and error_code(r) == "invalid_field", (body, r.text)


def test_a_newer_model_suggests_again_but_never_touches_saved_items(team: Team, publisher: httpx.Client):
    saved, unsaved, fresh, held = add_items(team.hub, team.project, 4)
    use_model(team, publisher, "1.0.0")
    assert claimed(team, team.ann, "w") == [saved, unsaved, fresh, held]
    r = post(team, team.ann, "w", "1.0.0", [{"item": i, "suggestions": [BOX]} for i in (saved, unsaved, held)])
    assert r.json() == {"stored": 3, "skipped": 0}
    # An annotator saves one item, and holds another from the queue.
    r = team.ann.put(team.url(f"/items/{saved}/labels"),
                     json={"revision": 1, "labels": [{"class": "car", "bbox": [1, 2, 10, 20], "from": 0}]})
    assert r.status_code == 200, r.text
    with session_scope(team.hub.context.engine, write=True) as session:  # ann2 holds `held` (as the queue leases)
        session.exec(sa.update(AnnotationItem).where(col(AnnotationItem.id) == held).values(
            leased_by=session.exec(sa.text("SELECT id FROM users WHERE name = 'ann2'")).scalar_one(),
            lease_until=utcnow() + timedelta(minutes=10)))
    # A newer version in the range (a yanked one and one outside the range do not count).
    for version in ("1.1.0", "1.2.0", "2.0.0"):
        assert publish(publisher, "alice/detector", version).status_code == 201
    r = publisher.post("/api/v1/packages/alice/detector/versions/1.2.0/yank", json={"reason": "broken"})
    assert r.status_code == 200, r.text
    r = claim(team, team.ann2, "w2")
    assert r.status_code == 200, r.text
    assert r.json()["model"]["version"] == "1.1.0"
    assert model_version(team) == "1.1.0"
    # Not the saved one, not the one an annotator holds, not `fresh`: w's lease on it still lasts.
    assert [i["id"] for i in r.json()["items"]] == [unsaved]
    # Even a post naming the saved and the held items leaves them as they are.
    before = item_row(team.hub, saved)
    newer = {**BOX, "score": 0.5}
    r = post(team, team.ann2, "w2", "1.1.0", [{"item": i, "suggestions": [newer]} for i in (saved, unsaved, fresh, held)])
    assert r.json() == {"stored": 1, "skipped": 3}
    after = item_row(team.hub, saved)
    assert (after.suggestions, after.suggestion_version, after.revision, after.labels, after.status) == (
        before.suggestions, "1.0.0", before.revision, before.labels, "done")
    assert item_row(team.hub, held).suggestion_version == "1.0.0"
    assert item_row(team.hub, unsaved).suggestions == [{**newer, "bbox": [1.0, 2.0, 10.0, 20.0]}]
    # A late worker still running the old model is skipped: its suggestions would be older.
    r = post(team, team.ann, "w", "1.0.0", [{"item": unsaved, "suggestions": [BOX]}])
    assert r.json() == {"stored": 0, "skipped": 1}
    assert item_row(team.hub, unsaved).suggestion_version == "1.1.0"

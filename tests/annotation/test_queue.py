"""The queue, leases, saves, review and history over a live hub on both backends."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from hub.db import session_scope
from hub.models import AnnotationItem, utcnow
from tests.annotation import Team, add_items, item_row, make_team
from tests.helpers import LiveHub, error_code, sha256
from tests.runner._images import png

SUGGESTED = [{"class": "car", "bbox": [10, 10, 20, 10], "score": 0.9},
             {"class": "person", "bbox": [30, 5, 10, 30], "score": 0.4},
             {"class": "car", "bbox": [0, 0, 5, 5], "score": 0.7}]


@pytest.fixture
def team(hub: LiveHub) -> Team:
    return make_team(hub)


def take(client: httpx.Client, team: Team) -> dict[str, Any] | None:
    r = client.post(team.url("/queue"))
    assert r.status_code == 200, r.text
    item: dict[str, Any] | None = r.json()["item"]
    return item


def save(client: httpx.Client, team: Team, item: dict[str, Any], labels: Any, **extra: Any) -> httpx.Response:
    return client.put(team.url(f"/items/{item['id']}/labels"),
                      json={"revision": item["revision"], "labels": labels, **extra})


def test_two_annotators_never_get_the_same_item(team: Team):
    ids = add_items(team.hub, team.project, 3)
    first = take(team.ann, team)
    assert first is not None and first["id"] == ids[0]
    assert first["lease"]["user"] == "ann"
    assert take(team.ann, team)["id"] == ids[0]  # type: ignore[index]  # the item you hold comes first
    second = take(team.ann2, team)
    assert second is not None and second["id"] == ids[1]
    third = take(team.alice, team)  # owners label too
    assert third is not None and third["id"] == ids[2]
    assert take(team.ann2, team)["id"] == ids[1]  # type: ignore[index]
    assert take(team.ann2, team)["id"] == ids[1]  # type: ignore[index]


@pytest.mark.parametrize("who", ["rev", "eve", "alice_read", "anonymous"])
def test_who_may_not_take_items(team: Team, who: str):
    add_items(team.hub, team.project, 1)
    r = getattr(team, who).post(team.url("/queue"))
    expected = {"rev": (403, "forbidden"), "eve": (404, "project_not_found"),
                "alice_read": (403, "insufficient_scope"), "anonymous": (401, "unauthenticated")}[who]
    assert (r.status_code, error_code(r)) == expected


def test_concurrent_annotators_drain_the_queue_each_item_once(team: Team):
    hub = team.hub
    ids = add_items(hub, team.project, 24)
    workers = []
    for n in range(6):
        token = hub.create_user(f"w{n}", scopes="annotate")
        assert team.alice.put(team.url(f"/members/w{n}"), json={"role": "annotator"}).status_code == 204
        workers.append(hub.client(token))
    handed: list[list[int]] = [[] for _ in workers]
    errors: list[str] = []
    start = threading.Barrier(len(workers))

    def drain(n: int) -> None:
        client = workers[n]
        start.wait()
        try:
            while True:
                item = take(client, team)
                if item is None:
                    return
                handed[n].append(item["id"])
                r = save(client, team, item, [{"class": "car", "bbox": [1, 1, 4, 4], "from": None}])
                if r.status_code != 200:
                    errors.append(r.text)
                    return
        except Exception as exc:  # noqa: BLE001  (reported below, with the thread's number)
            errors.append(f"worker {n}: {exc!r}")

    threads = [threading.Thread(target=drain, args=(n,)) for n in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    every = [i for got in handed for i in got]
    assert sorted(every) == sorted(ids), "each item handed out exactly once"
    counts = team.alice.get(team.url()).json()["counts"]
    assert counts == {"todo": 0, "done": 24, "approved": 0, "total": 24}


def test_an_expired_lease_hands_the_item_to_someone_else(team: Team):
    ids = add_items(team.hub, team.project, 2)
    held = take(team.ann, team)
    assert held is not None and held["id"] == ids[0]
    with session_scope(team.hub.context.engine, write=True) as session:
        session.execute(sa.update(AnnotationItem).where(AnnotationItem.id == ids[0])  # type: ignore[arg-type]
                        .values(lease_until=utcnow() - timedelta(seconds=1)))
    assert team.alice.get(team.url(f"/items/{ids[0]}")).json()["lease"] is None
    other = take(team.ann2, team)
    assert other is not None and other["id"] == ids[0] and other["lease"]["user"] == "ann2"
    # the first annotator's save now meets the other's live lease
    r = save(team.ann, team, held, [])
    assert r.status_code == 409 and error_code(r) == "item_leased"
    assert item_row(team.hub, ids[0]).revision == 0
    assert take(team.ann, team)["id"] == ids[1]  # type: ignore[index]


def test_the_uncertainty_order_hands_out_the_least_confident_first(hub: LiveHub):
    team = make_team(hub, queue_order="uncertainty")
    shown = [[{**SUGGESTED[0], "score": 0.9}], None, [{**SUGGESTED[0], "score": 0.2}, SUGGESTED[1]],
             [{**SUGGESTED[0], "score": 0.5}], None]
    ids = add_items(hub, team.project, 5, suggestions=shown)
    order = []
    while (item := take(team.ann, team)) is not None:
        order.append(item["id"])
        assert save(team.ann, team, item, []).status_code == 200
    assert order == [ids[2], ids[3], ids[0], ids[1], ids[4]]


def test_a_stale_save_is_refused_with_the_current_item_and_nothing_is_lost(team: Team):
    (item_id,) = add_items(team.hub, team.project, 1, suggestions=[SUGGESTED])
    mine = take(team.ann, team)
    assert mine is not None and mine["revision"] == 0 and mine["suggestions"] == SUGGESTED
    first = [{"class": "car", "bbox": [10, 10, 20, 10], "from": 0}]
    r = save(team.ann, team, mine, first, duration_ms=4000)
    assert r.status_code == 200, r.text
    assert (r.json()["revision"], r.json()["status"], r.json()["lease"]) == (1, "done", None)
    # an owner who opened revision 0 before that save
    r = save(team.alice, team, mine, [{"class": "person", "bbox": [1, 1, 2, 2], "from": None}])
    assert r.status_code == 409 and error_code(r) == "stale_revision"
    current = r.json()["error"]["details"]["item"]
    assert current["revision"] == 1 and current["labels"] == first
    row = item_row(team.hub, item_id)
    assert (row.revision, row.labels, row.status, row.time_ms) == (1, first, "done", 4000)
    # redone on top of the current revision, it saves
    r = save(team.alice, team, current, [*first, {"class": "person", "bbox": [1, 1, 2, 2], "from": None}])
    assert r.status_code == 200 and r.json()["revision"] == 2


def test_a_save_while_another_holds_the_lease_is_refused(team: Team):
    (item_id,) = add_items(team.hub, team.project, 1)
    held = take(team.ann, team)
    assert held is not None
    for who in (team.ann2, team.alice):
        r = save(who, team, held, [])
        assert r.status_code == 409 and error_code(r) == "item_leased"
    assert item_row(team.hub, item_id).revision == 0
    assert save(team.ann, team, held, []).status_code == 200


@pytest.mark.parametrize("labels", [
    [{"class": "car", "bbox": [60, 40, 10, 10], "from": None}],  # leaves the 64x48 image
    [{"class": "car", "bbox": [-5, 0, 10, 10], "from": None}],
    [{"class": "car", "bbox": [10, 10, -3, 5], "from": None}],  # negative size
    [{"class": "car", "bbox": [10, 10, 0, 5], "from": None}],
    [{"class": "bike", "bbox": [1, 1, 2, 2], "from": None}],  # not a class of the project
    [{"class": "<script>alert(1)</script>", "bbox": [1, 1, 2, 2], "from": None}],
    [{"class": "car", "bbox": [1, 1, 2], "from": None}],
    [{"class": "car", "bbox": [1, 1, "2", 2], "from": None}],
    [{"class": "car", "bbox": [1, 1, 2, 2], "from": 7}],  # no suggestion 7
    [{"class": "car", "bbox": [1, 1, 2, 2], "from": 0}, {"class": "car", "bbox": [3, 3, 2, 2], "from": 0}],
    [{"class": "car", "bbox": [1, 1, 2, 2], "from": True}],
    ["car"],
    {"class": "car"},
    "car",
    None,
    [{"class": "car", "bbox": [1, 1, 2, 2], "from": None}] * 1001,
])
def test_bad_labels_are_refused_and_nothing_changes(team: Team, labels: Any):
    (item_id,) = add_items(team.hub, team.project, 1, suggestions=[SUGGESTED])
    item = take(team.ann, team)
    assert item is not None
    r = save(team.ann, team, item, labels)
    assert r.status_code == 422, r.text
    assert error_code(r) == "invalid_labels"
    row = item_row(team.hub, item_id)
    assert (row.revision, row.labels, row.status, row.leased_by is not None) == (0, [], "todo", True)
    assert team.alice.get(team.url(f"/items/{item_id}/history")).json()["events"] == []


def test_a_member_removed_mid_session_loses_the_next_call(team: Team):
    ids = add_items(team.hub, team.project, 2)
    item = take(team.ann, team)
    assert item is not None
    assert team.alice.delete(team.url("/members/ann")).status_code == 204
    r = save(team.ann, team, item, [])
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = team.ann.post(team.url("/queue"))
    assert r.status_code == 403 and error_code(r) == "forbidden"
    assert item_row(team.hub, ids[0]).revision == 0
    # the item goes to someone else once given back by an owner
    assert team.alice.delete(team.url(f"/items/{ids[0]}/lease")).status_code == 204
    assert take(team.ann2, team)["id"] == ids[0]  # type: ignore[index]


def test_leases_are_given_back_by_their_holder_or_an_owner(team: Team):
    ids = add_items(team.hub, team.project, 2)
    held = take(team.ann, team)
    assert held is not None
    r = team.ann2.delete(team.url(f"/items/{ids[0]}/lease"))
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = team.rev.delete(team.url(f"/items/{ids[0]}/lease"))
    assert r.status_code == 403 and error_code(r) == "forbidden"
    assert team.ann.delete(team.url(f"/items/{ids[0]}/lease")).status_code == 204
    assert team.ann.delete(team.url(f"/items/{ids[0]}/lease")).status_code == 204  # nothing held: fine
    assert take(team.ann2, team)["id"] == ids[0]  # type: ignore[index]
    assert team.alice.delete(team.url(f"/items/{ids[0]}/lease")).status_code == 204
    assert item_row(team.hub, ids[0]).leased_by is None
    r = team.ann.delete(team.url("/items/999999/lease"))
    assert r.status_code == 404 and error_code(r) == "item_not_found"


def test_review_approves_saved_items_or_sends_them_back(team: Team):
    ids = add_items(team.hub, team.project, 2)
    item = take(team.ann, team)
    assert item is not None
    saved = save(team.ann, team, item, [{"class": "car", "bbox": [1, 1, 4, 4], "from": None}]).json()
    review = team.url(f"/items/{saved['id']}/review")
    r = team.ann.post(review, json={"revision": 1, "verdict": "approve"})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = team.rev.post(review, json={"revision": 0, "verdict": "approve"})
    assert r.status_code == 409 and error_code(r) == "stale_revision"
    assert r.json()["error"]["details"]["item"]["revision"] == 1
    r = team.rev.post(review, json={"revision": 1.0, "verdict": "approve"})  # a JSON integer, written 1.0
    assert r.status_code == 200 and (r.json()["status"], r.json()["revision"]) == ("approved", 2)
    r = team.rev.post(review, json={"revision": 2, "verdict": "approve"})
    assert r.status_code == 422 and error_code(r) == "invalid_field"
    r = team.alice.post(review, json={"revision": 2, "verdict": "reject"})  # owners review too
    assert r.status_code == 200 and (r.json()["status"], r.json()["revision"]) == ("todo", 3)
    assert r.json()["labels"] == saved["labels"]  # sent back with its labels, to fix
    r = team.rev.post(team.url(f"/items/{ids[1]}/review"), json={"revision": 0, "verdict": "reject"})
    assert r.status_code == 422 and error_code(r) == "invalid_field"
    r = team.rev.post(team.url(f"/items/{ids[1]}/review"), json={"revision": 0, "verdict": "maybe"})
    assert r.status_code == 422
    # the item sent back is in the queue again, and a save over it needs its new revision
    again = take(team.ann, team)
    assert again is not None and again["id"] == saved["id"] and again["revision"] == 3
    assert save(team.ann, team, saved, []).status_code == 409
    events = team.rev.get(team.url(f"/items/{saved['id']}/history")).json()["events"]
    assert [(e["action"], e["user"], e["revision"]) for e in events] == [
        ("save", "ann", 1), ("approve", "rev", 2), ("reject", "alice", 3)]


def test_history_and_statistics_count_what_came_from_the_suggestions(team: Team):
    shown = [SUGGESTED, SUGGESTED[:1], None]
    ids = add_items(team.hub, team.project, 3, suggestions=shown, model_version="1.2.0")
    before = utcnow()
    a = take(team.ann, team)
    assert a is not None and a["suggestion_version"] == "1.2.0"
    # kept 0 (within 1 px), moved 1, dropped 2, drew one by hand
    labels = [{"class": "car", "bbox": [10.5, 10, 20, 10.4], "from": 0},
              {"class": "person", "bbox": [31, 8, 10, 30], "from": 1},
              {"class": "person", "bbox": [50, 20, 5, 5], "from": None}]
    assert save(team.ann, team, a, labels, duration_ms=3000).status_code == 200
    b = take(team.ann2, team)
    assert b is not None
    assert save(team.ann2, team, b, [{"class": "person", "bbox": [10, 10, 20, 10], "from": 0}],
                duration_ms=5000).status_code == 200  # reclassified: edited
    c = take(team.ann, team)
    assert c is not None and c["suggestions"] is None
    assert save(team.ann, team, c, [{"class": "car", "bbox": [0, 0, 64, 48], "from": None}],
                duration_ms=10000).status_code == 200

    (event,) = team.ann.get(team.url(f"/items/{ids[0]}/history")).json()["events"]
    assert (event["action"], event["user"], event["revision"], event["model_version"]) == ("save", "ann", 1, "1.2.0")
    assert (event["accepted"], event["edited"], event["rejected"], event["added"]) == (1, 1, 1, 1)
    assert event["labels"][0] == {"class": "car", "bbox": [10.5, 10.0, 20.0, 10.4], "from": 0}
    assert event["duration_ms"] == 3000
    from datetime import datetime
    assert datetime.fromisoformat(event["at"]).replace(tzinfo=before.tzinfo) >= before - timedelta(seconds=1)

    stats = team.alice.get(team.url()).json()["stats"]
    by_version = {s["model_version"]: s for s in stats["per_model_version"]}
    assert set(by_version) == {"1.2.0", None}
    v = by_version["1.2.0"]
    assert (v["items"], v["accepted"], v["edited"], v["rejected"], v["added"]) == (2, 1, 2, 1, 1)
    assert (v["mean_ms"], v["median_ms"]) == (4000, 4000)
    hand = by_version[None]
    assert (hand["items"], hand["added"], hand["mean_ms"]) == (1, 1, 10000)
    total = stats["total"]
    assert (total["items"], total["accepted"], total["edited"], total["rejected"], total["added"]) == (3, 1, 2, 1, 2)
    assert (total["mean_ms"], total["median_ms"]) == (6000, 5000)

    # a second save counts once, under its own (latest) model version, with the item's whole time
    with session_scope(team.hub.context.engine, write=True) as session:
        session.execute(sa.update(AnnotationItem).where(AnnotationItem.id == ids[0])  # type: ignore[arg-type]
                        .values(suggestion_version="1.3.0"))
    current = team.ann.get(team.url(f"/items/{ids[0]}")).json()
    assert save(team.ann, team, current, labels[:1], duration_ms=1000).status_code == 200
    stats = team.alice.get(team.url()).json()["stats"]
    by_version = {s["model_version"]: s for s in stats["per_model_version"]}
    assert (by_version["1.2.0"]["items"], by_version["1.3.0"]["items"]) == (1, 1)
    assert (by_version["1.3.0"]["accepted"], by_version["1.3.0"]["rejected"], by_version["1.3.0"]["mean_ms"]) == (1, 2, 4000)
    assert stats["total"]["items"] == 3


def test_items_list_read_and_image(team: Team):
    ids = add_items(team.hub, team.project, 3)
    take(team.ann, team)
    page = team.rev.get(team.url("/items?per_page=2")).json()
    assert page["total"] == 3 and [i["id"] for i in page["items"]] == ids[:2]
    assert page["items"][0]["lease"]["user"] == "ann" and page["items"][1]["lease"] is None
    assert team.rev.get(team.url("/items?status=done")).json()["total"] == 0
    r = team.rev.get(team.url("/items?status=lost"))
    assert r.status_code == 422 and error_code(r) == "invalid_field"
    doc = team.rev.get(team.url(f"/items/{ids[1]}")).json()
    assert (doc["file_name"], doc["width"], doc["height"], doc["status"]) == ("img00001.png", 64, 48, "todo")
    assert doc["image"] == f"/api/v1/projects/alice/street/items/{ids[1]}/image"
    r = team.rev.get(doc["image"], follow_redirects=True)
    assert r.status_code == 200
    assert sha256(r.content) == sha256(png(64, 48, bytes([7])))
    if team.hub.backend == "sqlite-file":  # S3 may redirect to a presigned URL
        assert r.headers["content-type"] == "image/png"
        assert r.headers["cache-control"].startswith("private")
    r = team.rev.get(team.url("/items/999999"))
    assert r.status_code == 404 and error_code(r) == "item_not_found"
    # an item of another project is not found through this one
    team.alice.post("/api/v1/projects", json={"namespace": "alice", "name": "other", "task": "detection",
                                              "classes": ["a"]})
    (other,) = add_items(team.hub, "alice/other", 1)
    for path in (f"/items/{other}", f"/items/{other}/image", f"/items/{other}/history"):
        r = team.alice.get(team.url(path))
        assert r.status_code == 404 and error_code(r) == "item_not_found", path
    r = team.alice.put(team.url(f"/items/{other}/labels"), json={"revision": 0, "labels": []})
    assert r.status_code == 404 and error_code(r) == "item_not_found"


def test_classification_items_take_one_label(hub: LiveHub):
    team = make_team(hub, task="classification", classes=("cat", "dog"))
    add_items(hub, team.project, 1, task="classification",
              suggestions=[[{"class": "dog", "score": 0.8}, {"class": "cat", "score": 0.2}]])
    item = take(team.ann, team)
    assert item is not None
    r = save(team.ann, team, item, [{"class": "cat", "from": None}, {"class": "dog", "from": 0}])
    assert r.status_code == 422 and error_code(r) == "invalid_labels"
    r = save(team.ann, team, item, [{"class": "dog", "from": 0}])
    assert r.status_code == 200, r.text
    total = team.alice.get(team.url()).json()["stats"]["total"]
    assert (total["accepted"], total["rejected"], total["added"]) == (1, 0, 0)

"""The automatic trigger over a live hub on both backends: every N accepted items (saves through the
items API, approvals through the review API) publish a snapshot and queue one training job."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.annotation import _token
from tests.helpers import LiveHub, error_code
from tests.training.test_jobs_api import BASE, DATASET, Loop, wait_for_jobs


@pytest.fixture
def loop(hub: LiveHub) -> Loop:
    return Loop(hub)


def _every(loop: Loop, n: int | None, **more: object) -> None:
    r = loop.team.alice.patch(loop.team.url("/training"), json={"every": n, **more})
    assert r.status_code == 200, r.text


def test_every_n_saves_queue_a_snapshot_and_a_job(loop: Loop):
    _every(loop, 3)
    loop.save(2)
    assert wait_for_jobs(loop, timeout=0.5) == []
    loop.save(1)
    jobs = wait_for_jobs(loop)
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert {k: job[k] for k in ("state", "reason", "base", "trainer", "dataset", "target", "accepted")} == {
        "state": "queued", "reason": "auto", "base": f"{BASE}@1.0.0", "trainer": "finetune",
        "dataset": f"{DATASET}@1.0.0", "target": BASE, "accepted": 3}
    settings = loop.view()["settings"]
    assert (settings["accepted"], settings["accepted_at_last_job"], settings["next_at"]) == (3, 3, 6)
    snapshot = loop.team.alice_read.get(f"/api/v1/packages/{DATASET}/versions/1.0.0")
    assert snapshot.status_code == 200 and snapshot.json()["manifest"]["dataset"]["splits"] == {"train": 3}, snapshot.json()["files"]
    # While a job is queued, more saves queue nothing
    loop.save(3)
    assert len(wait_for_jobs(loop, 2, timeout=0.5)) == 1


def test_concurrent_saves_queue_one_job(loop: Loop):
    _every(loop, 3)
    loop.save(2)
    clients = [loop.team.ann, loop.team.ann2, loop.hub.client(_token(loop.hub, "alice", "annotate"))]
    items = loop.items[2:5]
    barrier = threading.Barrier(len(items))
    statuses: list[int] = []

    def save(client: httpx.Client, item: int) -> None:
        barrier.wait()
        r = client.put(loop.team.url(f"/items/{item}/labels"), json={"revision": 0, "labels": [{"class": "b"}]})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=save, args=(c, i)) for c, i in zip(clients, items, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200, 200]
    jobs = wait_for_jobs(loop)
    assert len(wait_for_jobs(loop, 2, timeout=1.0)) == 1, jobs
    assert jobs[0]["state"] == "queued" and jobs[0]["reason"] == "auto"


def test_an_approval_queues_the_job_that_waited_for_the_active_one(loop: Loop):
    loop.save(1)
    manual = loop.queue()
    _every(loop, 2)
    loop.save(2)  # due, but a job is queued: nothing
    assert len(wait_for_jobs(loop, 2, timeout=0.5)) == 1
    claimed = loop.claim()
    r = loop.worker.post(f"/api/v1/training-jobs/{manual['id']}/finish",
                         json={"lease": claimed["lease"], "state": "failed", "message": "stopped"})
    assert r.status_code == 200, r.text
    r = loop.team.rev.post(loop.team.url(f"/items/{loop.items[0]}/review"), json={"revision": 1, "verdict": "approve"})
    assert r.status_code == 200, r.text
    jobs = wait_for_jobs(loop, 2)
    assert [j["reason"] for j in jobs] == ["auto", "manual"] and jobs[0]["dataset"] == f"{DATASET}@1.1.0"


def test_a_snapshot_the_creator_may_not_publish_is_a_failed_job_and_the_save_stands(loop: Loop):
    r = loop.team.alice.patch(loop.team.url(), json={"dataset_package": "eve/stolen"})
    assert r.status_code == 200, r.text
    _every(loop, 1)
    loop.save(1)
    jobs = wait_for_jobs(loop)
    assert len(jobs) == 1 and jobs[0]["state"] == "failed" and jobs[0]["reason"] == "auto"
    assert "eve" in jobs[0]["message"], jobs[0]["message"]
    item = loop.team.alice.get(loop.team.url(f"/items/{loop.items[0]}")).json()
    assert item["status"] == "done"
    r = loop.team.alice.post(loop.team.url("/training-jobs"))  # by hand, alice may not either
    assert r.status_code == 403 and error_code(r) == "forbidden"

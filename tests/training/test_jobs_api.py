"""Training jobs over a live hub on both backends, through the HTTP API only: the settings, queueing,
the workers' claim/lease/heartbeat/checkpoint/preview/finish protocol, and promotion.

The base model is a published version with a ``[[trainers]]`` table; a "fine-tune" is a version
published with a ``[lineage]`` table, as ``cvflow finetune`` writes it (no training runs here:
the trainer side is tested in the client's tests).
"""

from __future__ import annotations

import json
import struct
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from hub.db import session_scope
from hub.models import TrainingJob, utcnow
from hub.services.gc import collect_garbage
from hub.services.training import leases
from tests.annotation import Team, _token, add_items, make_team
from tests.helpers import LiveHub, error_code, publish, sha256
from tests.runner._images import png

BASE = "alice/model"
DATASET = "alice/street-data"


def model_manifest(name: str = BASE, version: str = "1.0.0", lineage: dict[str, Any] | None = None) -> str:
    text = f"""[package]
name = "{name}"
version = "{version}"
description = "a classifier"
task = "classification"
license = "MIT"

[[solvers]]
name = "classify"
class = "solver:Classifier"

[[trainers]]
name = "finetune"
class = "trainer:Finetune"
task = "classification"
metric = "accuracy"
hyperparameters = {{ epochs = {{ default = 2, min = 1, max = 10 }} }}
"""
    if lineage is not None:
        text += "\n[lineage]\n" + "".join(
            f"{k} = {json.dumps(v) if not isinstance(v, dict) else '{ ' + ', '.join(f'{a} = {b}' for a, b in v.items()) + ' }'}\n"
            for k, v in lineage.items())
    return text


def publish_model(client: httpx.Client, name: str = BASE, version: str = "1.0.0", **lineage: Any) -> None:
    r = publish(client, name, version, manifest_text=model_manifest(name, version, lineage or None),
                files={"solver.py": b"class Classifier: pass\n", "trainer.py": b"class Finetune: pass\n"})
    assert r.status_code == 201, r.text


def publish_finetune(client: httpx.Client, version: str, *, accuracy: float, base_accuracy: float,
                     name: str = BASE, base: str = f"{BASE}@1.0.0", dataset: str = f"{DATASET}@1.0.0") -> None:
    publish_model(client, name, version, base=base, dataset=dataset, trainer="finetune",
                  metrics={"accuracy": accuracy}, base_metrics={"accuracy": base_accuracy})


class Loop:
    """alice's project alice/street (classification), its base model and workers' clients."""

    def __init__(self, hub: LiveHub) -> None:
        self.team: Team = make_team(hub, task="classification", classes=("a", "b"))
        self.hub = hub
        self.publisher = hub.client(_token(hub, "alice", "read publish"))
        publish_model(self.publisher)
        r = self.team.alice.patch(self.team.url(), json={"suggest": {"package": BASE, "range": "*",
                                                                     "solver": "classify"}})
        assert r.status_code == 200, r.text
        self.worker = hub.client(_token(hub, "alice", "annotate publish:alice"))
        self.worker2 = hub.client(_token(hub, "alice", "annotate publish:alice"))
        self.items = add_items(hub, self.team.project, 8, task="classification")
        self.saved = 0

    def save(self, n: int, client: httpx.Client | None = None) -> None:
        for item in self.items[self.saved : self.saved + n]:
            r = (client or self.team.ann).put(self.team.url(f"/items/{item}/labels"),
                                              json={"revision": 0, "labels": [{"class": "a", "from": None}]})
            assert r.status_code == 200, r.text
        self.saved += n

    def queue(self) -> dict[str, Any]:
        r = self.team.alice.post(self.team.url("/training-jobs"))
        assert r.status_code == 201, r.text
        return r.json()

    def claim(self, client: httpx.Client | None = None, **body: Any) -> dict[str, Any]:
        r = (client or self.worker).post("/api/v1/training-jobs/claim", json={"worker": "w1", **body})
        assert r.status_code == 200, r.text
        return r.json()

    def view(self) -> dict[str, Any]:
        r = self.team.alice.get(self.team.url("/training"))
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def loop(hub: LiveHub) -> Loop:
    return Loop(hub)


def safetensors(state: dict[str, Any] | None = None, *, extra: bytes = b"") -> bytes:
    header: dict[str, Any] = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    if state is not None:
        header["__metadata__"] = {"cvflow_state": json.dumps(state)}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + struct.pack("<4f", 1, 2, 3, 4) + extra


def test_settings(loop: Loop):
    team = loop.team
    view = loop.view()
    assert view == {"settings": {"every": None, "target": None, "trainer": None, "hyperparameters": {},
                                 "accepted": 0, "accepted_at_last_job": 0, "next_at": None, "model_metric": None},
                    "jobs": []}
    body = {"every": 5, "target": "alice/model-ft", "trainer": "finetune", "hyperparameters": {"epochs": 3}}
    r = team.alice.patch(team.url("/training"), json=body)
    assert r.status_code == 200, r.text
    settings = r.json()["settings"]
    assert {k: settings[k] for k in body} == body and settings["next_at"] == 5
    r = team.alice.patch(team.url("/training"), json={"every": None})  # only what is given changes
    assert r.status_code == 200 and r.json()["settings"]["target"] == "alice/model-ft"
    assert r.json()["settings"]["every"] is None and r.json()["settings"]["next_at"] is None
    assert team.ann.get(team.url("/training")).status_code == 200  # readers see it
    for bad in ({"every": 0}, {"every": 100_001}, {"every": "3"}, {"target": "eve/x"}, {"target": "nobody-here/x"},
                {"trainer": "Bad Name"}, {"hyperparameters": {"epochs": [1]}}):
        r = team.alice.patch(team.url("/training"), json=bad)
        assert r.status_code == 422 and error_code(r) == "invalid_training", (bad, r.text)
    r = team.ann.patch(team.url("/training"), json={"every": 3})
    assert r.status_code == 403 and error_code(r) == "forbidden"
    for client in (team.eve, team.anonymous):
        assert client.get(team.url("/training")).status_code == 404
    assert team.eve.patch(team.url("/training"), json={"every": 3}).status_code == 404


def test_queue_claim_heartbeat_finish_and_promotion(loop: Loop):
    team = loop.team
    r = team.alice.post(team.url("/training-jobs"))
    assert r.status_code == 409 and error_code(r) == "nothing_to_snapshot"
    assert team.ann.post(team.url("/training-jobs")).status_code == 403  # owners only
    loop.save(3)
    job = loop.queue()
    assert {k: job[k] for k in ("project", "state", "reason", "base", "trainer", "dataset", "target", "accepted",
                                "hyperparameters", "attempts", "has_checkpoint", "promoted")} == {
        "project": "alice/street", "state": "queued", "reason": "manual", "base": f"{BASE}@1.0.0",
        "trainer": "finetune", "dataset": f"{DATASET}@1.0.0", "target": BASE, "accepted": 3,
        "hyperparameters": {"epochs": 2}, "attempts": 0, "has_checkpoint": False, "promoted": None}
    r = team.alice.post(team.url("/training-jobs"))
    assert r.status_code == 409 and error_code(r) == "job_active"
    assert team.alice_read.get(f"/api/v1/packages/{DATASET}/versions/1.0.0").status_code == 200  # the snapshot

    claimed = loop.claim(lease_seconds=120)
    assert claimed["job"]["id"] == job["id"] and claimed["job"]["state"] == "running"
    assert claimed["checkpoint"] is None and claimed["job"]["worker"] == "w1" and claimed["lease"]
    assert loop.worker2.post("/api/v1/training-jobs/claim", json={}).status_code == 204
    lease, url = claimed["lease"], f"/api/v1/training-jobs/{job['id']}"
    history = [{"epoch": 0, "loss": 1.5, "metrics": {"accuracy": 0.4}}, {"epoch": 1, "loss": 0.9, "metrics": {}}]
    r = loop.worker.post(url + "/heartbeat", json={
        "lease": lease, "progress": {"step": 5, "total": 10, "epoch": 1, "loss": 0.9}, "history": history,
        "log_tail": "x" * 9000 + "\nAuthorization: Bearer cvf_abcdefghijkl1234\nepoch 1 done"})
    assert r.status_code == 200, r.text
    doc = team.ann.get(url).json()  # any reader of the project
    assert doc["progress"] == {"step": 5, "total": 10, "epoch": 1, "loss": 0.9}
    assert doc["history"] == history
    assert doc["log_tail"].endswith("epoch 1 done") and "cvf_abcdefghijkl1234" not in doc["log_tail"]
    assert len(doc["log_tail"].encode()) <= 8192
    assert team.eve.get(url).status_code == 404

    # Suggestion workers had suggested every item with 1.0.0 (the project's model)
    model = team.ann.post(team.url("/suggestions/claim"), json={"worker": "s", "limit": 100}).json()
    assert model["model"]["version"] == "1.0.0" and len(model["items"]) == 5
    r = team.ann.post(team.url("/suggestions"), json={"worker": "s", "model_version": "1.0.0", "results": [
        {"item": i["id"], "suggestions": [{"class": "a", "score": 0.6}]} for i in model["items"]]})
    assert r.json()["stored"] == 5
    assert team.ann.post(team.url("/suggestions/claim"), json={"worker": "s"}).json()["items"] == []

    publish_finetune(loop.publisher, "1.1.0", accuracy=0.9, base_accuracy=0.5)
    r = loop.worker.post(url + "/finish", json={"lease": lease, "state": "done", "version": "1.1.0",
                                                "device": "cpu", "seconds": 12.5})
    assert r.status_code == 200, r.text
    done = r.json()
    assert {k: done[k] for k in ("state", "metric", "base_metric", "result_metric", "result_version", "promoted",
                                 "device", "seconds")} == {
        "state": "done", "metric": "accuracy", "base_metric": 0.5, "result_metric": 0.9, "result_version": "1.1.0",
        "promoted": True, "device": "cpu", "seconds": 12.5}
    project = team.alice.get(team.url()).json()
    assert project["suggest"]["package"] == BASE and project["suggest"]["range"] == "=1.1.0"
    assert loop.view()["settings"]["model_metric"] == 0.9
    # ... and now offer every unsaved item again, with the new model
    again = team.ann.post(team.url("/suggestions/claim"), json={"worker": "s", "limit": 100}).json()
    assert again["model"]["version"] == "1.1.0" and len(again["items"]) == 5
    # The lease is gone with the job
    r = loop.worker.post(url + "/heartbeat", json={"lease": lease})
    assert r.status_code == 409 and error_code(r) == "lease_lost"


def test_a_worse_fine_tune_is_not_promoted_and_a_wrong_lineage_is_refused(loop: Loop):
    team = loop.team
    r = team.alice.patch(team.url("/training"), json={"target": "alice/model-ft"})
    assert r.status_code == 200, r.text
    loop.save(2)
    job = loop.queue()
    assert job["target"] == "alice/model-ft"
    claimed = loop.claim()
    url, lease = f"/api/v1/training-jobs/{job['id']}/finish", claimed["lease"]
    r = loop.worker.post(url, json={"lease": lease, "state": "done", "version": "1.0.0"})
    assert r.status_code == 422 and error_code(r) == "invalid_training"  # not published
    publish_finetune(loop.publisher, "1.0.0", name="alice/model-ft", accuracy=0.3, base_accuracy=0.5,
                     base=f"{BASE}@1.0.0", dataset=f"{DATASET}@1.0.0")
    publish_finetune(loop.publisher, "1.1.0", name="alice/model-ft", accuracy=0.99, base_accuracy=0.5,
                     base="alice/model-ft@1.0.0")  # another base: not this job's
    r = loop.worker.post(url, json={"lease": lease, "state": "done", "version": "1.1.0"})
    assert r.status_code == 422 and error_code(r) == "invalid_training", r.text
    r = loop.worker.post(url, json={"lease": lease, "state": "done"})
    assert r.status_code == 422 and error_code(r) == "invalid_training"
    r = loop.worker.post(url, json={"lease": lease, "state": "done", "version": "1.0.0"})
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("promoted", "base_metric", "result_metric")} == {
        "promoted": False, "base_metric": 0.5, "result_metric": 0.3}
    assert team.alice.get(team.url()).json()["suggest"]["range"] == "*"
    assert loop.view()["settings"]["model_metric"] == 0.5


def test_two_workers_claiming_at_once_get_the_job_once_and_a_failure_is_recorded(loop: Loop):
    loop.save(2)
    job = loop.queue()
    barrier = threading.Barrier(2)
    answers: list[tuple[httpx.Client, httpx.Response]] = []

    def take(client: httpx.Client) -> None:
        barrier.wait()
        answers.append((client, client.post("/api/v1/training-jobs/claim", json={"worker": "w"})))

    threads = [threading.Thread(target=take, args=(c,)) for c in (loop.worker, loop.worker2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for _, r in answers) == [200, 204]
    holder, won = next((c, r) for c, r in answers if r.status_code == 200)
    # The winner's trainer fails: the job records the message and the log's tail
    r = holder.post(f"/api/v1/training-jobs/{job['id']}/finish", json={
        "lease": won.json()["lease"], "state": "failed", "message": "trainer_failed: CUDA out of memory",
        "log_tail": "Traceback ...\nRuntimeError: CUDA out of memory"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "failed" and r.json()["message"] == "trainer_failed: CUDA out of memory"
    assert r.json()["log_tail"].endswith("RuntimeError: CUDA out of memory") and r.json()["finished_at"]
    assert loop.view()["jobs"][0]["state"] == "failed"
    assert loop.queue()["state"] == "queued"  # the project may queue the next one


def test_a_job_is_claimed_only_by_who_may_read_its_project_and_publish_its_target(loop: Loop):
    loop.save(2)
    job = loop.queue()
    hub = loop.hub
    stranger = hub.client(hub.create_user("bob", scopes="annotate publish"))  # may not read the private project
    annotator = loop.team.ann  # reads the project, may not publish to alice/model
    reader_only = hub.client(_token(hub, "alice", "annotate"))  # alice, but the token may not publish
    for client in (stranger, annotator, reader_only):
        r = client.post("/api/v1/training-jobs/claim", json={})
        assert r.status_code == 204, r.text
    assert loop.worker.post("/api/v1/training-jobs/claim", json={"projects": ["alice/other"]}).status_code == 204
    assert loop.claim(projects=["alice/street"])["job"]["id"] == job["id"]
    r = stranger.post(f"/api/v1/training-jobs/{job['id']}/heartbeat", json={"lease": "x"})
    assert r.status_code == 404 and error_code(r) == "job_not_found"
    r = loop.worker.post("/api/v1/training-jobs/claim", json={"lease_seconds": 5})
    assert r.status_code == 422


def _expire(hub: LiveHub, job_id: int) -> None:
    with session_scope(hub.context.engine, write=True) as session:
        session.exec(sa.update(TrainingJob).where(TrainingJob.id == job_id)  # type: ignore[arg-type]
                     .values(lease_expires_at=utcnow() - timedelta(seconds=1)))


def test_a_lost_lease_requeues_the_job_and_the_next_worker_resumes_from_its_checkpoint(loop: Loop):
    loop.save(2)
    job = loop.queue()
    url = f"/api/v1/training-jobs/{job['id']}"
    first = loop.claim()
    data = safetensors({"epoch": 3, "seed": 7})
    r = loop.worker.put(url + "/checkpoint", content=data, headers={"cvflow-lease": first["lease"]})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == {"epoch": 3, "seed": 7} and r.json()["size"] == len(data)
    _expire(loop.hub, job["id"])
    r = loop.worker.post(url + "/heartbeat", json={"lease": first["lease"]})
    assert r.status_code == 409 and error_code(r) == "lease_lost"  # ran out: stop
    second = loop.claim(loop.worker2)
    assert second["job"]["id"] == job["id"] and second["job"]["attempts"] == 1
    assert second["checkpoint"]["state"] == {"epoch": 3, "seed": 7} and second["checkpoint"]["size"] == len(data)
    r = loop.worker2.get(url + "/checkpoint", headers={"cvflow-lease": second["lease"]}, follow_redirects=True)
    assert r.status_code == 200 and r.content == data
    r = loop.worker.get(url + "/checkpoint", headers={"cvflow-lease": first["lease"]})
    assert r.status_code == 409 and error_code(r) == "lease_lost"
    # The third lost lease fails the job, its checkpoint kept
    _expire(loop.hub, job["id"])
    loop.claim()
    _expire(loop.hub, job["id"])
    assert loop.worker.post("/api/v1/training-jobs/claim", json={}).status_code == 204
    doc = loop.team.alice.get(url).json()
    assert doc["state"] == "failed" and doc["attempts"] == 3 and doc["has_checkpoint"] and "3 times" in doc["message"]


def test_checkpoint_and_preview_are_checked(loop: Loop, monkeypatch: pytest.MonkeyPatch):
    loop.save(2)
    job = loop.queue()
    lease = loop.claim()["lease"]
    url = f"/api/v1/training-jobs/{job['id']}"
    headers = {"cvflow-lease": lease}
    good = safetensors({"epoch": 1})
    bad = [b"PK\x03\x04 a zip, not safetensors", struct.pack("<Q", 1 << 40) + b"{}", struct.pack("<Q", 10) + b"{}",
           struct.pack("<Q", 2) + b"[]", good[:-1], good + b"!", safetensors({"epoch": 1}) .replace(b'"F32"', b'1234 ')]
    for data in bad:
        r = loop.worker.put(url + "/checkpoint", content=data, headers=headers)
        assert r.status_code == 422 and error_code(r) == "invalid_training", (data[:40], r.text)
    monkeypatch.setattr(leases, "MAX_CHECKPOINT_BYTES", 64)
    r = loop.worker.put(url + "/checkpoint", content=good, headers=headers)
    assert r.status_code == 413 and error_code(r) == "upload_too_large"
    monkeypatch.undo()
    assert loop.team.alice.get(url).json()["has_checkpoint"] is False
    r = loop.worker.put(url + "/checkpoint", content=good, headers=headers)
    assert r.status_code == 200, r.text

    for data, status, code in ((b"GIF89a not accepted", 422, "invalid_image"),
                               (b"\x89PNG\r\n\x1a\n" + b"\x00" * (9 << 20), 413, "body_too_large")):
        r = loop.worker.put(url + "/preview", content=data, headers=headers)
        assert r.status_code == status and error_code(r) == code, r.text
    assert loop.team.ann.get(url + "/preview.png").status_code == 404  # none yet
    grid = png(32, 16, b"\x07")
    r = loop.worker.put(url + "/preview", content=grid, headers=headers)
    assert r.status_code == 204, r.text
    r = loop.team.ann.get(url + "/preview.png")
    assert r.status_code == 200 and r.content == grid and r.headers["content-type"] == "image/png"
    assert loop.team.eve.get(url + "/preview.png").status_code == 404
    doc = loop.team.alice.get(url).json()
    assert doc["has_preview"] and doc["has_checkpoint"]
    # gc keeps the blobs a job names, however old
    ctx = loop.hub.context
    report = collect_garbage(ctx.engine, ctx.store, ctx.settings, now=utcnow() + timedelta(days=1))
    assert sha256(good) not in report.blobs_removed and sha256(grid) not in report.blobs_removed
    assert loop.team.ann.get(url + "/preview.png").content == grid
    assert loop.worker.get(url + "/checkpoint", headers=headers, follow_redirects=True).content == good

    # A stale or foreign lease is lease_lost; the same user with the secret holds it
    for client, secret in ((loop.worker, "wrong"), (loop.worker2, lease)):
        r = client.post(url + "/heartbeat", json={"lease": secret})
        assert (r.status_code == 409) == (secret == "wrong"), r.text
    other = loop.hub.client(_token(loop.hub, "ann", "annotate"))  # a project member, not the holder
    r = other.post(url + "/heartbeat", json={"lease": lease})
    assert r.status_code == 409 and error_code(r) == "lease_lost"
    r = loop.worker.post(url + "/finish", json={"lease": "wrong", "state": "failed"})
    assert r.status_code == 409 and error_code(r) == "lease_lost"
    r = loop.worker.put(url + "/preview", content=grid)
    assert r.status_code == 400 and error_code(r) == "bad_request"  # no CVFlow-Lease header


def wait_for_jobs(loop: Loop, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
    """The project's jobs once ``count`` exist (an automatic one is queued by a thread after the save)."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = loop.view()["jobs"]
        if len(jobs) >= count or time.monotonic() > deadline:
            return jobs
        time.sleep(0.05)

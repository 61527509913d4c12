"""Webhooks from GitHub, GitLab and Gitea queue an index once their signature checks out."""

from __future__ import annotations

import json

import pytest

from hub.services.webhooks import gitea_signature, github_signature
from tests.helpers import error_code
from tests.indexer._helpers import SOLVER, jobs, manifest, published, register, repository, run_jobs

PUSH = json.dumps({"ref": "refs/tags/v1.1.0", "repository": {"name": "detector"}}).encode()


def _headers(provider: str, secret: str, body: bytes) -> dict[str, str]:
    if provider == "github":
        return {"x-github-event": "push", "x-hub-signature-256": github_signature(secret, body)}
    if provider == "gitlab":
        return {"x-gitlab-event": "Tag Push Hook", "x-gitlab-token": secret}
    # Gitea sends GitHub's headers too; its own come first.
    return {"x-gitea-event": "push", "x-gitea-signature": gitea_signature(secret, body),
            "x-github-event": "push", "x-hub-signature-256": "sha256=" + "0" * 64}


def test_tagging_v1_1_0_and_sending_a_signed_github_webhook_publishes_it(ihub, make_repo, git_daemon):
    alice = ihub.user_client("alice")
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(version="1.0.0"), "solver.py": SOLVER}).commit()
    repo.tag("v1.0.0")
    doc = register(alice, git_daemon.url(name))
    run_jobs(ihub)
    assert list(published(ihub, "alice/detector")) == ["1.0.0"]

    repo.write({"cvflow.toml": manifest(version="1.1.0")}).commit("new release")
    repo.tag("v1.1.0")
    hook = ihub.client()  # webhooks carry no token: the signature is the proof
    r = hook.post(doc["webhook_url"], content=PUSH, headers=_headers("github", doc["webhook_secret"], PUSH))
    assert r.status_code == 202, r.text
    assert r.json()["queued"] is True and r.json()["event"] == "push"
    assert run_jobs(ihub) == 1
    assert sorted(published(ihub, "alice/detector")) == ["1.0.0", "1.1.0"]
    result = repository(alice, doc["id"])["last_result"]
    assert [(v["tag"], v["new"]) for v in result["versions"]] == [("v1.0.0", False), ("v1.1.0", True)]


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea"])
def test_each_host_s_webhook_is_verified_and_a_bad_one_queues_nothing(one_hub, make_repo, git_daemon, provider):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER}).commit()
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)
    hook = one_hub.client()
    before = len(jobs(one_hub))

    forged = _headers(provider, "not-the-secret", PUSH)
    r = hook.post(doc["webhook_url"], content=PUSH, headers=forged)
    assert r.status_code == 403 and error_code(r) == "invalid_signature"
    tampered = _headers(provider, doc["webhook_secret"], PUSH)
    if provider != "gitlab":  # GitLab sends the secret itself, not a signature of the body
        r = hook.post(doc["webhook_url"], content=PUSH + b" ", headers=tampered)
        assert r.status_code == 403 and error_code(r) == "invalid_signature"
    unsigned = {k: v for k, v in tampered.items() if "signature" not in k and "token" not in k}
    r = hook.post(doc["webhook_url"], content=PUSH, headers=unsigned)
    assert r.status_code == 403 and error_code(r) == "invalid_signature"
    assert len(jobs(one_hub)) == before

    r = hook.post(doc["webhook_url"], content=PUSH, headers=_headers(provider, doc["webhook_secret"], PUSH))
    assert r.status_code == 202 and r.json()["queued"] is True
    # A second event before a worker ran joins the waiting job.
    r2 = hook.post(doc["webhook_url"], content=PUSH, headers=_headers(provider, doc["webhook_secret"], PUSH))
    assert r2.json()["job"] == r.json()["job"]
    assert len(jobs(one_hub)) == before + 1


def test_webhook_requests_that_are_not_push_events(one_hub, make_repo, git_daemon):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    repo.write({"cvflow.toml": manifest(), "solver.py": SOLVER}).commit()
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)
    hook = one_hub.client()
    ping = b'{"zen": "hi"}'
    r = hook.post(doc["webhook_url"], content=ping,
                  headers={"x-github-event": "ping", "x-hub-signature-256": github_signature(doc["webhook_secret"], ping)})
    assert r.status_code == 202 and r.json() == {"queued": False, "event": "ping"}
    r = hook.post(doc["webhook_url"], content=ping)
    assert r.status_code == 400 and error_code(r) == "bad_request"
    r = hook.post("/api/v1/repositories/999999/webhook", content=ping, headers={"x-gitlab-event": "Push Hook"})
    assert r.status_code == 404 and error_code(r) == "repository_not_found"
    assert [j.reason for j in jobs(one_hub)] == ["register"]

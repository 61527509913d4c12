"""``cvflow-hub mirror sync``: a full copy, then only what changed; filters; resuming after a cut."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlmodel import select

from cvflow.api import HubClient
from hub.db import session_scope
from hub.mirror.fetch import BlobFetcher
from hub.mirror.filters import Filters
from hub.mirror.sync import Syncer
from hub.models import MirrorState
from tests.helpers import error_code, publish, sha256
from tests.mirror._helpers import feed, publish_ok, same_release, stored_blobs, sync, version_doc


def test_a_mirror_copies_everything_public_then_only_what_changed(hub, spawn_hub):
    upstream = hub
    alice = upstream.user_client("alice")
    for v in ("1.0.0", "1.1.0"):
        publish_ok(alice, "alice/base", v)
    publish_ok(alice, "alice/app", "1.0.0", dependencies={"alice/base": "^1.0"})
    publish_ok(alice, "alice/secret", "1.0.0", private=True)
    publish_ok(upstream.user_client("bob"), "bob/tool", "0.1.0")
    mirror = spawn_hub()

    first = sync(mirror, upstream)
    assert sorted(first["versions"]) == ["alice/app@1.0.0", "alice/base@1.0.0", "alice/base@1.1.0", "bob/tool@0.1.0"]
    assert first["since"] == 0 and first["serial"] == first["upstream_serial"] == 5
    assert first["failures"] == [] and first["error"] is None
    for name, v in (("alice/base", "1.0.0"), ("alice/base", "1.1.0"), ("alice/app", "1.0.0"), ("bob/tool", "0.1.0")):
        assert same_release(version_doc(upstream, name, v), version_doc(mirror, name, v)), (name, v)
    doc = mirror.client().get("/api/v1/packages/alice/base").json()
    assert doc["origin"]["upstream"] == upstream.url and doc["origin"]["via"] == "mirror"
    assert doc["latest_version"] == "1.1.0"
    assert mirror.client().get("/api/v1/packages/alice/secret").status_code == 404
    # The blobs are there, under the upstream's digests; the mirror's own feed lists each copy.
    digests = {f["sha256"] for f in version_doc(upstream, "alice/base", "1.1.0")["files"]}
    assert digests <= stored_blobs(mirror)
    assert [e["action"] for e in feed(mirror)] == ["publish"] * 4
    r = mirror.client().get("/api/v1/packages/alice/base/versions/1.1.0/files/weights.safetensors")
    assert r.status_code == 200 and sha256(r.content) == r.headers["etag"].strip('"')

    # Incremental: only the new version moves, the yank follows, nothing else is fetched again.
    assert alice.post("/api/v1/packages/alice/base/versions/1.0.0/yank", json={"reason": "bad"}).status_code == 200
    publish_ok(alice, "alice/base", "1.2.0")
    second = sync(mirror, upstream)
    assert second["since"] == 5 and second["serial"] == 7
    assert second["versions"] == ["alice/base@1.2.0"] and second["yanks"] == 1 and second["blobs"] == 2
    mirrored = {v["version"]: v for v in mirror.client().get("/api/v1/packages/alice/base").json()["versions"]}
    assert mirrored["1.0.0"]["yanked"] and mirrored["1.0.0"]["yank_reason"] == "bad"
    assert sync(mirror, upstream)["versions"] == []  # nothing new

    # A local publish into a mirrored package would fork it: refused, even for an administrator.
    admin = mirror.user_client("root", admin=True)
    r = publish(admin, "alice/base", "9.0.0")
    assert r.status_code == 409 and error_code(r) == "name_shadows_upstream"


def test_filters_choose_namespaces_packages_ranges_and_the_latest(spawn_hub):
    upstream = spawn_hub()
    alice, bob = upstream.user_client("alice"), upstream.user_client("bob")
    for v in ("1.0.0", "1.1.0", "2.0.0", "2.1.0", "3.0.0-rc.1"):
        publish_ok(alice, "alice/det", v)
    publish_ok(alice, "alice/other", "1.0.0")
    for v in ("1.0.0", "2.0.0"):
        publish_ok(bob, "bob/seg", v)
    publish_ok(bob, "bob/cls", "1.0.0")

    mirror = spawn_hub()
    report = sync(mirror, upstream, "--filter", "alice/det@^2", "--filter", "bob/s*", "--latest", "1")
    assert sorted(report["versions"]) == ["alice/det@2.1.0", "bob/seg@2.0.0"]

    # New filters start over from serial 0 and add what they select; nothing copied is removed.
    report = sync(mirror, upstream, "--filter", "alice")
    assert report["since"] == 0
    assert sorted(report["versions"]) == ["alice/det@1.0.0", "alice/det@1.1.0", "alice/det@2.0.0",
                                          "alice/det@3.0.0-rc.1", "alice/other@1.0.0"]
    assert mirror.client().get("/api/v1/packages/bob/seg/versions/2.0.0").status_code == 200
    assert mirror.client().get("/api/v1/packages/bob/cls").status_code == 404

    from tests.mirror.conftest import hub_cli

    bad = hub_cli(mirror, "mirror", "sync", "--upstream", upstream.url, "--filter", "Alice/../x")
    assert bad.exit_code == 2 and "--filter" in bad.output


class _CutAfter(httpx.HTTPTransport):
    """A real connection that goes down after ``n`` requests, like an upstream cut off mid-sync."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.left -= 1
        if self.left < 0:
            raise httpx.ConnectError("connection refused (cut by the test)", request=request)
        return super().handle_request(request)


def test_a_sync_cut_short_resumes_where_it_stopped(spawn_hub):
    upstream = spawn_hub()
    alice = upstream.user_client("alice")
    for i in range(6):
        publish_ok(alice, f"alice/p{i}", "1.0.0")
    mirror = spawn_hub()

    cut = Syncer(mirror.context, HubClient(upstream.url, transport=_CutAfter(14)), Filters(), page_size=2)
    first = cut.run()
    cut.close()
    assert first.error is not None and first.error["code"] == "upstream_unavailable"
    assert 0 < len(first.versions) < 6 and first.serial < 6
    with session_scope(mirror.context.engine) as session:
        state = session.exec(select(MirrorState)).one()
        assert state.serial == first.serial and "upstream_unavailable" in (state.last_error or "")

    second = sync(mirror, upstream)
    assert second["since"] == first.serial and second["serial"] == 6
    assert sorted(first.versions + second["versions"]) == [f"alice/p{i}@1.0.0" for i in range(6)]
    copied = [e["package"] for e in feed(mirror)]
    assert sorted(copied) == [f"alice/p{i}" for i in range(6)]  # each copied once, whatever the cut
    from tests.mirror.conftest import hub_cli

    status = json.loads(hub_cli(mirror, "mirror", "status").stdout)
    assert [(s["upstream"], s["serial"], s["last_error"], s["retry"]) for s in status] == [(upstream.url, 6, None, [])]


def test_a_blob_cut_mid_way_resumes_from_its_partial_bytes(spawn_hub):
    upstream = spawn_hub()
    data = bytes(range(256)) * 4096  # 1 MiB
    publish_ok(upstream.user_client("alice"), "alice/big", "1.0.0",
               files={"solver.py": b"x = 1\n", "weights.safetensors": data})
    mirror = spawn_hub()
    fetcher = BlobFetcher(mirror.context, via="mirror")
    fetcher.partial_dir.mkdir(parents=True)
    (fetcher.partial_dir / sha256(data)).write_bytes(data[: len(data) // 2])
    with HubClient(upstream.url) as client:
        got = fetcher.fetch(client, "/api/v1/packages/alice/big/versions/1.0.0/files/weights.safetensors", sha256(data),
                            len(data), what="weights")
    assert got == len(data) - len(data) // 2
    assert sha256(data) in stored_blobs(mirror) and not any(fetcher.partial_dir.iterdir())


@pytest.mark.parametrize("text", ["30s", "10m", "1h", "90"])
def test_every_takes_durations(text):
    from hub.cli._common import parse_duration

    assert parse_duration(text) == {"30s": 30, "10m": 600, "1h": 3600, "90": 90}[text]


def test_every_runs_the_sync_on_a_schedule_until_stopped(spawn_hub):
    import json
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    upstream = spawn_hub()
    alice = upstream.user_client("alice")
    publish_ok(alice, "alice/det", "1.0.0")
    mirror = spawn_hub()
    s = mirror.context.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVFLOW_HUB_")}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "cvflow-hub"), "--data-dir", str(s.data_dir),
                             "--database-url", s.database_url, "--storage-url", s.storage_url, "mirror", "sync",
                             "--upstream", upstream.url, "--every", "0.2s", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["versions"] == ["alice/det@1.0.0"]
        publish_ok(alice, "alice/det", "1.1.0")
        for _ in range(100):
            if json.loads(proc.stdout.readline())["versions"] == ["alice/det@1.1.0"]:
                break
        else:
            raise AssertionError("the scheduled run never copied 1.1.0")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_administrator_s_takedown_is_in_the_feed_followed_by_mirrors_and_never_reused(hub, spawn_hub):
    import dataclasses

    from hub.services.gc import collect_garbage

    upstream = hub
    alice = upstream.user_client("alice")
    publish_ok(alice, "alice/det", "1.0.0")
    publish_ok(alice, "alice/det", "1.1.0", files={"weights.bin": b"leaked weights"}, weights=())
    mirror = spawn_hub()
    assert sorted(sync(mirror, upstream)["versions"]) == ["alice/det@1.0.0", "alice/det@1.1.0"]
    leaked = sha256(b"leaked weights")
    assert leaked in stored_blobs(upstream) and leaked in stored_blobs(mirror)

    # Maintainers yank; only an administrator with an admin token deletes, and only with a reason.
    path = "/api/v1/packages/alice/det/versions/1.1.0"
    r = alice.request("DELETE", path, json={"reason": "leaked weights"})
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    not_admin_token = upstream.user_client("root", admin=True, scopes="read publish")
    assert error_code(not_admin_token.request("DELETE", path, json={"reason": "x"})) == "insufficient_scope"
    admin = upstream.user_client("root2", admin=True)
    r = admin.request("DELETE", path, json={"reason": " "})
    assert r.status_code == 422 and error_code(r) == "invalid_field"
    assert upstream.client().get(path).status_code == 200  # refusals changed nothing

    r = admin.request("DELETE", path, json={"reason": "leaked weights"})
    assert r.status_code == 200 and r.json() == {"package": "alice/det", "version": "1.1.0", "deleted": True,
                                                 "reason": "leaked weights"}
    assert upstream.client().get(path).status_code == 404
    doc = upstream.client().get("/api/v1/packages/alice/det").json()
    assert [v["version"] for v in doc["versions"]] == ["1.0.0"] and doc["latest_version"] == "1.0.0"
    last = feed(upstream)[-1]
    assert (last["action"], last["version"], last["data"]) == ("delete", "1.1.0", {"reason": "leaked weights"})
    # The number is never used again, not even with a different build tag.
    for again in ("1.1.0", "1.1.0+rebuilt"):
        r = publish(alice, "alice/det", again)
        assert r.status_code == 409 and error_code(r) == "version_deleted", r.text
    assert error_code(admin.request("DELETE", path, json={"reason": "again"})) == "version_not_found"

    # The mirror follows the feed: its copy goes, with its own feed event; 1.0.0 stays.
    report = sync(mirror, upstream)
    assert report["deleted"] == ["alice/det@1.1.0"] and report["versions"] == []
    assert mirror.client().get(path).status_code == 404
    assert mirror.client().get("/api/v1/packages/alice/det/versions/1.0.0").status_code == 200
    mine = feed(mirror)[-1]
    assert (mine["action"], mine["version"], mine["data"]["reason"]) == ("delete", "1.1.0", "leaked weights")
    assert sync(mirror, upstream)["deleted"] == []

    # The bytes go with the next gc, on both hubs.
    for live in (upstream, mirror):
        ctx = live.context
        collect_garbage(ctx.engine, ctx.store, dataclasses.replace(ctx.settings, gc_grace=0))
        assert leaked not in stored_blobs(live)

"""The real ``huggingface_hub`` client against a live hub (docs/huggingface.md).

Each scenario runs the client in a subprocess: it reads ``HF_ENDPOINT``, ``HF_HOME``,
``HF_TOKEN`` and ``HF_HUB_OFFLINE`` when it is imported, so a fresh interpreter per
environment is the honest way. The hub listens on loopback; telemetry is off and nothing
else is reachable. On ``postgres-s3`` the hub presigns, so downloads are redirected to the
store (moto's server), as a production deployment's are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.services.hf import commit_id
from tests.conftest import BACKENDS, scratch_pg_database, start_hub
from tests.helpers import LiveHub, publish

WEIGHTS_1 = bytes(range(256)) * 64
WEIGHTS_2 = bytes(reversed(range(256))) * 64
README = b"# detector\n"


@dataclasses.dataclass
class World:
    hub: LiveHub
    alice: str  # alice's token (read publish)
    bob: str  # another user's token


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, make_settings) -> Iterator[World]:  # type: ignore[no-untyped-def]
    with scratch_pg_database("hf") if request.param == "postgres-s3" else _nothing() as database_url:
        if database_url:
            settings = dataclasses.replace(make_settings("sqlite-s3", s3_presign=True), database_url=database_url)
        else:
            settings = make_settings(request.param)
        live, server = start_hub(settings)
        live.backend = request.param
        try:
            alice, bob = live.create_user("alice"), live.create_user("bob")
            client = live.client(alice)
            for version, weights in (("1.0.0", WEIGHTS_1), ("1.1.0", WEIGHTS_2)):
                r = publish(client, "alice/detector", version,
                            files={"solver.py": b"class Detector: pass\n", "weights/model.bin": weights,
                                   "README.md": README})
                assert r.status_code == 201, r.text
            r = publish(client, "alice/secret", "1.0.0", private=True, description="a private model")
            assert r.status_code == 201, r.text
            yield World(live, alice, bob)
        finally:
            live.close_clients()
            server.__exit__()
            live.context.engine.dispose()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def run_client(hub: LiveHub, home: Path, code: str, *, token: str | None = None, offline: bool = False) -> Any:
    """Run ``code`` (which sets ``out``) with the client configured for ``hub``; return ``out``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_XET="1", NO_PROXY="*")
    if token:
        env["HF_TOKEN"] = token
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    prelude = "import json, huggingface_hub as hf\nfrom huggingface_hub import errors\nout = None\n"
    script = prelude + textwrap.dedent(code) + "\nprint('@@' + json.dumps(out))\n"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.rsplit("@@", 1)[1])


def downloads(hub: LiveHub, name: str) -> int:
    hub.context.downloads.flush()  # downloads are counted in memory and written in batches
    r = hub.client().get(f"/api/v1/packages/{name}/downloads")
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def test_read_calls(world: World, tmp_path: Path) -> None:
    out = run_client(world.hub, tmp_path, """
        api = hf.HfApi()
        info = api.model_info("alice/detector")
        old = api.model_info("alice/detector", revision="1.0.0")
        refs = api.list_repo_refs("alice/detector")
        out = {
            "id": info.id, "sha": info.sha, "author": info.author, "pipeline_tag": info.pipeline_tag,
            "files": sorted(s.rfilename for s in info.siblings),
            "lfs": {s.rfilename: [s.lfs.sha256, s.lfs.size] for s in info.siblings},
            "old_sha": old.sha,
            "list": api.list_repo_files("alice/detector"),
            "list_old": api.list_repo_files("alice/detector", revision="1.0.0"),
            "tree": [[e.path, type(e).__name__] for e in api.list_repo_tree("alice/detector")],
            "folder": [e.path for e in api.list_repo_tree("alice/detector", "weights", revision=info.sha)],
            "branches": [[b.name, b.target_commit] for b in refs.branches],
            "tags": sorted([t.name, t.target_commit] for t in refs.tags),
            "exists": api.file_exists("alice/detector", "weights/model.bin"),
            "absent": api.file_exists("alice/detector", "nope.bin"),
            "absent_repo": api.file_exists("alice/nope", "cvflow.toml"),
            "found": [m.id for m in api.list_models(search="alice/det")],
            "found_by_author": [m.id for m in api.list_models(author="alice")],
            "found_none": [m.id for m in api.list_models(search="no-such-thing")],
        }
    """)
    main, old = commit_id("alice/detector", "1.1.0"), commit_id("alice/detector", "1.0.0")
    assert out["id"] == "alice/detector" and out["author"] == "alice"
    assert out["sha"] == main and out["old_sha"] == old != main
    assert out["pipeline_tag"] == "object-detection"
    assert out["files"] == ["README.md", "cvflow.toml", "solver.py", "weights/model.bin"]
    assert out["lfs"]["weights/model.bin"] == [hashlib.sha256(WEIGHTS_2).hexdigest(), len(WEIGHTS_2)]
    assert sorted(out["list"]) == out["files"] == sorted(out["list_old"])
    assert out["tree"] == [["weights", "RepoFolder"], ["README.md", "RepoFile"], ["cvflow.toml", "RepoFile"],
                           ["solver.py", "RepoFile"]]
    assert out["folder"] == ["weights/model.bin"]
    assert out["branches"] == [["main", main]]
    assert out["tags"] == [["1.0.0", old], ["1.1.0", main]]
    assert out["exists"] is True and out["absent"] is False and out["absent_repo"] is False
    # The private package is found by nobody without a token; the search is by name.
    assert out["found"] == ["alice/detector"]
    assert "alice/detector" in out["found_by_author"] and "alice/secret" not in out["found_by_author"]
    assert out["found_none"] == []


def test_download_cold_then_cached_then_offline(world: World, tmp_path: Path) -> None:
    before = downloads(world.hub, "alice/detector")
    code = """
        path = hf.hf_hub_download("alice/detector", "cvflow.toml")
        weights = hf.hf_hub_download("alice/detector", "weights/model.bin", revision="1.0.0")
        out = {"manifest": open(path).read(), "weights": open(weights, "rb").read().hex(), "path": path}
    """
    cold = run_client(world.hub, tmp_path, code)
    assert 'version = "1.1.0"' in cold["manifest"]
    assert bytes.fromhex(cold["weights"]) == WEIGHTS_1
    assert downloads(world.hub, "alice/detector") == before + 1  # the manifest's GET counts, as natively

    cached = run_client(world.hub, tmp_path, code)
    assert cached == cold
    assert downloads(world.hub, "alice/detector") == before + 1, "the cached file was fetched again"

    offline = run_client(world.hub, tmp_path, code, offline=True)
    assert offline == cold
    snapshot = run_client(world.hub, tmp_path / "other", """
        import os
        root = hf.snapshot_download("alice/detector", allow_patterns=["weights/*", "*.md"])
        out = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
    """)
    assert snapshot == ["README.md", "weights/model.bin"]
    assert downloads(world.hub, "alice/detector") == before + 1  # no manifest in that snapshot


def test_the_download_takes_the_native_fast_path(world: World) -> None:
    # The client's own requests: a HEAD for the metadata, then the GET it follows.
    url = f"/alice/detector/resolve/{commit_id('alice/detector', '1.0.0')}/weights/model.bin"
    client = world.hub.client()
    head = client.head(url)
    assert head.status_code == 200, head.text
    digest = hashlib.sha256(WEIGHTS_1).hexdigest()
    assert head.headers["x-repo-commit"] == commit_id("alice/detector", "1.0.0")
    assert head.headers["etag"] == head.headers["x-linked-etag"] == f'"{digest}"'
    assert head.headers["x-linked-size"] == head.headers["content-length"] == str(len(WEIGHTS_1))
    get = client.get(url)
    if world.hub.backend == "postgres-s3":  # presigned: the bytes come from the store
        assert get.status_code == 302, get.text
        assert "X-Amz-Signature" in get.headers["location"]
        assert httpx.get(get.headers["location"]).content == WEIGHTS_1
    else:
        assert get.status_code == 200 and get.content == WEIGHTS_1
    assert get.headers["x-repo-commit"] == head.headers["x-repo-commit"]


def test_private_package_with_and_without_a_token(world: World, tmp_path: Path) -> None:
    code = """
        import httpx2
        from huggingface_hub.utils._http import hf_request_event_hook
        sent = []  # every request the client makes: its URL and whether it carried the token
        def record(request):
            sent.append([str(request.url), "authorization" in request.headers])
        hf.set_client_factory(lambda: httpx2.Client(event_hooks={"request": [hf_request_event_hook, record]},
                                                    follow_redirects=True, timeout=None))
        try:
            info = hf.model_info("alice/secret")
            out = {"sha": info.sha, "private": info.private,
                   "manifest": open(hf.hf_hub_download("alice/secret", "cvflow.toml")).read(),
                   "found": [m.id for m in hf.list_models(search="secret")], "sent": sent}
        except errors.RepositoryNotFoundError as exc:
            out = {"error": type(exc).__name__, "found": [m.id for m in hf.list_models(search="secret")]}
    """
    owner = run_client(world.hub, tmp_path / "a", code, token=world.alice)
    assert owner["sha"] == commit_id("alice/secret", "1.0.0") and owner["private"] is True
    assert 'name = "alice/secret"' in owner["manifest"] and owner["found"] == ["alice/secret"]
    at_hub = [auth for url, auth in owner["sent"] if url.startswith(world.hub.url)]
    at_store = [(url, auth) for url, auth in owner["sent"] if not url.startswith(world.hub.url)]
    assert at_hub and all(at_hub), owner["sent"]
    if world.hub.backend == "postgres-s3":  # the manifest came from the store, without the token
        assert at_store and all("X-Amz-Signature" in url and not auth for url, auth in at_store), at_store
    else:
        assert at_store == []
    for token in (None, world.bob):
        other = run_client(world.hub, tmp_path / "b", code, token=token)
        assert other == {"error": "RepositoryNotFoundError", "found": []}
    # The same 404 as a package that does not exist, body and headers alike.
    client = world.hub.client(world.bob)
    secret, absent = client.get("/api/models/alice/secret"), client.get("/api/models/alice/absent")
    assert secret.status_code == absent.status_code == 404
    assert secret.headers["x-error-code"] == absent.headers["x-error-code"] == "RepoNotFound"
    assert secret.json()["error"]["code"] == absent.json()["error"]["code"] == "package_not_found"


def test_errors_are_the_clients_classes(world: World, tmp_path: Path) -> None:
    out = run_client(world.hub, tmp_path, """
        def raised(call, *args, **kw):
            try:
                call(*args, **kw)
            except Exception as exc:
                return type(exc).__name__
        out = {
            "repo": raised(hf.model_info, "alice/nope"),
            "repo_download": raised(hf.hf_hub_download, "nobody/nope", "cvflow.toml"),
            "revision": raised(hf.model_info, "alice/detector", revision="9.9.9"),
            "revision_download": raised(hf.hf_hub_download, "alice/detector", "cvflow.toml", revision="9.9.9"),
            "commit": raised(hf.list_repo_files, "alice/detector", revision="0" * 40),
            "file": raised(hf.hf_hub_download, "alice/detector", "nope.bin"),
            "folder": raised(lambda: list(hf.list_repo_tree("alice/detector", "nope"))),
        }
    """)
    assert out == {"repo": "RepositoryNotFoundError", "repo_download": "RepositoryNotFoundError",
                   "revision": "RevisionNotFoundError", "revision_download": "RevisionNotFoundError",
                   "commit": "RevisionNotFoundError", "file": "RemoteEntryNotFoundError",
                   "folder": "RemoteEntryNotFoundError"}


def test_a_yanked_latest_moves_main_to_the_previous_version(world: World, tmp_path: Path) -> None:
    client = world.hub.client(world.alice)
    for version in ("2.0.0", "2.1.0"):
        assert publish(client, "alice/yanky", version).status_code == 201
    r = client.post("/api/v1/packages/alice/yanky/versions/2.1.0/yank", json={"reason": "broken"})
    assert r.status_code == 200, r.text
    out = run_client(world.hub, tmp_path, """
        api = hf.HfApi()
        out = {"sha": api.model_info("alice/yanky").sha,
               "manifest": open(hf.hf_hub_download("alice/yanky", "cvflow.toml")).read(),
               "pinned": open(hf.hf_hub_download("alice/yanky", "cvflow.toml", revision="2.1.0")).read(),
               "branches": [[b.name, b.target_commit] for b in api.list_repo_refs("alice/yanky").branches]}
    """)
    assert out["sha"] == commit_id("alice/yanky", "2.0.0")
    assert 'version = "2.0.0"' in out["manifest"]
    assert 'version = "2.1.0"' in out["pinned"]  # a yanked version stays reachable when pinned
    assert out["branches"] == [["main", commit_id("alice/yanky", "2.0.0")]]


def test_the_resolve_path_wins_over_the_website_for_its_shape_only(world: World) -> None:
    client = world.hub.client()
    r = client.get("/alice/detector/resolve/main/nope.bin", headers={"accept": "text/html"})
    assert r.status_code == 404 and r.headers["x-error-code"] == "EntryNotFound"
    assert r.headers["x-repo-commit"] == commit_id("alice/detector", "1.1.0")
    page = client.get("/alice/detector", headers={"accept": "text/html"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_list_models_pages_by_link(world: World) -> None:
    client = world.hub.client(world.alice)
    first = client.get("/api/models", params={"author": "alice", "limit": 1, "sort": "id"})
    assert first.status_code == 200 and len(first.json()) == 1, first.text
    names = [first.json()[0]["id"]]
    link = first.links["next"]["url"]
    while link:
        page = client.get(link)
        assert page.status_code == 200 and len(page.json()) == 1, page.text
        names.append(page.json()[0]["id"])
        link = page.links.get("next", {}).get("url")
    assert names == sorted(names) and {"alice/detector", "alice/secret"} <= set(names)
    assert "alice/secret" not in [m["id"] for m in world.hub.client().get("/api/models").json()]

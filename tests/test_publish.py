"""Publishing, reading and yanking versions over HTTP, and every bad input refused."""

from __future__ import annotations

import pytest

from tests.helpers import error_code, manifest, publish, sha256, upload


def test_publish_then_read_package_and_version(hub, alice):
    r = publish(alice, files={"solver.py": b"class Detector: pass\n", "weights/w.safetensors": b"\x00" * 1000},
                weights=("weights/w.safetensors",))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/api/v1/packages/alice/detector/versions/1.0.0"
    version = r.json()
    assert version["version"] == "1.0.0"
    assert {f["path"]: f["size"] for f in version["files"]} == {
        "cvflow.toml": len(manifest(weights=("weights/w.safetensors",)).encode()), "solver.py": 21, "weights/w.safetensors": 1000}
    assert version["manifest"]

    anon = hub.client()
    pkg = anon.get("/api/v1/packages/alice/detector")
    assert pkg.status_code == 200
    doc = pkg.json()
    assert doc["name"] == "alice/detector"
    assert doc["latest_version"] == "1.0.0"
    assert doc["task"] == "detection" and doc["tags"] == ["test"]
    assert [v["version"] for v in doc["versions"]] == ["1.0.0"]
    again = anon.get("/api/v1/packages/alice/detector", headers={"if-none-match": pkg.headers["etag"]})
    assert again.status_code == 304

    detail = anon.get("/api/v1/packages/alice/detector/versions/1.0.0").json()
    weights = next(f for f in detail["files"] if f["path"] == "weights/w.safetensors")
    assert weights["sha256"] == sha256(b"\x00" * 1000)


def test_versions_are_listed_in_semver_order_and_latest_skips_prereleases(hub, alice):
    for v in ["1.0.0", "1.10.0", "1.2.0", "2.0.0-rc.1", "1.10.0-alpha"]:
        assert publish(alice, version=v).status_code == 201, v
    doc = hub.client().get("/api/v1/packages/alice/detector").json()
    assert [v["version"] for v in doc["versions"]] == ["2.0.0-rc.1", "1.10.0", "1.10.0-alpha", "1.2.0", "1.0.0"]
    assert doc["latest_version"] == "1.10.0"


def test_republishing_a_version_is_409_and_changes_nothing(hub, alice):
    assert publish(alice, files={"solver.py": b"v1"}).status_code == 201
    before = hub.client().get("/api/v1/packages/alice/detector/versions/1.0.0").json()
    for files in ({"solver.py": b"v1"}, {"solver.py": b"different"}):
        r = publish(alice, files=files)
        assert r.status_code == 409
        assert error_code(r) == "version_exists"
    # Build metadata does not make a new release either.
    r = publish(alice, version="1.0.0+build.7")
    assert r.status_code == 409 and error_code(r) == "version_exists"
    after = hub.client().get("/api/v1/packages/alice/detector/versions/1.0.0").json()
    assert after["files"] == before["files"]


BAD_PATHS = ["../escape.py", "/etc/passwd", "weights\\w.bin", "a\x00b", "a/../../b", "./x", "a//b"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_file_paths_that_escape_the_package_are_refused(hub, alice, path):
    text = manifest()
    entries = [{"path": "cvflow.toml", "size": len(text), "sha256": upload(alice, text.encode())},
               {"path": path, "size": 1, "sha256": upload(alice, b"x")}]
    r = alice.post("/api/v1/packages/alice/detector/versions", json={"manifest": text, "files": entries})
    assert r.status_code == 422
    assert error_code(r) == "invalid_path"
    assert hub.client().get("/api/v1/packages/alice/detector").status_code == 404


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("this is [not toml", "invalid_manifest"),
        ('[package]\nname = "alice/detector"\n', "invalid_manifest"),
        (manifest(version="1.0"), "invalid_manifest"),
        (manifest(version="01.0.0"), "invalid_manifest"),
        (manifest(name="alice/other"), "invalid_manifest"),
    ],
)
def test_malformed_manifests_are_refused(hub, alice, text, code):
    r = publish(alice, manifest_text=text)
    assert r.status_code == 422, r.text
    assert error_code(r) == code
    assert hub.client().get("/api/v1/packages/alice/detector").status_code == 404


def test_invalid_semver_problem_names_the_version_field(hub, alice):
    r = publish(alice, manifest_text=manifest(version="1.0.0-01"))
    assert r.status_code == 422
    problems = r.json()["error"]["details"]["problems"]
    assert any("version" in p["field"] for p in problems), problems


@pytest.mark.parametrize("name", ["Alice/detector", "alice/Detector", "alice/-det", "a/detector", "alice/de..t"])
def test_bad_package_names_are_refused(hub, alice, name):
    ns, pkg = name.split("/")
    r = alice.post(f"/api/v1/packages/{ns}/{pkg}/versions", json={"manifest": manifest(name), "files": []})
    assert r.status_code == 422
    assert error_code(r) == "invalid_package_name"


def test_files_whose_blobs_were_not_uploaded_are_refused(hub, alice):
    text = manifest()
    entries = [{"path": "cvflow.toml", "size": len(text), "sha256": upload(alice, text.encode())},
               {"path": "solver.py", "size": 3, "sha256": sha256(b"abc")}]
    r = alice.post("/api/v1/packages/alice/detector/versions", json={"manifest": text, "files": entries})
    assert r.status_code == 422
    assert error_code(r) == "missing_blobs"
    assert r.json()["error"]["details"]["missing"] == [sha256(b"abc")]


def test_declared_size_must_match_the_blob(hub, alice):
    text = manifest()
    entries = [{"path": "cvflow.toml", "size": len(text), "sha256": upload(alice, text.encode())},
               {"path": "solver.py", "size": 99, "sha256": upload(alice, b"abc")}]
    r = alice.post("/api/v1/packages/alice/detector/versions", json={"manifest": text, "files": entries})
    assert r.status_code == 422 and error_code(r) == "invalid_files"


def test_publishing_needs_a_token_with_a_fitting_scope(hub):
    anon = hub.client()
    r = anon.post("/api/v1/packages/alice/detector/versions", json={"manifest": manifest(), "files": []})
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    assert r.headers["www-authenticate"] == "Bearer"

    bogus = hub.client("cvf_" + "x" * 43)
    assert error_code(bogus.get("/api/v1/whoami")) == "unauthenticated"

    reader = hub.user_client("alice", scopes="read")
    r = reader.post("/api/v1/packages/alice/detector/versions", json={"manifest": manifest(), "files": []})
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"

    hub.create_user("bob")
    narrow = hub.client(hub.create_user("carol", scopes="publish:carol/only-this"))
    assert publish(narrow, "carol/only-this").status_code == 201
    r = publish(narrow, "carol/something-else")
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"


def test_only_owners_and_maintainers_publish_to_a_package(hub, alice):
    assert publish(alice).status_code == 201
    bob = hub.user_client("bob")
    r = publish(bob, version="1.1.0")
    assert r.status_code == 403 and error_code(r) == "forbidden"
    r = publish(bob, "alice/new-one")
    assert r.status_code == 403 and error_code(r) == "forbidden"

    assert alice.put("/api/v1/packages/alice/detector/roles/bob", json={"role": "maintainer"}).status_code == 204
    assert publish(bob, version="1.1.0").status_code == 201
    # Maintainers may not hand out roles.
    hub.create_user("eve")
    r = bob.put("/api/v1/packages/alice/detector/roles/eve", json={"role": "owner"})
    assert r.status_code == 403 and error_code(r) == "forbidden"


def test_publishing_to_an_unknown_namespace_is_404(hub):
    root = hub.user_client("root", admin=True)
    r = publish(root, "nobody/thing")
    assert r.status_code == 404 and error_code(r) == "namespace_not_found"


def test_yank_and_unyank_need_a_reason_and_move_latest(hub, alice):
    publish(alice, version="1.0.0")
    publish(alice, version="1.1.0")
    url = "/api/v1/packages/alice/detector/versions/1.1.0"
    r = alice.post(url + "/yank", json={"reason": ""})
    assert r.status_code == 422 and error_code(r) == "invalid_field"
    r = alice.post(url + "/yank", json={"reason": "wrong weights"})
    assert r.status_code == 200 and r.json()["yanked"] is True
    doc = hub.client().get("/api/v1/packages/alice/detector").json()
    assert doc["latest_version"] == "1.0.0"
    yanked = next(v for v in doc["versions"] if v["version"] == "1.1.0")
    assert yanked["yanked"] and yanked["yank_reason"] == "wrong weights"
    # Yanked versions stay downloadable: pinned installs keep working.
    assert hub.client().get(url).status_code == 200

    bob = hub.user_client("bob")
    r = bob.post(url + "/unyank", json={"reason": "mine now"})
    assert r.status_code == 403
    r = alice.post(url + "/unyank", json={"reason": "weights were fine"})
    assert r.status_code == 200 and r.json()["yanked"] is False
    assert hub.client().get("/api/v1/packages/alice/detector").json()["latest_version"] == "1.1.0"


def test_private_packages_are_invisible_without_a_token_that_allows_them(hub, alice):
    assert publish(alice, private=True).status_code == 201
    anon = hub.client()
    assert error_code(anon.get("/api/v1/packages/alice/detector")) == "package_not_found"
    assert anon.get("/api/v1/packages/alice/detector/versions/1.0.0").status_code == 404
    assert anon.get("/api/v1/packages/alice/detector/versions/1.0.0/files/solver.py").status_code == 404
    assert anon.get("/api/v1/packages", params={"q": "detector"}).json()["total"] == 0

    assert alice.get("/api/v1/packages/alice/detector").status_code == 200
    assert alice.get("/api/v1/packages", params={"q": "detector"}).json()["total"] == 1
    stranger = hub.user_client("bob")
    assert stranger.get("/api/v1/packages/alice/detector").status_code == 404
    other_scope = hub.client(hub.create_user("carol", scopes="publish:carol"))
    assert other_scope.get("/api/v1/packages/alice/detector").status_code == 404

    assert alice.patch("/api/v1/packages/alice/detector", json={"private": False}).status_code == 200
    assert anon.get("/api/v1/packages/alice/detector").status_code == 200


def test_search_filters_sorts_and_paginates(hub, alice):
    publish(alice, "alice/face-finder", task="detection", tags=("faces",), description="finds faces")
    publish(alice, "alice/digits", task="classification", tags=("digits", "mnist"), description="reads digits")
    publish(alice, "alice/cats", task="classification", tags=("animals",), description="cat or not")
    anon = hub.client()
    names = lambda r: [p["name"] for p in r.json()["results"]]  # noqa: E731
    assert names(anon.get("/api/v1/packages", params={"q": "FACES"})) == ["alice/face-finder"]
    assert sorted(names(anon.get("/api/v1/packages", params={"task": "classification"}))) == ["alice/cats", "alice/digits"]
    assert names(anon.get("/api/v1/packages", params={"tag": "mnist"})) == ["alice/digits"]
    assert names(anon.get("/api/v1/packages", params={"sort": "recent"}))[0] == "alice/cats"
    page = anon.get("/api/v1/packages", params={"sort": "name", "per_page": 2, "page": 2}).json()
    assert page["total"] == 3 and [p["name"] for p in page["results"]] == ["alice/face-finder"]

    alice.get("/api/v1/packages/alice/digits/versions/1.0.0/files/cvflow.toml")
    hub.context.downloads.flush()  # downloads are counted in memory and written in batches
    assert names(anon.get("/api/v1/packages", params={"sort": "downloads"}))[0] == "alice/digits"
    r = anon.get("/api/v1/packages", params={"sort": "stars"})
    assert r.status_code == 422 and error_code(r) == "invalid_field"


def test_index_returns_versions_and_dependencies_of_many_packages_at_once(hub, alice):
    publish(alice, "alice/base", version="1.0.0")
    publish(alice, "alice/base", version="1.1.0")
    publish(alice, "alice/app", version="0.1.0", dependencies={"alice/base": "^1.0"})
    publish(alice, "alice/secret", private=True)
    alice.post("/api/v1/packages/alice/base/versions/1.1.0/yank", json={"reason": "broken"})
    r = hub.client().post("/api/v1/index", json={"packages": ["alice/app", "alice/base", "alice/secret", "no/such"]})
    assert r.status_code == 200
    body = r.json()
    assert body["missing"] == ["alice/secret", "no/such"]
    assert body["packages"]["alice/app"]["versions"] == [
        {"version": "0.1.0", "prerelease": False, "yanked": False, "dependencies": {"alice/base": "^1.0"}}]
    assert [(v["version"], v["yanked"]) for v in body["packages"]["alice/base"]["versions"]] == [
        ("1.1.0", True), ("1.0.0", False)]
    assert "alice/secret" in alice.post("/api/v1/index", json={"packages": ["alice/secret"]}).json()["packages"]
    r = hub.client().post("/api/v1/index", json={"packages": "alice/app"})
    assert r.status_code == 422 and error_code(r) == "invalid_field"

"""A manifest nested 100,000 deep, at one tag of a real repository served over git://, fails that
tag alone with its reason recorded; the repository's other tags are indexed as usual."""

from __future__ import annotations

from indexer.release import ReleaseReader
from tests.indexer._helpers import SOLVER, by_tag, manifest, published, register, repository, run_jobs

DEEP = 100_000

# Every TOML construct that nests, each 100,000 levels (about 200 KB, under the manifest size
# limit, so it is the depth that is refused and not the size).
HOSTILE = {
    "arrays": "\n[extra]\nx = " + "[" * DEEP + "]" * DEEP + "\n",
    "dotted-key": "\n[extra]\n" + "a." * (DEEP - 1) + "a = 1\n",
    "table-header": "\n[" + "a." * (DEEP - 1) + "a]\n",
    "array-of-tables": "\n[[" + "a." * (DEEP - 1) + "a]]\n",
    "inline-tables": "\n[extra]\nx = " + "{a=" * 60_000 + "1" + "}" * 60_000 + "\n",
}


def _tagged(repo, files, tag, *, annotated=False):  # type: ignore[no-untyped-def]
    repo.write(files).commit()
    repo.tag(tag, annotated=annotated)


def test_deep_manifests_fail_their_own_tags_and_the_good_tags_are_indexed(one_hub, make_repo, git_daemon):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    _tagged(repo, {"cvflow.toml": manifest(version="1.0.0"), "solver.py": SOLVER}, "v1.0.0")
    bad_tags = {}
    for minor, (shape, tail) in enumerate(HOSTILE.items(), start=1):
        tag = f"v1.{minor}.0"
        text = manifest(version=f"1.{minor}.0") + tail
        assert len(text.encode()) < one_hub.context.settings.max_manifest_size
        _tagged(repo, {"cvflow.toml": text}, tag, annotated=minor % 2 == 0)
        bad_tags[tag] = shape
    _tagged(repo, {"cvflow.toml": manifest(version="2.0.0")}, "v2.0.0", annotated=True)
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)

    result = repository(alice, doc["id"])["last_result"]
    assert sorted(published(one_hub, "alice/detector")) == ["1.0.0", "2.0.0"]
    assert sorted(v["tag"] for v in result["versions"]) == ["v1.0.0", "v2.0.0"]
    errors = by_tag(result["errors"])
    assert sorted(errors) == sorted(bad_tags), result["errors"]
    for tag, error in errors.items():
        assert error["code"] == "invalid_manifest", (bad_tags[tag], error)
        assert "nested too deep" in error["message"]
        assert [p["code"] for p in error["problems"]] == ["too_deep"], (bad_tags[tag], error)


def test_a_tag_that_fails_unexpectedly_fails_alone(one_hub, make_repo, git_daemon, monkeypatch):
    """Defence in depth: whatever a tag's content does to the indexer, the other tags go on.

    A mock, because no real input is known to break the indexer now (that is the point): one
    tag's manifest reading raises RecursionError, as a deep manifest did before the bound."""
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    _tagged(repo, {"cvflow.toml": manifest(version="1.0.0"), "solver.py": SOLVER}, "v1.0.0")
    _tagged(repo, {"cvflow.toml": manifest(version="1.1.0")}, "v1.1.0")
    _tagged(repo, {"cvflow.toml": manifest(version="1.2.0")}, "v1.2.0")
    real = ReleaseReader._manifest

    def breaks_on_one_tag(self, tree, tag):  # type: ignore[no-untyped-def]
        if tag.name == "v1.1.0":
            raise RecursionError("maximum recursion depth exceeded")
        return real(self, tree, tag)

    monkeypatch.setattr(ReleaseReader, "_manifest", breaks_on_one_tag)
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)

    result = repository(alice, doc["id"])["last_result"]
    assert sorted(published(one_hub, "alice/detector")) == ["1.0.0", "1.2.0"]
    assert [(e["tag"], e["code"]) for e in result["errors"]] == [("v1.1.0", "internal_error")]
    assert "RecursionError" in result["errors"][0]["message"]


def test_legacy_cvpm_manifests_nested_deep_are_refused_too(one_hub, make_repo, git_daemon):
    alice = one_hub.user_client("alice")
    repo, name = make_repo()
    for minor, tail in enumerate(HOSTILE.values()):
        cvpm = f'[package]\nname = "detector"\nversion = "1.{minor}.0"\n\n[[solvers]]\nname = "detect"\nclass = "solver.Detector"\n'
        _tagged(repo, {"cvpm.toml": cvpm + (tail if minor else ""), "solver.py": SOLVER}, f"v1.{minor}.0")
    doc = register(alice, git_daemon.url(name))
    run_jobs(one_hub)
    result = repository(alice, doc["id"])["last_result"]
    assert sorted(published(one_hub, "alice/detector")) == ["1.0.0"], result
    errors = by_tag(result["errors"])
    assert sorted(errors) == [f"v1.{minor}.0" for minor in range(1, len(HOSTILE))]
    for error in errors.values():
        assert error["code"] == "invalid_manifest"
        assert [p["code"] for p in error["problems"]] == ["too_deep"]

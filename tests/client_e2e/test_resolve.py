"""Resolution (cvflow.resolve): rules and messages on in-memory metadata, batching against a live hub."""

from __future__ import annotations

import httpx
import pytest

from cvflow.api import HubClient
from cvflow.cache import Cache
from cvflow.errors import OfflineError, ResolutionError
from cvflow.resolve import HubSource, MemorySource, OfflineSource, resolve
from tests.helpers import publish


def versions(result):  # type: ignore[no-untyped-def]
    return {name: str(v) for name, v in result.items()}


# -- rules, on an in-memory source -------------------------------------------------------------


def test_diamond_picks_the_highest_version_both_sides_accept():
    source = MemorySource({
        "demo/app": {"1.0.0": {"demo/left": "^1", "demo/right": "^1"}},
        "demo/left": {"1.0.0": {"demo/base": ">=1.1"}},
        "demo/right": {"1.0.0": {"demo/base": "<1.3"}},
        "demo/base": {"1.0.0": {}, "1.1.0": {}, "1.2.5": {}, "1.3.0": {}, "2.0.0": {}},
    })
    assert versions(resolve({"demo/app": "*"}, source)) == {
        "demo/app": "1.0.0", "demo/left": "1.0.0", "demo/right": "1.0.0", "demo/base": "1.2.5"}


def test_backtracks_to_an_older_version_whose_dependencies_fit():
    source = MemorySource({
        "demo/app": {"1.0.0": {"demo/base": "^1.0", "demo/tool": "*"}},
        # The newest tool needs base 2, which app forbids: resolution must fall back to tool 1.4.
        "demo/tool": {"2.0.0": {"demo/base": "^2.0"}, "1.4.0": {"demo/base": "^1.2"}, "1.0.0": {}},
        "demo/base": {"1.0.0": {}, "1.2.0": {}, "2.0.0": {}},
    })
    assert versions(resolve({"demo/app": "^1"}, source)) == {
        "demo/app": "1.0.0", "demo/tool": "1.4.0", "demo/base": "1.2.0"}


def test_conflict_names_the_clashing_requirements_and_who_asked():
    source = MemorySource({
        "demo/app": {"1.0.0": {"demo/base": "^1.0", "demo/tool": "^2.0"}},
        "demo/tool": {"2.0.0": {"demo/base": "^2.0"}},
        "demo/base": {"1.0.0": {}, "2.0.0": {}},
    })
    with pytest.raises(ResolutionError) as info:
        resolve({"demo/app": "*"}, source)
    assert str(info.value) == (
        "demo/base: demo/app@1.0.0 needs ^1.0, demo/tool@2.0.0 needs ^2.0 — no version satisfies both")
    assert info.value.code == "resolution_impossible"


def test_missing_dependency_says_who_requires_it():
    source = MemorySource({"demo/app": {"1.0.0": {"demo/ghost": "^1"}}})
    with pytest.raises(ResolutionError, match=r"^demo/ghost: no such package on the hub .*required by demo/app@1.0.0$"):
        resolve({"demo/app": "*"}, source)
    with pytest.raises(ResolutionError, match=r"^demo/nope: no such package on the hub \(or it is private\)$"):
        resolve({"demo/nope": "*"}, source)


def test_unsatisfiable_range_lists_what_exists():
    source = MemorySource({"demo/base": {"1.0.0": {}, "1.1.0": {}}}, yanked=["demo/base@1.1.0"])
    with pytest.raises(ResolutionError) as info:
        resolve({"demo/base": "^2"}, source)
    assert str(info.value) == "demo/base: you asked for ^2 — no version matches (available: 1.1.0 (yanked), 1.0.0)"


def test_yanked_versions_are_skipped_unless_pinned_exactly():
    source = MemorySource({"demo/base": {"1.0.0": {}, "1.1.0": {}}}, yanked=["demo/base@1.1.0"])
    assert versions(resolve({"demo/base": "*"}, source)) == {"demo/base": "1.0.0"}
    assert versions(resolve({"demo/base": "1.1.0"}, source)) == {"demo/base": "1.1.0"}
    assert versions(resolve({"demo/base": "=1.1.0"}, source)) == {"demo/base": "1.1.0"}
    with pytest.raises(ResolutionError, match="no version matches"):
        resolve({"demo/base": ">=1.1"}, source)
    # A pin deeper in the graph counts too.
    source = MemorySource({"demo/app": {"1.0.0": {"demo/base": "1.1.0"}},
                           "demo/base": {"1.0.0": {}, "1.1.0": {}}}, yanked=["demo/base@1.1.0"])
    assert versions(resolve({"demo/app": "*"}, source))["demo/base"] == "1.1.0"


def test_prereleases_only_when_a_range_names_one_or_with_pre():
    source = MemorySource({"demo/base": {"1.0.0": {}, "1.1.0-rc.1": {}, "2.0.0-beta.1": {}}})
    assert versions(resolve({"demo/base": "*"}, source)) == {"demo/base": "1.0.0"}
    assert versions(resolve({"demo/base": ">=1.1.0-rc.0"}, source)) == {"demo/base": "1.1.0-rc.1"}
    assert versions(resolve({"demo/base": "^1"}, source, prereleases=True)) == {"demo/base": "1.1.0-rc.1"}
    assert versions(resolve({"demo/base": "*"}, source, prereleases=True)) == {"demo/base": "2.0.0-beta.1"}
    only_pre = MemorySource({"demo/base": {"1.0.0-rc.1": {}}})
    with pytest.raises(ResolutionError, match=r"you asked for \^1 — no version matches \(available: 1.0.0-rc.1\)"):
        resolve({"demo/base": "^1"}, only_pre)


def test_metadata_is_fetched_breadth_first_in_one_batch_per_level():
    source = MemorySource({
        "demo/app": {"1.0.0": {"demo/a": "*", "demo/b": "*"}},
        "demo/a": {"1.0.0": {"demo/c": "*"}},
        "demo/b": {"1.0.0": {"demo/d": "*"}, "0.9.0": {"demo/e": "*"}},
        "demo/c": {"1.0.0": {}}, "demo/d": {"1.0.0": {}}, "demo/e": {"1.0.0": {}},
    })
    resolve({"demo/app": "*"}, source)
    # An older version's dependency (demo/e) rides along in its level's batch rather than costing a request later.
    assert source.batches == [["demo/app"], ["demo/a", "demo/b"], ["demo/c", "demo/d", "demo/e"]]


def test_invalid_ranges_are_reported_as_resolution_errors():
    with pytest.raises(ResolutionError, match=r"demo/app: range '\^x'"):
        resolve({"demo/app": "^x"}, MemorySource({}))
    source = MemorySource({"demo/app": {"1.0.0": {"demo/base": "=>1"}}})
    with pytest.raises(ResolutionError, match="demo/app@1.0.0 has an invalid range for demo/base"):
        resolve({"demo/app": "*"}, source)


def _cache_snapshot(cache, name, version, deps=None, yanked=False):  # type: ignore[no-untyped-def]
    cache.snapshot(name, {"version": version, "yanked": yanked, "dependencies": deps or {}, "files": [],
                          "manifest": {}})


def test_offline_source_offers_only_cached_versions(tmp_path):
    cache = Cache(tmp_path)
    _cache_snapshot(cache, "demo/app", "1.0.0", {"demo/base": "^1"})
    _cache_snapshot(cache, "demo/base", "1.0.0")
    _cache_snapshot(cache, "demo/base", "1.1.0")
    (tmp_path / "snapshots" / "demo" / "base" / "1.2.0").mkdir()  # an incomplete download: ignored
    # Saved index metadata knows of a newer base and that 1.1.0 was yanked since it was pulled.
    cache.save_metadata("demo/base", {"versions": [{"version": "1.3.0"}, {"version": "1.1.0", "yanked": True},
                                                   {"version": "1.0.0"}]})
    assert versions(resolve({"demo/app": "*"}, OfflineSource(cache))) == {"demo/app": "1.0.0", "demo/base": "1.0.0"}

    with pytest.raises(OfflineError, match="^offline: demo/zzz: no such package in the cache"):
        resolve({"demo/zzz": "*"}, OfflineSource(cache))

    # Only a base that app does not accept is cached: the error says so, and what is cached.
    other = Cache(tmp_path / "other")
    _cache_snapshot(other, "demo/app", "1.0.0", {"demo/base": "^1"})
    _cache_snapshot(other, "demo/base", "2.0.0")
    with pytest.raises(OfflineError) as info:
        resolve({"demo/app": "*"}, OfflineSource(other))
    assert str(info.value) == ("offline: demo/base: demo/app@1.0.0 needs ^1 — no cached version matches"
                               " (available: 2.0.0); pull what is missing while online")


# -- against a live hub ------------------------------------------------------------------------


def _counting_client(hub):  # type: ignore[no-untyped-def]
    seen: list[str] = []
    http = httpx.Client(base_url=hub.url, event_hooks={"request": [lambda r: seen.append(r.url.path)]})
    return HubClient(hub.url, client=http), seen


def test_resolution_costs_one_index_request_per_dependency_level(hub, alice, tmp_path):
    def ok(name, version, deps=None):  # type: ignore[no-untyped-def]
        r = publish(alice, f"alice/{name}", version, dependencies=deps)
        assert r.status_code == 201, r.text

    ok("leaf", "1.0.0")
    ok("leaf", "1.1.0")
    ok("base", "1.0.0", {"alice/leaf": "^1"})
    ok("mid", "1.0.0", {"alice/base": "^1"})
    ok("tool", "1.0.0", {"alice/base": "^1", "alice/leaf": "~1.0"})
    ok("app", "1.0.0", {"alice/mid": "^1", "alice/tool": "^1"})
    ok("app", "2.0.0-rc.1", {"alice/mid": "^1"})
    assert alice.post("/api/v1/packages/alice/leaf/versions/1.1.0/yank", json={"reason": "bad"}).status_code == 200

    client, seen = _counting_client(hub)
    cache = Cache(tmp_path)
    with client:
        result = resolve({"alice/app": "^1"}, HubSource(client, cache))
    assert versions(result) == {"alice/app": "1.0.0", "alice/mid": "1.0.0", "alice/tool": "1.0.0",
                                "alice/base": "1.0.0", "alice/leaf": "1.0.0"}
    # Levels: app; mid + tool; base + leaf. Nothing else was asked of the hub.
    assert seen == ["/api/v1/index"] * 3
    saved = cache.load_metadata("alice/leaf")
    assert {(v["version"], v["yanked"]) for v in saved["versions"]} == {("1.0.0", False), ("1.1.0", True)}

    client, seen = _counting_client(hub)
    with client, pytest.raises(ResolutionError, match=r"^alice/nope: no such package on the hub"):
        resolve({"alice/app": "*", "alice/nope": "^1"}, HubSource(client))
    assert seen == ["/api/v1/index"]  # both roots in the first request

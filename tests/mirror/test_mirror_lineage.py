"""Fine-tunes copied from another hub (mirror sync, pull-through, bundle import) keep their lineage:
never refused for a base this hub lacks (the ids stay empty), linked once the base arrives."""

from __future__ import annotations

from typing import Any

from tests.helpers import LiveHub
from tests.mirror._helpers import sync, version_doc
from tests.mirror.test_bundles import _export, _import
from tests.test_lineage import lineage_row, lineage_toml, ok, publish_dataset, publish_model
from tests.web.support import browser, text

UNLINKED = {"base": "alice/lenet@1.0.0", "base_id": None, "dataset": "alice/shots@1.0.0", "dataset_id": None}
LINKED = {**UNLINKED, "base_id": "alice/lenet@1.0.0", "dataset_id": "alice/shots@1.0.0"}


def family(upstream: LiveHub) -> None:
    """alice/lenet@1.0.0, alice/shots@1.0.0 and alice/lenet-ft@1.0.0, fine-tuned from the first on the second."""
    alice = upstream.user_client("alice")
    ok(publish_model(alice, "alice/lenet", metrics="accuracy = 0.41\nlatency_ms = 2.0"))
    ok(publish_dataset(alice, "alice/shots"))
    ok(publish_model(alice, "alice/lenet-ft", metrics="accuracy = 0.93",
                     lineage=lineage_toml("alice/lenet@1.0.0", "alice/shots@1.0.0")))


def test_a_mirror_keeps_a_fine_tune_without_its_base_and_links_it_when_the_base_comes(hub: LiveHub,
                                                                                      spawn_hub: Any) -> None:
    family(hub)
    mirror = spawn_hub()
    report = sync(mirror, hub, "--filter", "alice/lenet-ft")
    assert report["versions"] == ["alice/lenet-ft@1.0.0"] and report["failures"] == []
    assert lineage_row(mirror, "alice/lenet-ft", "1.0.0") == UNLINKED
    assert version_doc(mirror, "alice/lenet-ft", "1.0.0")["lineage"] == version_doc(hub, "alice/lenet-ft",
                                                                                      "1.0.0")["lineage"]
    # The page cannot link what this hub lacks; it says so as it would of a private one.
    assert "Fine-tuned from a private package" in text(browser(mirror).get("/alice/lenet-ft").text)

    report = sync(mirror, hub)
    assert sorted(report["versions"]) == ["alice/lenet@1.0.0", "alice/shots@1.0.0"]
    assert lineage_row(mirror, "alice/lenet-ft", "1.0.0") == LINKED
    assert '<a href="/alice/lenet/v/1.0.0">' in browser(mirror).get("/alice/lenet-ft").text
    assert "alice/lenet-ft@1.0.0" in browser(mirror).get("/alice/lenet").text
    assert mirror.client().get("/api/v1/packages/alice/lenet").json()["fine_tunes"] == 1


def test_a_bundle_carries_a_fine_tune_with_or_without_its_base(spawn_hub: Any, tmp_path: Any) -> None:
    source = spawn_hub()
    family(source)
    alone, whole = tmp_path / "ft.cvflow", tmp_path / "all.cvflow"
    assert _export(source, alone, "--filter", "alice/lenet-ft")["versions"] == ["alice/lenet-ft@1.0.0"]
    _export(source, whole)

    target = spawn_hub()
    assert _import(target, alone)["versions"] == ["alice/lenet-ft@1.0.0"]
    assert lineage_row(target, "alice/lenet-ft", "1.0.0") == UNLINKED
    report = _import(target, whole)
    assert sorted(report["versions"]) == ["alice/lenet@1.0.0", "alice/shots@1.0.0"]
    assert lineage_row(target, "alice/lenet-ft", "1.0.0") == LINKED

    fresh = spawn_hub()  # everything in one bundle: linked at once, whatever order it is read in
    _import(fresh, whole)
    assert lineage_row(fresh, "alice/lenet-ft", "1.0.0") == LINKED


def test_pull_through_keeps_the_lineage_of_what_it_fetches(hub: LiveHub, spawn_hub: Any) -> None:
    family(hub)
    proxy = spawn_hub(upstreams=hub.url)

    def fetch_all(name: str) -> None:
        for f in version_doc(proxy, name, "1.0.0")["files"]:
            assert proxy.client().get(f"/api/v1/packages/{name}/versions/1.0.0/files/{f['path']}").status_code == 200

    fetch_all("alice/lenet-ft")
    assert lineage_row(proxy, "alice/lenet-ft", "1.0.0") == UNLINKED
    fetch_all("alice/lenet")
    fetch_all("alice/shots")
    assert lineage_row(proxy, "alice/lenet-ft", "1.0.0") == LINKED

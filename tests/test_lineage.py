"""A fine-tuned version's ``[lineage]`` on the hub (docs/training.md, "Lineage on the hub"): checked on
publish (``invalid_lineage``, a private base answered like an absent one), recorded with the version's
ids, immutable, and in the API's documents."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlmodel import select

from hub.db import session_scope
from hub.models import Package, Version, VersionLineage
from tests.helpers import LiveHub, error_code, manifest, publish

SOLVER = {"solver.py": b"class Detector: pass\n"}


def lineage_toml(base: str, dataset: str, **extra: str) -> str:
    """A ``[lineage]`` table as ``cvflow finetune`` writes it; ``extra`` keys (TOML values) replace or add."""
    keys = {"base": f'"{base}"', "dataset": f'"{dataset}"', "trainer": '"finetune"',
            "hyperparameters": "{ epochs = 3, lr = 0.001 }", "metrics": "{ accuracy = 0.93 }",
            "base_metrics": "{ accuracy = 0.41 }", "device": '"cpu"', "seconds": "12.5", **extra}
    return "\n[lineage]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


def model_text(name: str, version: str = "1.0.0", *, lineage: str = "", metrics: str = "") -> str:
    """A classification model's manifest, with ``[metrics]`` and ``[lineage]`` tables appended."""
    text = manifest(name, version, task="classification")
    if metrics:
        text += f"\n[metrics]\n{metrics}\n"
    return text + lineage


def publish_model(client: httpx.Client, name: str, version: str = "1.0.0", *, lineage: str = "",
                  metrics: str = "", private: bool | None = None) -> httpx.Response:
    return publish(client, name, version, manifest_text=model_text(name, version, lineage=lineage, metrics=metrics),
                   files=SOLVER, private=private)


def dataset_text(name: str, version: str = "1.0.0") -> str:
    return (f'[package]\nname = "{name}"\nversion = "{version}"\ndescription = "shots"\nkind = "dataset"\n'
            '[dataset]\ntask = "classification"\nclasses = ["cat"]\nsplits = { train = 1 }\n')


def publish_dataset(client: httpx.Client, name: str, version: str = "1.0.0", *,
                    private: bool | None = None) -> httpx.Response:
    coco = json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 1, "height": 1}],
                       "annotations": [{"image_id": 1, "category_id": 1}],
                       "categories": [{"id": 1, "name": "cat"}]}).encode()
    return publish(client, name, version, manifest_text=dataset_text(name, version), private=private,
                   files={"annotations/train.json": coco, "images/train/a.png": b"\x89PNG"})


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def lineage_row(hub: LiveHub, name: str, version: str) -> dict[str, Any] | None:
    """The version's ``version_lineage`` row, its ids spelled as ``name@version``."""
    with session_scope(hub.context.engine) as session:
        package = session.exec(select(Package).where(Package.full_name == name)).one()
        row = session.exec(select(Version).where(Version.package_id == package.id, Version.version == version)).one()
        lin = session.get(VersionLineage, row.id)
        if lin is None:
            return None

        def ref(version_id: int | None) -> str | None:
            if version_id is None:
                return None
            v = session.get(Version, version_id)
            assert v is not None
            p = session.get(Package, v.package_id)
            assert p is not None
            return f"{p.full_name}@{v.version}"

        return {"base": f"{lin.base_package}@{lin.base_version}", "base_id": ref(lin.base_version_id),
                "dataset": f"{lin.dataset_package}@{lin.dataset_version}", "dataset_id": ref(lin.dataset_version_id)}


def lineage_rows(hub: LiveHub) -> int:
    with session_scope(hub.context.engine) as session:
        return len(session.exec(select(VersionLineage)).all())


@pytest.fixture
def seeded(hub: LiveHub, alice: httpx.Client) -> httpx.Client:
    """alice/lenet@1.0.0 (a model) and alice/shots@1.0.0 (a dataset)."""
    ok(publish_model(alice, "alice/lenet", metrics="accuracy = 0.41\nlatency_ms = 2.0"))
    ok(publish_dataset(alice, "alice/shots"))
    return alice


def test_a_fine_tune_is_published_with_its_lineage_recorded(hub: LiveHub, seeded: httpx.Client) -> None:
    alice = seeded
    doc = ok(publish_model(alice, "alice/lenet-ft", lineage=lineage_toml("alice/lenet@1.0.0", "alice/shots@1.0.0"),
                           metrics="accuracy = 0.93"))
    want = {"base": "alice/lenet@1.0.0", "dataset": "alice/shots@1.0.0", "trainer": "finetune",
            "hyperparameters": {"epochs": 3, "lr": 0.001}, "metrics": {"accuracy": 0.93},
            "base_metrics": {"accuracy": 0.41}, "device": "cpu", "seconds": 12.5}
    assert doc["lineage"] == want == doc["manifest"]["lineage"]
    assert hub.client().get("/api/v1/packages/alice/lenet-ft/versions/1.0.0").json()["lineage"] == want
    assert lineage_row(hub, "alice/lenet-ft", "1.0.0") == {
        "base": "alice/lenet@1.0.0", "base_id": "alice/lenet@1.0.0",
        "dataset": "alice/shots@1.0.0", "dataset_id": "alice/shots@1.0.0"}
    # A fine-tune published into the base's own package (a project's default target), and one
    # naming its base with build metadata: both recorded against the stored 1.0.0.
    ok(publish_model(alice, "alice/lenet", "1.1.0", lineage=lineage_toml("alice/lenet@1.0.0+cpu", "alice/shots@1.0.0")))
    assert lineage_row(hub, "alice/lenet", "1.1.0")["base_id"] == "alice/lenet@1.0.0"  # type: ignore[index]
    assert lineage_row(hub, "alice/lenet", "1.0.0") is None  # a plain version has no row
    base_doc = hub.client().get("/api/v1/packages/alice/lenet").json()
    assert base_doc["fine_tunes"] == 2 and hub.client().get("/api/v1/packages/alice/lenet-ft").json()["fine_tunes"] == 0
    assert hub.client().get("/api/v1/packages/alice/lenet/versions/1.0.0").json()["lineage"] is None


def _refused(hub: LiveHub, client: httpx.Client, r: httpx.Response, name: str) -> str:
    """Assert ``r`` is ``invalid_lineage`` and that nothing of ``name`` was stored; the message."""
    assert r.status_code == 422, r.text
    assert error_code(r) == "invalid_lineage"
    assert client.get(f"/api/v1/packages/{name}").status_code == 404
    return str(r.json()["error"]["message"])


#: (base, dataset, what the message says): each refused with ``invalid_lineage``.
WRONG = [
    ("alice/nothing@1.0.0", "alice/shots@1.0.0", ["lineage.base: no model version alice/nothing@1.0.0"]),
    ("alice/lenet@9.9.9", "alice/shots@1.0.0", ["lineage.base: no model version alice/lenet@9.9.9"]),
    ("alice/shots@1.0.0", "alice/shots@1.0.0", ["lineage.base: alice/shots@1.0.0 is a dataset, not a model"]),
    ("alice/lenet@1.0.0", "alice/lenet@1.0.0", ["lineage.dataset: alice/lenet@1.0.0 is a model, not a dataset"]),
    ("alice/shots@1.0.0", "alice/gone@2.0.0", ["lineage.base: alice/shots@1.0.0 is a dataset",
                                               "lineage.dataset: no dataset version alice/gone@2.0.0"]),
]


def test_a_lineage_naming_what_is_not_there_or_of_the_wrong_kind_is_refused(hub: LiveHub, seeded: httpx.Client
                                                                            ) -> None:
    for base, dataset, says in WRONG:  # one seeding for all the cases: each refusal writes nothing
        r = publish_model(seeded, "alice/ft", lineage=lineage_toml(base, dataset))
        message = _refused(hub, seeded, r, "alice/ft")
        for part in says:
            assert part in message, (base, dataset, message)
        # Into an existing package too: no version, no row, no change to the package.
        r = publish_model(seeded, "alice/lenet", "1.1.0", lineage=lineage_toml(base, dataset))
        assert r.status_code == 422 and error_code(r) == "invalid_lineage", (base, dataset, r.text)
    assert [v["version"] for v in seeded.get("/api/v1/packages/alice/lenet").json()["versions"]] == ["1.0.0"]
    assert lineage_rows(hub) == 0


def test_a_private_base_of_another_user_is_answered_like_an_absent_one(hub: LiveHub, seeded: httpx.Client,
                                                                         make_user: Any) -> None:
    bob = make_user("bob")
    ok(publish_model(bob, "bob/secret", private=True))
    ok(publish_dataset(bob, "bob/private-shots", private=True))
    alice = seeded

    def message(base: str, dataset: str) -> str:
        return _refused(hub, alice, publish_model(alice, "alice/ft", lineage=lineage_toml(base, dataset)), "alice/ft")

    private = message("bob/secret@1.0.0", "alice/shots@1.0.0")
    absent = message("bob/absent@1.0.0", "alice/shots@1.0.0")
    assert private.replace("bob/secret", "X") == absent.replace("bob/absent", "X")
    # Even of the wrong kind: a private dataset named as the base says nothing of its kind.
    assert message("bob/private-shots@1.0.0", "alice/shots@1.0.0").replace("bob/private-shots", "X") == \
        absent.replace("bob/absent", "X")
    assert message("alice/lenet@1.0.0", "bob/private-shots@1.0.0").replace("bob/private-shots", "X") == \
        message("alice/lenet@1.0.0", "bob/nope@1.0.0").replace("bob/nope", "X")
    # Bob may read his own: his public fine-tune of his private base is accepted, and names without granting.
    ok(publish_model(bob, "bob/open-ft", lineage=lineage_toml("bob/secret@1.0.0", "alice/shots@1.0.0")))
    anon = hub.client()
    assert anon.get("/api/v1/packages/bob/open-ft/versions/1.0.0").status_code == 200
    assert anon.get("/api/v1/packages/bob/secret").status_code == 404
    assert anon.get("/api/v1/packages/bob/secret/versions/1.0.0/files/solver.py").status_code == 404
    # A token that may not read bob/secret (publish to bob only... read nothing private) is refused too.
    narrow = hub.client(hub.create_user("carol", scopes="publish:carol"))
    r = publish_model(narrow, "carol/ft", lineage=lineage_toml("bob/secret@1.0.0", "alice/shots@1.0.0"))
    assert error_code(r) == "invalid_lineage"


#: (a malformed [lineage], the field the manifest rules name): each ``invalid_manifest``.
MALFORMED = [
    (lineage_toml("alice/lenet", "alice/shots@1.0.0"), "lineage.base"),
    (lineage_toml("alice/lenet@one", "alice/shots@1.0.0"), "lineage.base"),
    (lineage_toml("alice/lenet@1.0.0", "not a ref@1.0.0"), "lineage.dataset"),
    (lineage_toml("alice/ft@1.0.0", "alice/shots@1.0.0"), "lineage.base"),  # the version itself
    (lineage_toml("alice/lenet@1.0.0", "alice/shots@1.0.0", seconds="-1"), "lineage.seconds"),
    (lineage_toml("alice/lenet@1.0.0", "alice/shots@1.0.0", metrics='{ accuracy = "high" }'), "lineage.metrics"),
    (lineage_toml("alice/lenet@1.0.0", "alice/shots@1.0.0", owner='"me"'), "lineage.owner"),
]


def test_malformed_lineage_is_refused_by_the_manifest_rules(hub: LiveHub, seeded: httpx.Client) -> None:
    for lineage, field in MALFORMED:
        r = publish_model(seeded, "alice/ft", lineage=lineage)
        assert r.status_code == 422 and error_code(r) == "invalid_manifest", (field, r.text)
        assert field in [p["field"] for p in r.json()["error"]["details"]["problems"]], (field, r.text)
    assert lineage_rows(hub) == 0 and seeded.get("/api/v1/packages/alice/ft").status_code == 404


def test_only_a_model_version_records_a_lineage(hub: LiveHub, seeded: httpx.Client) -> None:
    text = dataset_text("alice/derived") + lineage_toml("alice/lenet@1.0.0", "alice/shots@1.0.0")
    coco = json.dumps({"images": [], "annotations": [], "categories": []}).encode()
    r = publish(seeded, "alice/derived", manifest_text=text,
                files={"annotations/train.json": coco, "images/train/a.png": b"\x89PNG"})
    assert "only a model version records a lineage" in _refused(hub, seeded, r, "alice/derived")


def test_a_lineage_is_immutable_and_goes_with_its_version(hub: LiveHub, seeded: httpx.Client,
                                                          make_user: Any) -> None:
    alice = seeded
    ok(publish_model(alice, "alice/lenet", "2.0.0"))
    ok(publish_model(alice, "alice/ft", lineage=lineage_toml("alice/lenet@1.0.0", "alice/shots@1.0.0")))
    before = lineage_row(hub, "alice/ft", "1.0.0")
    for other in (lineage_toml("alice/lenet@2.0.0", "alice/shots@1.0.0"), ""):
        r = publish_model(alice, "alice/ft", lineage=other)
        assert r.status_code == 409 and error_code(r) == "version_exists"
    assert lineage_row(hub, "alice/ft", "1.0.0") == before
    assert alice.get("/api/v1/packages/alice/ft/versions/1.0.0").json()["lineage"]["base"] == "alice/lenet@1.0.0"

    # An administrator takes the base down: the fine-tune stays, its base id empties; taking the
    # fine-tune down removes its row.
    admin = make_user("root", admin=True)
    assert admin.request("DELETE", "/api/v1/packages/alice/lenet/versions/1.0.0",
                         json={"reason": "legal"}).status_code == 200
    assert lineage_row(hub, "alice/ft", "1.0.0") == {**before, "base_id": None}  # type: ignore[dict-item]
    assert hub.client().get("/api/v1/packages/alice/lenet").json()["fine_tunes"] == 0
    assert admin.request("DELETE", "/api/v1/packages/alice/ft/versions/1.0.0",
                         json={"reason": "legal"}).status_code == 200
    assert lineage_rows(hub) == 0

"""The change feed: serials without gaps, in commit order, private names hidden, the serial header."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.helpers import error_code, publish


def _events(client, since=0, **params):  # type: ignore[no-untyped-def]
    r = client.get("/api/v1/changes", params={"since": since, **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_publish_yank_unyank_and_visibility_are_numbered_in_order(hub, alice):
    assert publish(alice, "alice/det", "1.0.0").status_code == 201
    assert publish(alice, "alice/det", "1.0.0").status_code == 409  # refused: takes no serial
    assert publish(alice, "alice/det", "1.1.0").status_code == 201
    assert alice.post("/api/v1/packages/alice/det/versions/1.0.0/yank", json={"reason": "broken"}).status_code == 200
    assert alice.post("/api/v1/packages/alice/det/versions/1.0.0/unyank", json={"reason": "fixed"}).status_code == 200
    assert alice.patch("/api/v1/packages/alice/det", json={"private": False}).status_code == 200  # no change: no event

    page = _events(alice)
    got = [(e["serial"], e["action"], e["package"], e["version"]) for e in page["events"]]
    assert got == [(1, "publish", "alice/det", "1.0.0"), (2, "publish", "alice/det", "1.1.0"),
                   (3, "yank", "alice/det", "1.0.0"), (4, "unyank", "alice/det", "1.0.0")]
    assert page["events"][2]["data"] == {"reason": "broken"}
    assert page["serial"] == page["next"] == 4 and page["more"] is False


def test_pages_follow_on_and_every_response_carries_the_serial(hub, alice):
    for v in range(5):
        assert publish(alice, "alice/det", f"1.{v}.0").status_code == 201
    first = _events(alice, limit=2)
    assert [e["serial"] for e in first["events"]] == [1, 2] and first["more"] is True
    second = _events(alice, since=first["next"], limit=2)
    assert [e["serial"] for e in second["events"]] == [3, 4]
    rest = _events(alice, since=second["next"])
    assert [e["serial"] for e in rest["events"]] == [5] and rest["more"] is False
    assert _events(alice, since=99)["events"] == []

    # A write answers with the serial that includes it; reads on any route carry it too.
    r = publish(alice, "alice/det", "2.0.0")
    assert r.headers["x-cvflow-serial"] == "6"
    for path in ("/healthz", "/api/v1/packages/alice/det", "/api/v1/packages/nobody/none"):
        assert hub.client().get(path).headers["x-cvflow-serial"] == "6", path


def test_bad_parameters_are_refused(hub):
    client = hub.client()
    for params in ({"since": "x"}, {"since": -1}, {"limit": 0}, {"limit": 1001}):
        r = client.get("/api/v1/changes", params=params)
        assert r.status_code == 422 and error_code(r) == "invalid_field", params


def test_changes_to_private_packages_are_hidden_but_keep_their_serials(hub, alice, make_user):
    assert publish(alice, "alice/open", "1.0.0").status_code == 201
    assert publish(alice, "alice/secret", "1.0.0", private=True).status_code == 201
    assert publish(alice, "alice/open", "1.1.0").status_code == 201

    anonymous = _events(hub.client())["events"]
    assert [e["serial"] for e in anonymous] == [1, 2, 3]
    assert anonymous[1] == {"serial": 2, "action": "hidden"}
    assert "secret" not in str(anonymous)
    assert _events(make_user("bob"))["events"][1] == {"serial": 2, "action": "hidden"}
    assert _events(alice)["events"][1]["package"] == "alice/secret"

    # Made public, the package's history shows, and the change itself is an event.
    assert alice.patch("/api/v1/packages/alice/secret", json={"private": False}).status_code == 200
    events = _events(hub.client())["events"]
    assert events[1]["package"] == "alice/secret" and events[3]["action"] == "public"
    # A publish that makes it private again says so too (and hides the package's history once more).
    assert publish(alice, "alice/secret", "1.1.0", private=True).status_code == 201
    assert [e["action"] for e in _events(alice)["events"][-2:]] == ["publish", "private"]
    assert _events(hub.client())["events"][1] == {"serial": 2, "action": "hidden"}


def test_concurrent_publishers_get_serials_without_gaps(hub, make_user):
    clients = [make_user(f"user{i}") for i in range(4)]

    def work(i: int) -> int:
        return sum(publish(clients[i], f"user{i}/pkg", f"1.{n}.0").status_code == 201 for n in range(5))

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(work, range(4))) == 20
    serials = [e["serial"] for e in _events(hub.client())["events"]]
    assert serials == list(range(1, 21))


def test_the_migration_gives_versions_published_before_it_their_events(make_settings):
    from alembic import command
    from sqlmodel import Session, select

    from hub import db
    from hub.models import ChangeEvent
    from tests.conftest import start_hub

    live, server = start_hub(make_settings("sqlite-file"))
    try:
        alice = live.user_client("alice")
        for v in ("1.0.0", "1.1.0"):
            assert publish(alice, "alice/old", v).status_code == 201
        assert alice.post("/api/v1/packages/alice/old/versions/1.0.0/yank", json={"reason": "x"}).status_code == 200
        alice.close()
    finally:
        server.__exit__()
    cfg = db.alembic_config(live.context.settings.database_url)
    command.downgrade(cfg, "0003")
    command.upgrade(cfg, "head")
    with Session(live.context.engine) as session:
        events = session.exec(select(ChangeEvent).order_by(ChangeEvent.serial)).all()  # type: ignore[arg-type]
        assert [(e.serial, e.action, e.version) for e in events] == [
            (1, "publish", "1.0.0"), (2, "publish", "1.1.0"), (3, "yank", "1.0.0")]
        from hub.mirror.feed import current_serial

        assert current_serial(session) == 3
    live.context.engine.dispose()

"""Sign-in limits: one budget for the API and the website, shared by replicas, in the database or
in Redis, that made-up names cannot flush; and argon2 hashes upgraded when the cost changes.

Every hub here is a real server on a loopback port over the ``hub`` fixture's database (both
backends). Servers that must see several client addresses run uvicorn with proxy headers, as a
hub behind a reverse proxy does, and tests name the address in ``X-Forwarded-For``. Redis is the
real server at 127.0.0.1:6379; those tests skip only when it cannot be reached.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from sqlmodel import select

from hub.app import create_app
from hub.context import build_context
from hub.db import session_scope
from hub.models import LoginThrottle, Token, User
from hub.services import throttle
from hub.settings import Settings
from tests.conftest import ServerThread
from tests.helpers import PASSWORD, LiveHub, error_code
from tests.web.support import HTML, sign_in

REDIS_URL = "redis://127.0.0.1:6379/0"


class ProxiedServer(ServerThread):
    """A hub replica behind a (pretend) reverse proxy: the client address comes from X-Forwarded-For."""

    def __init__(self, app: object) -> None:
        super().__init__(app)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                proxy_headers=True, forwarded_allow_ips="127.0.0.1")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture
def replicas(hub: LiveHub) -> Iterator[Any]:
    """``replicas(n, **settings)``: n hub replicas on the ``hub`` fixture's database, each with
    its own engine, hasher and limiter object, built from settings with ``settings`` changed."""
    started: list[tuple[ServerThread, Any, LiveHub]] = []

    def make(n: int = 1, **changes: Any) -> list[LiveHub]:
        settings = dataclasses.replace(hub.context.settings, **changes)
        out = []
        for _ in range(n):
            context = build_context(settings)
            server = ProxiedServer(create_app(settings, context=context)).__enter__()
            live = LiveHub(f"http://127.0.0.1:{server.port}", context)
            started.append((server, context, live))
            out.append(live)
        return out

    yield make
    for server, context, live in started:
        live.close_clients()
        server.__exit__()
        context.engine.dispose()


def api_login(live: LiveHub, name: str, password: str, address: str = "10.0.0.1") -> httpx.Response:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        return client.post("/api/v1/auth/login", json={"username": name, "password": password},
                           headers={"x-forwarded-for": address})


def web_login(live: LiveHub, name: str, password: str, address: str = "10.0.0.1") -> httpx.Response:
    with httpx.Client(base_url=live.url, headers={**HTML, "x-forwarded-for": address}, timeout=30) as client:
        return sign_in(client, name, password)


def assert_refused(r: httpx.Response, *, page: bool = False) -> int:
    """A 429 with a whole number of seconds in Retry-After; returns them."""
    assert r.status_code == 429, r.text
    retry_after = int(r.headers["retry-after"])
    assert retry_after >= 1
    if page:
        assert "Too many sign-in attempts" in r.text
    else:
        assert error_code(r) == "too_many_attempts"
        assert r.json()["error"]["details"]["retry_after"] == retry_after
    return retry_after


def tokens_of(hub: LiveHub, name: str) -> int:
    with session_scope(hub.context.engine) as session:
        user = session.exec(select(User).where(User.name == name)).one()
        return len(session.exec(select(Token).where(Token.user_id == user.id)).all())


def stored_hash(hub: LiveHub, name: str) -> str:
    with session_scope(hub.context.engine) as session:
        return str(session.exec(select(User).where(User.name == name)).one().password_hash)


# --- one budget ------------------------------------------------------------------------------


def test_the_api_and_the_website_share_one_budget(hub: LiveHub, replicas) -> None:  # type: ignore[no-untyped-def]
    hub.create_user("alice")
    (site,) = replicas(login_rate_limit=4)
    before = tokens_of(hub, "alice")
    assert api_login(site, "alice", "wrong password 1").status_code == 401
    assert api_login(site, "alice", "wrong password 2").status_code == 401
    assert web_login(site, "alice", "wrong password 3").status_code == 401
    assert web_login(site, "alice", "wrong password 4").status_code == 401
    # Four failures in all: now even the right password is refused, on both, and nothing is issued.
    assert_refused(api_login(site, "alice", PASSWORD))
    assert_refused(web_login(site, "alice", PASSWORD), page=True)
    assert tokens_of(hub, "alice") == before


def test_replicas_share_one_budget(hub: LiveHub, replicas) -> None:  # type: ignore[no-untyped-def]
    hub.create_user("alice")
    one, two = replicas(2, login_rate_limit=4)
    for i, replica in enumerate((one, two, one, two)):
        assert api_login(replica, "alice", f"wrong password {i}", address=f"10.0.1.{i}").status_code == 401
    # Each replica saw two failures, from four addresses: the name's budget is spent on both.
    assert_refused(api_login(one, "alice", PASSWORD, address="10.0.2.1"))
    assert_refused(web_login(two, "alice", PASSWORD, address="10.0.2.2"), page=True)
    # Another user from an address that has not failed is not affected.
    hub.create_user("bob")
    assert api_login(two, "bob", PASSWORD, address="10.0.2.3").status_code == 201


def test_parallel_guesses_over_two_replicas_get_exactly_the_budget(hub: LiveHub, replicas) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    hub.create_user("alice")
    one, two = replicas(2, login_rate_limit=5)
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda i: api_login(one if i % 2 else two, "alice", f"guess {i}",
                                                    address=f"10.0.7.{i}").status_code, range(24)))
    # Each attempt is charged before its password is checked, in one transaction with the check
    # of the budget: however they interleave, five guesses are tried and the rest refused.
    assert sorted(answers) == [401] * 5 + [429] * 19


def test_only_failures_count(hub: LiveHub, replicas) -> None:  # type: ignore[no-untyped-def]
    hub.create_user("alice")
    (site,) = replicas(login_rate_limit=2)
    for _ in range(5):
        assert api_login(site, "alice", PASSWORD).status_code == 201
        assert web_login(site, "alice", PASSWORD).status_code == 303
    assert api_login(site, "alice", "wrong password").status_code == 401
    assert web_login(site, "alice", "wrong password").status_code == 401
    assert_refused(api_login(site, "alice", PASSWORD))


def test_one_address_is_limited_whatever_names_it_tries(hub: LiveHub, replicas) -> None:  # type: ignore[no-untyped-def]
    hub.create_user("alice")
    (site,) = replicas(login_rate_limit=3)
    for i in range(3):
        assert api_login(site, f"made-up-{i}", "whatever!", address="10.0.3.1").status_code == 401
    assert_refused(api_login(site, "made-up-x", "whatever!", address="10.0.3.1"))
    assert_refused(web_login(site, "alice", PASSWORD, address="10.0.3.1"), page=True)
    # IPv6 addresses count by their /64: another address in it is the same client.
    for i in range(3):
        assert api_login(site, f"v6-{i}", "whatever!", address=f"2001:db8:1:2::{i + 1}").status_code == 401
    assert_refused(api_login(site, "v6-x", "whatever!", address="2001:db8:1:2:ffff::9"))
    # Refused attempts charged nothing: alice still has her whole budget from elsewhere.
    assert api_login(site, "alice", PASSWORD, address="10.0.3.2").status_code == 201


def test_retry_after_says_when_one_more_attempt_is_allowed(hub: LiveHub, replicas) -> None:  # type: ignore[no-untyped-def]
    hub.create_user("alice")
    (site,) = replicas(login_rate_limit=3, login_rate_window=30.0)
    for _ in range(3):
        assert api_login(site, "alice", "wrong password").status_code == 401
    # One attempt comes back every 30/3 = 10 seconds.
    assert 8 <= assert_refused(api_login(site, "alice", PASSWORD)) <= 10


# --- bounded memory that a flood of made-up names cannot empty ------------------------------


def test_made_up_names_from_many_addresses_do_not_reset_a_real_name(hub: LiveHub, replicas) -> None:  # type: ignore[no-untyped-def]
    hub.create_user("alice")
    site, other = replicas(2, login_rate_limit=3, login_throttle_max_keys=40)
    for _ in range(3):
        assert api_login(site, "alice", "wrong password", address="10.0.4.1").status_code == 401
    assert_refused(api_login(site, "alice", PASSWORD, address="10.0.4.2"))
    # A flood over both replicas: 150 made-up names from 150 addresses, 300 buckets for a cap of 40.
    for i in range(150):
        r = api_login(other if i % 2 else site, f"nobody-{i}", "whatever!", address=f"10.5.{i // 200}.{i % 200}")
        assert r.status_code == 401
    with session_scope(hub.context.engine) as session:
        keys = set(session.exec(select(LoginThrottle.key)).all())
    assert len(keys) == 40  # bounded (a sweep runs after each attempt), and never emptied
    assert {"user:alice", "ip:10.0.4.1"} <= keys  # the fullest buckets are the last to go
    assert_refused(api_login(site, "alice", PASSWORD, address="10.0.4.3"))
    assert_refused(web_login(other, "alice", PASSWORD, address="10.0.4.4"), page=True)


def test_buckets_expire_one_by_one(hub: LiveHub) -> None:
    now = [1_000_000.0]
    limits = throttle.DatabaseThrottle(hub.context.engine, limit=2, period=60, max_keys=1000, clock=lambda: now[0])
    assert limits.attempt(["user:a", "ip:1"]).allowed
    now[0] += 20
    assert limits.attempt(["user:b", "ip:2"]).allowed
    assert _db_keys(hub) == {"user:a", "ip:1", "user:b", "ip:2"}
    now[0] += 15  # a's buckets (30 s of debt) are empty again; b's are not
    assert limits.attempt(["user:c", "ip:3"]).allowed
    assert _db_keys(hub) == {"user:b", "ip:2", "user:c", "ip:3"}


def test_retry_after_is_exact(hub: LiveHub) -> None:
    now = [1_000_000.0]
    limits = throttle.DatabaseThrottle(hub.context.engine, limit=4, period=60, max_keys=1000, clock=lambda: now[0])
    _spend_and_wait(limits, now)


def _spend_and_wait(limits: Any, now: list[float]) -> None:
    keys = throttle.login_keys("Alice ", "192.0.2.1")
    assert keys == ("user:alice", "ip:192.0.2.1")
    for _ in range(4):
        assert limits.attempt(keys).allowed
    verdict = limits.attempt(keys)
    assert not verdict.allowed and verdict.retry_after == 15  # one attempt back every 60/4 s
    now[0] += 14
    assert not limits.attempt(keys).allowed
    now[0] += 1
    assert limits.attempt(keys).allowed
    assert not limits.attempt(keys).allowed
    limits.refund(keys)  # the password was right: the attempt is given back
    assert limits.attempt(keys).allowed
    # Refused attempts are not charged: waiting 15 s is enough however often one tried.
    for _ in range(10):
        assert not limits.attempt(keys).allowed
    now[0] += 15
    assert limits.attempt(keys).allowed


def _db_keys(hub: LiveHub) -> set[str]:
    with hub.context.engine.connect() as conn:
        return set(conn.execute(sa.select(LoginThrottle.__table__.c.key)).scalars())  # type: ignore[attr-defined]


# --- Redis -----------------------------------------------------------------------------------


@pytest.fixture
def redis_client() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    _clear_redis(client)
    yield client
    _clear_redis(client)
    client.close()


def _clear_redis(client: Any, prefix: str = "{cvflow-login}:") -> None:
    for key in client.scan_iter(match=prefix.replace("{", "[{]").replace("}", "[}]") + "*"):
        client.delete(key)


def test_redis_replicas_share_one_budget_and_the_database_holds_none(hub: LiveHub, replicas,  # type: ignore[no-untyped-def]
                                                                    redis_client: Any) -> None:
    hub.create_user("alice")
    one, two = replicas(2, login_rate_limit=3, redis_url=REDIS_URL)
    assert api_login(one, "alice", "wrong password").status_code == 401
    assert web_login(two, "alice", "wrong password").status_code == 401
    assert api_login(two, "alice", "wrong password").status_code == 401
    assert_refused(web_login(one, "alice", PASSWORD, address="10.0.6.1"), page=True)
    assert_refused(api_login(two, "alice", PASSWORD, address="10.0.6.2"))
    assert _db_keys(hub) == set()
    ttl = redis_client.pttl("{cvflow-login}:user:alice")
    assert 0 < ttl <= 300_000  # each bucket expires on its own


def test_redis_buckets_are_capped_emptiest_first(redis_client: Any) -> None:
    now = [1_000_000.0]
    prefix = f"{{cvflow-login-test-{uuid.uuid4().hex[:8]}}}:"
    limits = throttle.RedisThrottle(redis_client, limit=3, period=300, max_keys=20, prefix=prefix,
                                    clock=lambda: now[0])
    try:
        for _ in range(3):
            assert limits.attempt(["user:alice", "ip:10.0.0.1"]).allowed
        for i in range(100):
            now[0] += 0.01
            assert limits.attempt([f"user:nobody-{i}", f"ip:10.1.0.{i}"]).allowed
        keys = {k.decode() for k in redis_client.scan_iter(match=prefix.replace("{", "[{]").replace("}", "[}]") + "*")}
        assert len(keys) == 20 + 1  # the cap, plus the index
        assert {prefix + "user:alice", prefix + "ip:10.0.0.1"} <= keys
        assert not limits.attempt(["user:alice", "ip:10.9.9.9"]).allowed
    finally:
        _clear_redis(redis_client, prefix)


def test_redis_retry_after_is_exact(redis_client: Any) -> None:
    now = [1_000_000.0]
    prefix = f"{{cvflow-login-test-{uuid.uuid4().hex[:8]}}}:"
    limits = throttle.RedisThrottle(redis_client, limit=4, period=60, max_keys=1000, prefix=prefix,
                                    clock=lambda: now[0])
    try:
        _spend_and_wait(limits, now)
    finally:
        _clear_redis(redis_client, prefix)


def test_sign_in_fails_closed_when_redis_is_down(hub: LiveHub, replicas) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    hub.create_user("alice")
    # A real connection to a port nothing listens on: refused at once.
    (site,) = replicas(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    r = api_login(site, "alice", PASSWORD)
    assert r.status_code == 503 and error_code(r) == "limiter_unavailable"
    page = web_login(site, "alice", PASSWORD)
    assert page.status_code == 503 and "Sign out" not in page.text


# --- argon2 cost ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["api", "website"])
def test_a_changed_argon2_cost_rehashes_at_sign_in(hub: LiveHub, replicas, how: str) -> None:  # type: ignore[no-untyped-def]
    hub.create_user("alice")
    old = stored_hash(hub, "alice")
    settings: Settings = hub.context.settings
    assert f"m={settings.argon2_memory_cost},t={settings.argon2_time_cost}," in old
    login = api_login if how == "api" else web_login
    ok = 201 if how == "api" else 303

    (same,) = replicas()
    assert login(same, "alice", PASSWORD).status_code == ok
    assert stored_hash(hub, "alice") == old  # the cost did not change: the hash is kept

    (stronger,) = replicas(argon2_time_cost=2, argon2_memory_cost=2048)
    assert login(stronger, "alice", "wrong password").status_code == 401
    assert stored_hash(hub, "alice") == old  # a wrong password changes nothing
    assert login(stronger, "alice", PASSWORD).status_code == ok
    new = stored_hash(hub, "alice")
    assert new != old and "m=2048,t=2," in new
    # The new hash is the same password: signing in again works, on either cost.
    assert login(stronger, "alice", PASSWORD).status_code == ok
    assert stored_hash(hub, "alice") == new
    assert login(same, "alice", PASSWORD).status_code == ok
    assert f"m={settings.argon2_memory_cost},t={settings.argon2_time_cost}," in stored_hash(hub, "alice")

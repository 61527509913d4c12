"""One unit of work per request: a request's reads and writes are one transaction (hub.context.in_session).

Each request below is sent over a real socket to the live hub (both backends) while the hub's own
engine counts the transactions it begins. A request may begin at most two: the caller's identity
(the API token's or the website session's, resolved before the handler) and the handler's one
unit of work. Before the unit of work, the git form's refusal took three (user, register, listing),
the tokens page's POST three, and a manifest download two.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import sqlalchemy as sa

from hub.context import DownloadCounter
from tests.helpers import LiveHub, publish
from tests.web.support import browser, csrf, sign_in

_lock = threading.Lock()


@contextmanager
def transactions(hub: LiveHub) -> Iterator[list[int]]:
    """Counts the transactions the hub's engine begins (writers share the engine's events).

    The ``X-CVFlow-Serial`` header's one-row read (``hub.mirror.middleware``: after a write, and
    at most once a second otherwise) is the middleware's, not the request's work: not counted.
    Nor is a batch of download counts, which the counter's own thread writes every second for
    every download since the last (``hub.context.DownloadCounter``), whichever request is running.
    """
    statements: list[list[str]] = []

    def begin(conn: sa.Connection) -> None:
        if threading.current_thread().name == DownloadCounter.thread_name:
            return
        with _lock:
            conn.info["uow_test"] = mine = []
            statements.append(mine)

    def execute(conn: sa.Connection, cursor: object, statement: str, *args: object) -> None:
        if "uow_test" in conn.info and not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            conn.info["uow_test"].append(statement)

    def end(conn: sa.Connection) -> None:
        conn.info.pop("uow_test", None)

    engine = hub.context.engine
    events = [("begin", begin), ("before_cursor_execute", execute), ("commit", end), ("rollback", end)]
    for name, fn in events:
        sa.event.listen(engine, name, fn)
    begun = [0]
    try:
        yield begun
    finally:
        for name, fn in events:
            sa.event.remove(engine, name, fn)
        begun[0] = sum(1 for sql in statements if not all("feed_counter" in s for s in sql))


def at_most(hub: LiveHub, limit: int, send: Callable[[], httpx.Response], status: int) -> None:
    with transactions(hub) as begun:
        r = send()
    where = f"{r.request.method} {r.request.url.path}"
    assert r.status_code == status, f"{where}: {r.text[:500]}"
    assert begun[0] <= limit, f"{where}: {begun[0]} transactions for one request (at most {limit})"


@pytest.fixture
def world(hub: LiveHub) -> tuple[httpx.Client, httpx.Client]:
    """alice's API client, with alice/detector@1.0.0 published, and her signed-in browser."""
    api = hub.user_client("alice")
    assert publish(api, "alice/detector", "1.0.0").status_code == 201
    web = browser(hub)
    assert sign_in(web, "alice").status_code == 303
    return api, web


def test_api_requests_are_one_unit_of_work(hub: LiveHub, world) -> None:  # type: ignore[no-untyped-def]
    api, _ = world
    anonymous = hub.client()
    pkg = "/api/v1/packages/alice/detector"
    cases: list[tuple[int, Callable[[], httpx.Response], int]] = [
        # a counted download: the lookup alone (the count is written later, in a batch)
        (1, lambda: anonymous.get(f"{pkg}/versions/1.0.0/files/cvflow.toml"), 200),
        (1, lambda: anonymous.get(f"{pkg}/versions/1.0.0/files/cvflow.toml",
                                  headers={"if-none-match": "*"}), 304),
        (1, lambda: anonymous.get(f"{pkg}/versions/1.0.0"), 200),
        (1, lambda: anonymous.get("/api/v1/packages", params={"q": "detector"}), 200),
        (2, lambda: api.get(pkg), 200),
        (2, lambda: api.get(f"{pkg}/downloads"), 200),
        (2, lambda: api.post(f"{pkg}/versions/1.0.0/yank", json={"reason": "broken"}), 200),
        (2, lambda: api.post("/api/v1/tokens", json={"scopes": ["read"], "name": "ci"}), 201),
        (2, lambda: api.post("/api/v1/orgs", json={"name": "vision-lab"}), 201),
        (2, lambda: api.put("/api/v1/orgs/vision-lab/members/alice", json={"role": "owner"}), 200),
        (2, lambda: api.post(f"{pkg}/versions/9.9.9/yank", json={"reason": "x"}), 404),
    ]
    for limit, send, status in cases:
        at_most(hub, limit, send, status)


def test_the_git_form_reads_and_writes_in_one_unit_of_work(hub: LiveHub, world) -> None:  # type: ignore[no-untyped-def]
    _, web = world
    page = web.get("/publish/git")
    data = {"csrf_token": csrf(page.text), "url": "https://example.org/alice/detector.git", "namespace": "nobody-here",
            "subdir": "", "tag_pattern": "", "branch_pattern": ""}
    # Refused: the form comes back with the visitor's repositories, read in the same transaction.
    at_most(hub, 2, lambda: web.post("/publish/git", data=data), 400)
    at_most(hub, 2, lambda: web.get("/publish/git"), 200)


def test_the_tokens_page_changes_and_lists_in_one_unit_of_work(hub: LiveHub, world) -> None:  # type: ignore[no-untyped-def]
    _, web = world
    token = csrf(web.get("/settings/tokens").text)
    at_most(hub, 2, lambda: web.post("/settings/tokens", data={"csrf_token": token, "name": "laptop",
                                                               "scopes": ["read"]}), 200)
    # A refused change is undone, and the page still lists the tokens from the same transaction.
    refused = {"csrf_token": token, "action": "revoke", "token_id": "999999"}
    with transactions(hub) as begun:
        r = web.post("/settings/tokens", data=refused)
    assert r.status_code == 400 and begun[0] <= 2
    assert re.search(r"laptop", r.text)

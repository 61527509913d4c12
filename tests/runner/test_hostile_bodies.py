"""The runner refuses JSON bodies nested 100,000 deep with ``400 too_deep``, on every route that
reads JSON (its own infer route and KServe v2's), over real HTTP to the real ``qa/probe`` venv,
and keeps answering afterwards. The ``cvflow.toml`` it loads is read with the same bound."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.client_e2e._publish_helpers import run_cli
from tests.runner._images import png

DEEP = 100_000
BODIES = {
    "arrays": b"[" * DEEP + b"]" * DEEP,
    "objects-unterminated": b'{"a":' * DEEP,
    "inside-an-input": b'{"inputs": [{"name": "text", "data": ' + b"[" * DEEP + b"]" * DEEP + b"}]}",
}
ROUTES = ["/solvers/inspect/infer", "/v2/models/inspect/infer"]


@pytest.fixture(scope="module")
def runner(env) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    result = run_cli(env, "run", "qa/probe:inspect", "--name", "hostile", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    with httpx.Client(base_url=record["url"], timeout=30) as client:
        yield client
    assert run_cli(env, "stop", "hostile").exit_code == 0


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("shape", sorted(BODIES))
def test_a_json_body_nested_100000_deep_is_refused(runner, route, shape):
    r = runner.post(route, content=BODIES[shape], headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    error = r.json()["error"]
    if route.startswith("/v2/"):  # KServe v2's error body is one string: "code: message"
        assert error.startswith("too_deep: ") and "64 levels" in error, error
    else:
        assert error["code"] == "too_deep" and "64 levels" in error["message"], error
    assert runner.get("/healthz").status_code == 200


def test_the_runner_still_infers_after_hostile_bodies(runner):
    for route in ROUTES:
        runner.post(route, content=BODIES["arrays"], headers={"content-type": "application/json"})
    image = base64.b64encode(png(4, 3, b"\xff\x00\x00", color=True)).decode()
    r = runner.post("/solvers/inspect/infer", json={"image": image, "count": 3})
    assert r.status_code == 200, r.text
    assert r.json()["size"] == [4, 3] and r.json()["count"] == 3

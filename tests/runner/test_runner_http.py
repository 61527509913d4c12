"""The runner over real HTTP, in the real venv of ``qa/probe`` that ``cvflow run`` installs:
typed inputs in every encoding, 4xx codes for bad input, 500 for solver failures, batching,
the OpenAPI document, the KServe v2 routes, and URLs only from allowed prefixes."""

from __future__ import annotations

import base64
import http.server
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from tests.client_e2e._publish_helpers import run_cli
from tests.runner._images import png

RED = png(4, 3, b"\xff\x00\x00", color=True)


class _Files(http.server.BaseHTTPRequestHandler):
    """/ok/red.png: an image; /ok/hop: a redirect out of the allowed prefix; /other/red.png: not allowed."""

    def do_GET(self) -> None:
        if self.path == "/ok/hop":
            self.send_response(302)
            self.send_header("Location", "/other/red.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path in ("/ok/red.png", "/other/red.png"):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(RED)))
            self.end_headers()
            self.wfile.write(RED)
            return
        self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def probe(env, files) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    result = run_cli(env, "run", "qa/probe:inspect,fail,batched", "--name", "probe", "--json",
                     "--env", "PROBE_ENV=hello", "--allow-url", f"{files}/ok/",
                     "--max-image-mb", "0.5", "--max-image-pixels", "1000000", "--max-request-mb", "1")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    with httpx.Client(base_url=record["url"], timeout=30) as client:
        yield client
    assert run_cli(env, "stop", "probe").exit_code == 0


def error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code and body["message"], body
    return body  # type: ignore[no-any-return]


def test_every_input_type_from_multipart_json_raw_body_and_query(probe):
    r = probe.post("/solvers/inspect/infer",
                   files=[("image", ("a.png", RED, "image/png")), ("extra", ("b.png", png(2, 2), "image/png")),
                          ("extra", ("c.png", png(5, 1), "image/png"))],
                   data={"count": "3", "scale": "0.5", "label": "hi", "mode": "exact", "color": "green",
                         "flag": "true"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["size"] == [4, 3] and got["format"] == "PNG" and got["corner"] == [255, 0, 0]
    assert got["extra"] == [[2, 2], [5, 1]]
    assert (got["count"], got["scale"], got["label"], got["choice"], got["color"], got["flag"]) == (
        3, 0.5, "hi", "exact", "green", True)
    # The runner's settings, environment and context.
    assert got["settings"] == {"PROBE_ENV": "hello"} and got["env"] == "hello"
    assert got["device"] == "cpu" and got["package"] == "qa/probe" and got["solver"] == "inspect"
    assert got["cwd"] == got["package_dir"]

    # JSON: base64, a data: URL; defaults fill what is left out.
    b64 = base64.b64encode(RED).decode()
    r = probe.post("/solvers/inspect/infer", json={"image": b64, "extra": [f"data:image/png;base64,{b64}"],
                                                   "count": 0, "scale": 2, "flag": False})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["size"], got["extra"], got["count"], got["scale"], got["label"], got["choice"], got["color"]) == (
        [4, 3], [[4, 3]], 0, 2.0, "x", "fast", "red")

    # The raw image as the body, the other inputs in the query string.
    r = probe.post("/solvers/inspect/infer?count=7&mode=fast", content=RED, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["size"] == [4, 3] and r.json()["count"] == 7


def test_bad_input_gets_4xx_with_a_stable_code_and_the_runner_stays_up(probe):
    post = probe.post
    image = {"image": ("a.png", RED, "image/png")}
    e = error(post("/solvers/inspect/infer", files={"image": ("notes.txt", b"hello, not an image", "text/plain")}),
              400, "not_an_image")
    assert e["details"] == {"field": "image"} and "notes.txt is not an image" in e["message"]
    error(post("/solvers/inspect/infer", files={"image": ("cut.png", RED[:40], "image/png")}), 400, "not_an_image")
    big = b"\x89PNG\r\n\x1a\n" + os.urandom(600_000)  # over --max-image-mb 0.5
    assert "the limit is 524288" in error(post("/solvers/inspect/infer", files={"image": ("big.png", big)}),
                                          413, "image_too_large")["message"]
    wide = png(1500, 1000)  # 1.5 megapixels, a few kB: over --max-image-pixels 1000000 before decoding
    assert "1500x1000" in error(post("/solvers/inspect/infer", files={"image": ("w.png", wide)}),
                                413, "image_too_large")["message"]
    error(post("/solvers/inspect/infer", content=os.urandom(1_200_000), headers={"content-type": "image/png"}),
          413, "request_too_large")

    # Fields: unknown, missing, wrong type, out of range, not a choice, a value where a file goes.
    e = error(post("/solvers/inspect/infer", files=image, data={"colour": "red"}), 422, "unknown_field")
    assert e["details"] == {"field": "colour"} and "its inputs: image, extra, count" in e["message"]
    assert error(post("/solvers/inspect/infer", data={"count": "1"}), 422, "missing_field")["details"] == {
        "field": "image"}
    error(post("/solvers/inspect/infer", files=image, data={"count": "three"}), 422, "invalid_field")
    assert "must be <= 10" in error(post("/solvers/inspect/infer", files=image, data={"count": "11"}),
                                    422, "invalid_field")["message"]
    assert "'fast', 'exact'" in error(post("/solvers/inspect/infer", files=image, data={"mode": "slow"}),
                                      422, "invalid_field")["message"]
    assert "'red', 'green'" in error(post("/solvers/inspect/infer", json={"image": base64.b64encode(RED).decode(),
                                                                         "color": "blue"}),
                                     422, "invalid_field")["message"]
    error(post("/solvers/inspect/infer", files=image, data={"label": "far too long"}), 422, "invalid_field")
    error(post("/solvers/inspect/infer", data={"image": "text"}, files={"extra": ("b.png", RED)}), 422, "invalid_field")
    error(post("/solvers/inspect/infer", json={"image": base64.b64encode(RED).decode(), "count": True}),
          422, "invalid_field")
    error(post("/solvers/inspect/infer", json={"image": 5}), 422, "invalid_field")
    error(post("/solvers/inspect/infer", json={"image": "%%%not base64%%%"}), 400, "invalid_base64")
    error(post("/solvers/inspect/infer", content=b"{nope", headers={"content-type": "application/json"}),
          400, "invalid_json")
    error(post("/solvers/inspect/infer", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data;"
                                                                                        " boundary=x"}),
          400, "invalid_multipart")
    error(post("/solvers/inspect/infer", content=b"a,b", headers={"content-type": "text/csv"}),
          415, "unsupported_media_type")

    # Routes.
    e = error(post("/solvers/nope/infer", files=image), 404, "solver_not_found")
    assert "this runner serves: inspect, fail, batched" in e["message"]
    error(post("/solvers/broken/infer", files=image), 404, "solver_not_found")  # in the package, not served
    error(probe.get("/solvers/inspect/infer"), 405, "method_not_allowed")
    error(probe.get("/nowhere"), 404, "not_found")

    assert probe.get("/healthz").json() == {"status": "ok"}
    assert post("/solvers/inspect/infer", files=image).status_code == 200


def test_solver_exceptions_are_500_with_their_message_and_the_runner_stays_up(probe):
    e = error(probe.post("/solvers/fail/infer", json={"how": "raise"}), 500, "solver_error")
    assert e["message"] == "RuntimeError: kaboom: the solver failed on purpose"
    assert e["details"] == {"type": "RuntimeError"}
    e = error(probe.post("/solvers/fail/infer", json={"how": "input"}), 422, "invalid_input")
    assert e["message"] == "how: refused on purpose" and e["details"] == {"field": "how"}
    assert "not JSON" in error(probe.post("/solvers/fail/infer", json={"how": "nan"}), 500, "invalid_result")["message"]
    error(probe.post("/solvers/fail/infer", data={"how": "object"}), 500, "invalid_result")
    for _ in range(3):
        assert probe.post("/solvers/fail/infer", json={"how": "ok"}).json() == {"ok": True}
    stats = {s["name"]: s["stats"] for s in probe.get("/").json()["solvers"]}
    assert stats["fail"]["errors"] == 1 and stats["fail"]["requests"] == 7


def test_concurrent_calls_are_batched_and_a_failing_batch_fails_only_its_bad_call(probe):
    def call(n: int) -> httpx.Response:
        return probe.post("/solvers/batched/infer", json={"n": n})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    results = [a.json() for a in answers]
    assert [r["n"] for r in results] == list(range(8))
    assert max(r["batch"] for r in results) > 1  # calls that queued behind a running batch ran together
    assert all(r["overlap"] == 1 for r in results)  # never two batches at once

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(call, [1, 2, -3, 4, 5, 6]))
    assert [a.status_code for a in answers] == [200, 200, 500, 200, 200, 200]
    assert "n must not be negative (batch of 1)" in answers[2].json()["error"]["message"]

    described = {s["name"]: s for s in probe.get("/").json()["solvers"]}
    assert described["batched"]["batch"] == {"max_size": 8, "max_wait_ms": 100.0}
    assert described["batched"]["stats"]["largest_batch"] > 1
    assert described["inspect"]["batch"] is None


def test_openapi_is_valid_and_built_from_the_type_hints(probe):
    doc = probe.get("/openapi.json").json()
    validate(doc)
    assert doc["info"]["title"] == "qa/probe 1.0.0"
    op = doc["paths"]["/solvers/inspect/infer"]["post"]
    form = op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["image"]
    props = form["properties"]
    assert props["image"] == {"type": "string", "format": "binary"}
    assert props["extra"] == {"type": "array", "items": {"type": "string", "format": "binary"}}
    assert props["count"] == {"type": "integer", "minimum": 0, "maximum": 10, "default": 1,
                              "description": "a bounded integer"}
    assert props["mode"] == {"type": "string", "enum": ["fast", "exact"], "default": "fast"}
    assert props["color"] == {"type": "string", "enum": ["red", "green"], "default": "red"}
    assert props["flag"] == {"type": "boolean", "default": False}
    assert props["label"]["maxLength"] == 8
    as_json = op["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert as_json["extra"]["anyOf"][1] == {"type": "null"}
    assert {"400", "404", "413", "415", "422", "500", "503"} <= set(op["responses"])
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {"type": "object"}
    assert "/solvers/broken/infer" not in doc["paths"]
    fail = doc["paths"]["/solvers/fail/infer"]["post"]["requestBody"]["content"]
    assert "image/*" not in fail  # no image input: no raw image body


def test_kserve_v2_routes(probe):
    assert probe.get("/v2/health/ready").json() == {"ready": True}
    meta = probe.get("/v2/models/inspect").json()
    assert meta["versions"] == ["1.0.0"]
    assert {"name": "count", "datatype": "INT64", "shape": [-1]} in meta["inputs"]  # -1: the batch
    r = probe.post("/v2/models/inspect/infer", json={"id": "r1", "inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(RED).decode()]},
        {"name": "count", "datatype": "INT64", "shape": [1], "data": [4]}]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "r1" and out["model_name"] == "inspect" and out["outputs"][0]["name"] == "result"
    assert json.loads(out["outputs"][0]["data"][0])["count"] == 4
    bad = probe.post("/v2/models/inspect/infer", json={"inputs": [{"name": "nope", "data": [1]}]})
    assert bad.status_code == 422 and bad.json()["error"].startswith("unknown_field: nope")


def test_image_urls_are_fetched_only_under_the_allowed_prefixes(probe, files):
    r = probe.post("/solvers/inspect/infer", json={"image": {"url": f"{files}/ok/red.png"}})
    assert r.status_code == 200, r.text
    assert r.json()["size"] == [4, 3]
    error(probe.post("/solvers/inspect/infer", json={"image": {"url": f"{files}/other/red.png"}}),
          403, "url_not_allowed")
    error(probe.post("/solvers/inspect/infer", json={"image": {"url": "file:///etc/passwd"}}), 403, "url_not_allowed")
    e = error(probe.post("/solvers/inspect/infer", json={"image": {"url": f"{files}/ok/hop"}}), 400, "url_fetch_failed")
    assert "not allowed" in e["message"]  # a redirect out of the prefix is not followed
    error(probe.post("/solvers/inspect/infer", json={"image": {"url": f"{files}/ok/missing.png"}}),
          400, "url_fetch_failed")


def test_describe_health_and_keep_alive(probe):
    doc = probe.get("/").json()
    assert (doc["package"], doc["version"], doc["status"], doc["device"]) == ("qa/probe", "1.0.0", "ready", "cpu")
    assert [s["name"] for s in doc["solvers"]] == ["inspect", "fail", "batched"]
    assert probe.get("/readyz").json() == {"status": "ready"}
    assert probe.head("/healthz").status_code == 200

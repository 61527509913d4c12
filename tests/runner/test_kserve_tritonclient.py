"""KServe v2 on the runner, spoken by the real ``tritonclient[http]`` over a real socket: metadata,
readiness (versioned too), the binary tensor extension both ways (the client's default) and JSON,
N images in one request reaching ``infer_batch`` once, concurrent ``async_infer``, compressed
requests and responses, and the errors the client reports. Then the cases no client makes
(another Content-Encoding, a zip bomb, 404 against 405), in raw HTTP.

The runner runs in this process (as in test_protocol.py) with a numpy-only solver: no package venv.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from cvflow.runner.server import Runner, RunnerSettings
from tests.runner._images import png

MANIFEST = """[package]
name = "qa/grey"
version = "0.3.0"
description = "the mean grey of an image"

[[solvers]]
name = "grey"
class = "grey_for_kserve_tests:Grey"
batch = { max_size = 8, max_wait_ms = 2000 }

[[solvers]]
name = "album"
class = "grey_for_kserve_tests:Album"

[[solvers]]
name = "shout"
class = "grey_for_kserve_tests:Shout"
"""
MODULE = """import numpy as np
from cvflow.solver import Image

class Grey:
    def __init__(self, context):
        self.batches = []

    def infer(self, image: Image, scale: float = 1.0, label: str = "x", flag: bool = False, count: int = 1) -> dict:
        return self.infer_batch([dict(image=image, scale=scale, label=label, flag=flag, count=count)])[0]

    def infer_batch(self, calls):
        self.batches.append(len(calls))
        return [{"size": [c["image"].width, c["image"].height],
                 "mean": float(np.asarray(c["image"].to_pil("L")).mean()) * c["scale"],
                 "label": c["label"], "flag": c["flag"], "count": c["count"], "batch": len(calls)} for c in calls]

class Album:
    def infer(self, pages: list[Image], title: str = "") -> dict:
        return {"title": title, "sizes": [[p.width, p.height] for p in pages]}

class Shout:
    def infer(self, text: str) -> dict:
        return {"text": text.upper()}
"""
LIMIT = 1 << 20


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    package = tmp_path_factory.mktemp("grey")
    (package / "cvflow.toml").write_text(MANIFEST)
    (package / "grey_for_kserve_tests.py").write_text(MODULE)
    r = Runner(RunnerSettings(package_dir=Path(package), max_request_bytes=LIMIT, access_log=False))
    server = r.bind()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    r.load()
    yield r
    r.close(grace=1)


@pytest.fixture(scope="module")
def client(runner: Runner) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(f"127.0.0.1:{runner.port}", concurrency=8, network_timeout=60)
    yield c
    c.close()


def image_input(*images: bytes, binary: bool = True, name: str = "image") -> triton.InferInput:
    given = triton.InferInput(name, [len(images)], "BYTES")
    data = images if binary else tuple(base64.b64encode(i) for i in images)
    return given.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)


def results(answer: Any) -> list[dict[str, Any]]:
    return [json.loads(x) for x in answer.as_numpy("result")]


def refused(call: Any, status: str, *words: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    message = caught.value.message()
    assert caught.value.status() == status, message
    assert all(w in message for w in words), message
    return str(message)


def test_server_and_model_metadata_and_readiness(client, runner):
    server = client.get_server_metadata()
    assert server["name"] == "cvflow-runner" and "binary_tensor_data" in server["extensions"]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("grey") and client.is_model_ready("grey", "0.3.0")
    assert not client.is_model_ready("grey", "9.9.9") and not client.is_model_ready("nope")
    for meta in (client.get_model_metadata("grey"), client.get_model_metadata("grey", "0.3.0")):
        assert meta["name"] == "grey" and meta["versions"] == ["0.3.0"]
        assert {i["name"]: (i["datatype"], i["shape"]) for i in meta["inputs"]} == {
            "image": ("BYTES", [-1]), "scale": ("FP64", [-1]), "label": ("BYTES", [-1]), "flag": ("BOOL", [-1]),
            "count": ("INT64", [-1])}
        assert meta["outputs"] == [{"name": "result", "datatype": "BYTES", "shape": [-1]}]
    refused(lambda: client.get_model_metadata("grey", "9.9.9"), "404", "not_found", "0.3.0")
    refused(lambda: client.get_model_metadata("nope"), "404", "solver_not_found")


def test_infer_with_binary_data_the_default_both_ways(client):
    scale = triton.InferInput("scale", [1], "FP64").set_data_from_numpy(np.array([0.5]))
    label = triton.InferInput("label", [1], "BYTES").set_data_from_numpy(np.array(["été".encode()], dtype=np.object_))
    flag = triton.InferInput("flag", [1], "BOOL").set_data_from_numpy(np.array([True]))
    count = triton.InferInput("count", [1], "INT64").set_data_from_numpy(np.array([7], dtype=np.int64))
    answer = client.infer("grey", [image_input(png(5, 3, b"\x64")), scale, label, flag, count], request_id="r1")
    assert answer.get_response()["id"] == "r1" and answer.get_response()["model_version"] == "0.3.0"
    assert answer.get_output("result")["parameters"]["binary_data_size"] > 0  # came as binary data
    assert results(answer) == [{"size": [5, 3], "mean": 50.0, "label": "été", "flag": True, "count": 7,
                                "batch": 1}]
    versioned = client.infer("grey", [image_input(png(2, 2))], model_version="0.3.0")
    assert results(versioned)[0]["size"] == [2, 2]


def test_infer_with_json_data(client):
    scale = triton.InferInput("scale", [1], "FP64").set_data_from_numpy(np.array([2.0]), binary_data=False)
    answer = client.infer("grey", [image_input(png(4, 4, b"\x0a"), binary=False), scale],
                          outputs=[triton.InferRequestedOutput("result", binary_data=False)])
    output = answer.get_output("result")
    assert "parameters" not in output and output["shape"] == [1]
    assert json.loads(output["data"][0])["mean"] == 20.0


def test_a_batch_of_n_images_reaches_infer_batch_once(client, runner):
    batches = runner.solvers["grey"].instance.batches
    before = len(batches)
    sizes = [(w, w + 1) for w in range(1, 6)]
    counts = triton.InferInput("count", [5], "INT64").set_data_from_numpy(np.arange(5, dtype=np.int64))
    answer = client.infer("grey", [image_input(*(png(w, h) for w, h in sizes)), counts])
    assert answer.get_output("result")["shape"] == [5]
    got = results(answer)
    assert [r["size"] for r in got] == [list(s) for s in sizes] and [r["count"] for r in got] == list(range(5))
    assert batches[before:] == [5] and all(r["batch"] == 5 for r in got)


def test_a_solver_without_batching_gets_the_calls_one_by_one_and_a_list_input(client):
    pages = image_input(png(1, 2), png(3, 4), name="pages")
    title = triton.InferInput("title", [1], "BYTES").set_data_from_numpy(np.array([b"t"], dtype=np.object_))
    assert results(client.infer("album", [pages, title])) == [{"title": "t", "sizes": [[1, 2], [3, 4]]}]
    titles = triton.InferInput("title", [2], "BYTES").set_data_from_numpy(np.array([b"a", b"b"], dtype=np.object_))
    refused(lambda: client.infer("album", [pages, titles]), "400", "invalid_tensor", "one call")


def test_n_calls_to_a_solver_without_infer_batch_run_one_by_one(client, runner):
    stats = runner.solvers["shout"].worker.stats
    before = stats.batches
    texts = triton.InferInput("text", [3], "BYTES").set_data_from_numpy(np.array([b"a", b"b", b"c"], dtype=np.object_))
    assert results(client.infer("shout", [texts])) == [{"text": "A"}, {"text": "B"}, {"text": "C"}]
    assert stats.batches - before == 3 and stats.largest_batch == 1


def test_async_infer_at_concurrency_8(client):
    pending = [(w, client.async_infer("grey", [image_input(png(w, 1 + w % 3))])) for w in range(1, 25)]
    for w, request in pending:
        assert results(request.get_result(timeout=60))[0]["size"] == [w, 1 + w % 3]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(client, algorithm):
    answer = client.infer("grey", [image_input(png(6, 2))], request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    assert results(answer)[0]["size"] == [6, 2]
    json_answer = client.infer("grey", [image_input(png(3, 3), binary=False)], request_compression_algorithm=algorithm,
                               outputs=[triton.InferRequestedOutput("result", binary_data=False)])
    assert results(json_answer)[0]["size"] == [3, 3]


def test_errors_the_client_reports(client):
    image = image_input(png(2, 2))
    count32 = triton.InferInput("count", [1], "INT32").set_data_from_numpy(np.array([1], dtype=np.int32))
    refused(lambda: client.infer("grey", [image, count32]), "400", "invalid_tensor", "INT32", "INT64")
    square = triton.InferInput("image", [1, 1], "BYTES").set_data_from_numpy(np.array([[png(2, 2)]], dtype=np.object_))
    refused(lambda: client.infer("grey", [square]), "400", "invalid_tensor", "shape [1, 1]")
    refused(lambda: client.infer("grey", [image], outputs=[triton.InferRequestedOutput("boxes")]), "400",
            "invalid_tensor", "no output 'boxes'")
    refused(lambda: client.infer("grey", [image, image_input(png(3, 3))]), "400", "invalid_tensor", "twice")
    two = triton.InferInput("count", [2], "INT64").set_data_from_numpy(np.array([1, 2], dtype=np.int64))
    refused(lambda: client.infer("grey", [image, two]), "400", "invalid_tensor", "first dimensions differ")
    refused(lambda: client.infer("grey", [image_input(b"not a png")]), "400", "not_an_image")
    refused(lambda: client.infer("grey", [image_input(png(2, 2), name="photo")]), "422", "unknown_field")
    refused(lambda: client.infer("nope", [image]), "404", "solver_not_found")
    huge = image_input(png(2, 2) + b"\0" * LIMIT)  # over the body limit as sent: refused before it is read
    refused(lambda: client.infer("grey", [huge]), "413", "request_too_large")
    refused(lambda: client.infer("grey", [image], model_version="1.0.0"), "404", "not_found", "no version '1.0.0'")


def test_what_no_client_sends(runner):
    base = f"http://127.0.0.1:{runner.port}"
    body = json.dumps({"id": 7, "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                            "data": [base64.b64encode(png(2, 3)).decode()]}]}).encode()
    r = httpx.post(f"{base}/v2/models/grey/infer", content=body)
    assert r.status_code == 200 and r.json()["id"] == "7" and r.headers["content-type"] == "application/json"
    assert json.loads(r.json()["outputs"][0]["data"][0])["size"] == [2, 3]
    raw_deflate = zlib.compressobj(wbits=-15)
    r = httpx.post(f"{base}/v2/models/grey/infer", content=raw_deflate.compress(body) + raw_deflate.flush(),
                   headers={"content-encoding": "deflate"})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{base}/v2/models/grey/infer", content=body, headers={"content-encoding": "br"})
    assert r.status_code == 415 and r.json()["error"].startswith("unsupported_media_type: Content-Encoding 'br'")
    bomb = gzip.compress(b"{" + b" " * (8 * LIMIT) + b"}")  # 8 MiB of JSON in a few KiB
    assert len(bomb) < LIMIT // 10
    r = httpx.post(f"{base}/v2/models/grey/infer", content=bomb, headers={"content-encoding": "gzip"})
    assert r.status_code == 413 and r.json()["error"].startswith("request_too_large")
    r = httpx.post(f"{base}/v2/models/grey/infer", content=gzip.compress(body)[:-9], headers={"content-encoding": "gzip"})
    assert r.status_code == 400 and r.json()["error"].startswith("bad_request")
    for method, path in [("GET", "/v2/models/grey/stats"), ("POST", "/v2/repository/index"), ("GET", "/v2/models"),
                         ("POST", "/v2/models/grey/versions/0.3.0/generate"), ("GET", "/v2/models/grey/versions"),
                         ("DELETE", "/v2/health/started")]:
        r = httpx.request(method, base + path)
        assert r.status_code == 404 and r.json()["error"].startswith("not_found"), (method, path, r.text)
    for method, path, allow in [("GET", "/v2/models/grey/versions/0.3.0/infer", "POST"),
                                ("POST", "/v2/models/grey/versions/0.3.0/ready", "GET, HEAD")]:
        r = httpx.request(method, base + path)
        assert r.status_code == 405 and r.headers["allow"] == allow
    r = httpx.post(f"{base}/v2/models/grey/infer", content=body[:20] + b"\x00\x01", headers={
        "inference-header-content-length": "999"})
    assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["error"]

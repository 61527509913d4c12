"""The KServe v2 (Open Inference Protocol) REST routes, for tools that speak it.

Each solver is a model. Inputs are named after ``infer``'s parameters: images as ``BYTES``
holding base64 text (or data: URLs), numbers as ``INT64``/``FP64``, text as ``BYTES``,
``BOOL`` for booleans. The solver's JSON result comes back as one ``BYTES`` output named
``result`` holding the JSON text. Errors are ``{"error": "code: message"}`` as the protocol has it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cvflow import __version__
from cvflow.runner.errors import RunnerError, field_error
from cvflow.runner.requests import parse_inputs
from cvflow.runner.results import encode_result
from cvflow.safeparse import TooDeepError, loads_json

if TYPE_CHECKING:
    from cvflow.runner.server import Runner

_DATATYPE = {"image": "BYTES", "images": "BYTES", "integer": "INT64", "number": "FP64", "string": "BYTES",
             "boolean": "BOOL"}


def error_body(exc: RunnerError) -> bytes:
    return json.dumps({"error": f"{exc.code}: {exc.message}"}).encode()


def _ok(data: Any) -> tuple[int, bytes, str]:
    return 200, json.dumps(data, separators=(",", ":")).encode(), "application/json"


def get(runner: Runner, parts: list[str]) -> tuple[int, bytes, str]:
    if not parts:
        return _ok({"name": "cvflow-runner", "version": __version__, "extensions": []})
    if parts == ["health", "live"]:
        return _ok({"live": True})
    if parts == ["health", "ready"]:
        if not runner.ready.is_set():
            raise RunnerError("not_ready", "still loading")
        return _ok({"ready": True})
    if len(parts) in (2, 3) and parts[0] == "models" and parts[2:] in ([], ["ready"]):
        solver = runner.solver(parts[1])
        if parts[2:] == ["ready"]:
            return _ok({"name": solver.name, "ready": True})
        inputs = [{"name": p.name, "datatype": _DATATYPE[p.kind], "shape": [-1] if p.kind == "images" else [1]}
                  for p in solver.schema.params]
        return _ok({"name": solver.name, "versions": [runner.info.version], "platform": "cvflow",
                    "inputs": inputs, "outputs": [{"name": "result", "datatype": "BYTES", "shape": [1]}]})
    raise RunnerError("not_found", f"no route /v2/{'/'.join(parts)}")


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item))
    return out


def infer(runner: Runner, name: str, body: bytes) -> bytes:
    solver = runner.solver(name)
    with solver.worker.arriving() as arrival:
        try:
            request = loads_json(body)
        except TooDeepError as exc:
            raise RunnerError("too_deep", f"the body is not read: {exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise RunnerError("invalid_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
            raise RunnerError("invalid_json", 'a v2 inference request is {"inputs": [{"name", "datatype", "shape",'
                              ' "data"}, ...]}')
        by_name = solver.schema.by_name
        values: dict[str, Any] = {}
        for item in request["inputs"]:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise RunnerError("invalid_json", "each input needs a name")
            p = by_name.get(item["name"])
            if p is None:
                solver.schema.no_such_input(item["name"])
            flat = _flat(item.get("data"))
            if p.kind == "images":
                values[item["name"]] = flat
            elif len(flat) != 1:
                raise field_error("invalid_field", item["name"], f"{item['name']}: takes one value; got {len(flat)}")
            else:
                values[item["name"]] = flat[0]
        kwargs = parse_inputs(solver.schema, "application/json", json.dumps(values).encode(), "",
                              runner.settings.images)
        result = encode_result(runner.call(solver, kwargs, arrival), solver.name).decode()
    out: dict[str, Any] = {"model_name": solver.name, "model_version": runner.info.version,
                           "outputs": [{"name": "result", "datatype": "BYTES", "shape": [1], "data": [result]}]}
    if "id" in request:
        out["id"] = request["id"]
    return json.dumps(out, separators=(",", ":")).encode()

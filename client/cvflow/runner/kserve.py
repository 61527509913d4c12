"""The KServe v2 (Open Inference Protocol) REST routes, for tools that speak it (docs/kserve.md).

Each solver is a model whose one version is the package's version. Inputs are named after
``infer``'s parameters: an image as ``BYTES`` (its bytes in the binary tensor extension,
base64 text or a data: URL in JSON), numbers as ``INT64``/``FP64``, text as ``BYTES``, ``BOOL``.
The first dimension of every single-value input is the batch: shape ``[N]`` is N calls, run
as batches of the solver's ``infer_batch`` when its manifest batches, else one by one; a list
input (``list[Image]``) has shape ``[K]`` and goes with a request of one call. The results come
back as one ``BYTES`` output ``result`` of shape ``[N]``, each element the JSON of one call.
The binary tensor extension (``Inference-Header-Content-Length``) works both ways, and a body may
come compressed (``Content-Encoding: gzip`` or ``deflate``). Errors are ``{"error": "code: message"}``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import struct
import threading
import zlib
from typing import TYPE_CHECKING, Any

from cvflow import __version__
from cvflow.runner import images
from cvflow.runner.batching import Arrival
from cvflow.runner.errors import RunnerError, field_error
from cvflow.runner.requests import parse_json
from cvflow.runner.results import encode_result
from cvflow.runner.schema import Param, SolverSchema

if TYPE_CHECKING:
    from cvflow.runner.loader import LoadedSolver
    from cvflow.runner.protocol import Request
    from cvflow.runner.server import Runner

_DATATYPE = {"image": "BYTES", "images": "BYTES", "integer": "INT64", "number": "FP64", "string": "BYTES",
             "boolean": "BOOL"}
_FIXED = {"INT64": "q", "FP64": "d", "BOOL": "?"}  # struct codes of the fixed-size datatypes, little-endian
_JSON = "application/json"
_HEADER = "inference-header-content-length"
_GET = ("GET", "HEAD")
_POST = ("POST",)


def error_body(exc: RunnerError) -> bytes:
    return json.dumps({"error": f"{exc.code}: {exc.message}"}).encode()


def _ok(data: Any) -> tuple[int, bytes, str]:
    return 200, json.dumps(data, separators=(",", ":")).encode(), _JSON


def _tensor_error(message: str) -> RunnerError:
    return RunnerError("invalid_tensor", message)


# -- routes -----------------------------------------------------------------------------------


def allowed(parts: list[str]) -> tuple[str, ...] | None:
    """The methods of the v2 resource at ``parts`` (after ``/v2``); None: no such resource (404)."""
    if parts in ([], ["health", "live"], ["health", "ready"]):
        return _GET
    if len(parts) < 2 or parts[0] != "models":
        return None
    rest = parts[2:]
    if rest[:1] == ["versions"]:
        if len(rest) < 2:
            return None
        rest = rest[2:]
    return _POST if rest == ["infer"] else _GET if rest in ([], ["ready"]) else None


def _model(runner: Runner, parts: list[str]) -> LoadedSolver:
    """The solver of ``models/{m}[/versions/{v}]/...``; 404 for another version than the package's."""
    solver = runner.solver(parts[1])
    if parts[2:3] == ["versions"] and parts[3] != runner.info.version:
        raise RunnerError("not_found", f"model {solver.name} has no version {parts[3]!r}; this runner serves"
                          f" version {runner.info.version}")
    return solver


def get(runner: Runner, parts: list[str]) -> tuple[int, bytes, str]:
    """``GET /v2/...``: server and model metadata, liveness and readiness."""
    if not parts:
        return _ok({"name": "cvflow-runner", "version": __version__, "extensions": ["binary_tensor_data"]})
    if parts == ["health", "live"]:
        return _ok({"live": True})
    if parts == ["health", "ready"]:
        if not runner.ready.is_set():
            raise RunnerError("not_ready", "still loading")
        return _ok({"ready": True})
    solver = _model(runner, parts)
    if parts[-1] == "ready":
        return _ok({"name": solver.name, "ready": True})
    inputs = [{"name": p.name, "datatype": _DATATYPE[p.kind], "shape": [-1]} for p in solver.schema.params]
    return _ok({"name": solver.name, "versions": [runner.info.version], "platform": "cvflow",
                "inputs": inputs, "outputs": [{"name": "result", "datatype": "BYTES", "shape": [-1]}]})


def infer(runner: Runner, request: Request, parts: list[str]) -> tuple[int, bytes, str]:
    """``POST /v2/models/{m}[/versions/{v}]/infer``: decode, check, run the N calls, answer."""
    solver = _model(runner, parts)
    limit = runner.settings.max_request_bytes
    with solver.worker.arriving(request.connection.held, returns=True) as arrival:
        request.connection.held = arrival  # counted as returning once answered (``batching``)
        body = _decompress(request.body(limit), request.headers.get("content-encoding", ""), limit)
        head, tensors = _split(body, request.headers.get(_HEADER))
        calls = _calls(solver.schema, head, tensors)
        binary = _binary_outputs(head)
        kwargs = [_kwargs(solver.schema, call, runner.settings.images) for call in calls]
        results = _run(runner, solver, kwargs, arrival)
    texts = [encode_result(r, solver.name) for r in results]
    out: dict[str, Any] = {"model_name": solver.name, "model_version": runner.info.version}
    if "id" in head:
        out["id"] = head["id"]
    output: dict[str, Any] = {"name": "result", "datatype": "BYTES", "shape": [len(texts)]}
    out["outputs"] = [output]
    if binary:
        raw = b"".join(struct.pack("<I", len(t)) + t for t in texts)
        output["parameters"] = {"binary_data_size": len(raw)}
        header = json.dumps(out, separators=(",", ":")).encode()
        request.response_headers.append(("Inference-Header-Content-Length", str(len(header))))
        answer, ctype = header + raw, "application/octet-stream"
    else:
        output["data"] = [t.decode() for t in texts]
        answer, ctype = json.dumps(out, separators=(",", ":")).encode(), _JSON
    return 200, _compress(answer, request), ctype


# -- the request --------------------------------------------------------------------------------


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as sent before compression; the limit holds for the decompressed size too."""
    how = encoding.strip().lower()
    if how in ("", "identity"):
        return body
    if how not in ("gzip", "x-gzip", "deflate"):
        raise RunnerError("unsupported_media_type", f"Content-Encoding {encoding!r} is not read here; send the"
                          " body as it is, or compressed with gzip or deflate")
    if how == "deflate" and not _zlib_header(body):
        wbits = -zlib.MAX_WBITS  # a raw deflate stream: some clients leave out the zlib wrapper
    else:
        wbits = zlib.MAX_WBITS | (16 if how != "deflate" else 0)
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
        if len(out) > limit:
            raise RunnerError("request_too_large", f"the body decompresses to more than {limit} bytes; the"
                              f" runner takes bodies up to {limit} bytes")
        out += d.flush()
    except zlib.error as exc:
        raise RunnerError("bad_request", f"the {how} body cannot be decompressed: {exc}") from None
    if not d.eof or d.unused_data or d.unconsumed_tail:
        raise RunnerError("bad_request", f"the {how} body is not one complete {how} stream")
    return out


def _zlib_header(body: bytes) -> bool:
    return len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0


def _compress(answer: bytes, request: Request) -> bytes:
    """Compressed as ``Accept-Encoding`` asks when it names gzip or deflate (without ``q=0``)."""
    for token in request.headers.get("accept-encoding", "").lower().split(","):
        name, _, params = token.strip().partition(";")
        if params.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            continue
        if name.strip() == "gzip":
            request.response_headers.append(("Content-Encoding", "gzip"))
            return gzip.compress(answer, compresslevel=1)
        if name.strip() == "deflate":
            request.response_headers.append(("Content-Encoding", "deflate"))
            return zlib.compress(answer, 1)
    return answer


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header of the request and the binary tensor data after it."""
    tensors = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise RunnerError("bad_request", f"Inference-Header-Content-Length {header_length!r} is not a length"
                              f" within the body's {len(body)} bytes")
        body, tensors = body[:int(header_length)], body[int(header_length):]
    head = parse_json(body)
    if not isinstance(head, dict) or not isinstance(head.get("inputs"), list):
        raise RunnerError("invalid_json", 'a v2 inference request is {"inputs": [{"name", "datatype", "shape",'
                          ' "data"}, ...]}')
    if "id" in head:
        if isinstance(head["id"], bool) or not isinstance(head["id"], str | int):
            raise RunnerError("invalid_json", "the request's id is a string")
        head["id"] = str(head["id"])
    return head, tensors


def _calls(schema: SolverSchema, head: dict[str, Any], tensors: bytes) -> list[dict[str, Any]]:
    """Each call's values by input name, every tensor checked against the model's metadata."""
    by_name = schema.by_name
    columns: dict[str, list[Any]] = {}
    offset = 0
    for item in head["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RunnerError("invalid_json", "each input needs a name")
        name = item["name"]
        p = by_name.get(name)
        if p is None:
            schema.no_such_input(name)
        if name in columns:
            raise _tensor_error(f"input {name!r} is given twice")
        want = _DATATYPE[p.kind]
        if item.get("datatype") != want:
            raise _tensor_error(f"input {name!r}: datatype {item.get('datatype')!r}; the model takes {want}")
        shape = item.get("shape")
        if (not isinstance(shape, list) or len(shape) != 1 or isinstance(shape[0], bool)
                or not isinstance(shape[0], int) or shape[0] < 0):
            raise _tensor_error(f"input {name!r}: shape {shape!r}; the model takes shape [-1]"
                                f" ({'the list' if p.kind == 'images' else 'one value per call'})")
        params = item.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(tensors):
                raise _tensor_error(f"input {name!r}: binary_data_size {size!r} is past the end of the binary data")
            if "data" in item:
                raise _tensor_error(f"input {name!r}: has both data and binary_data_size")
            values = _unpack(name, want, tensors[offset:offset + size], shape[0])
            offset += size
        else:
            values = _flat(item.get("data"))
            if len(values) != shape[0]:
                raise _tensor_error(f"input {name!r}: {len(values)} values for shape {shape}")
            _check_json(name, want, values)
        columns[name] = values
    if offset != len(tensors):
        raise _tensor_error(f"{len(tensors) - offset} bytes of binary data belong to no input")
    sizes = {n: len(v) for n, v in columns.items() if by_name[n].kind != "images"}
    if len(set(sizes.values())) > 1:
        raise _tensor_error(f"the inputs' first dimensions differ ({sizes}); each is the number of calls")
    n = next(iter(sizes.values()), 1)
    lists = [name for name in columns if by_name[name].kind == "images"]
    if n > 1 and lists:
        raise _tensor_error(f"input {lists[0]!r} is a list for one call; a request with it carries one call,"
                            f" not {n}")
    if n == 0:
        raise _tensor_error("the batch is empty (shape [0])")
    return [{name: (v if by_name[name].kind == "images" else v[i]) for name, v in columns.items()} for i in range(n)]


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item))
    return out


def _check_json(name: str, datatype: str, values: list[Any]) -> None:
    for v in values:
        if datatype == "BYTES":
            ok = isinstance(v, str)
        elif datatype == "BOOL":
            ok = isinstance(v, bool)
        else:
            ok = isinstance(v, int | float if datatype == "FP64" else int) and not isinstance(v, bool)
        if not ok:
            raise _tensor_error(f"input {name!r}: {json.dumps(v)[:40]} is not a {datatype} value")


def _unpack(name: str, datatype: str, raw: bytes, count: int) -> list[Any]:
    """The elements of a tensor in the binary tensor extension's layout."""
    if datatype in _FIXED:
        code = _FIXED[datatype]
        if len(raw) != count * struct.calcsize(code):
            raise _tensor_error(f"input {name!r}: {len(raw)} bytes of {datatype} for {count} values")
        return list(struct.unpack(f"<{count}{code}", raw))
    out: list[Any] = []
    at = 0
    while at < len(raw):  # BYTES: each element is its 4-byte little-endian length, then its bytes
        if at + 4 > len(raw):
            raise _tensor_error(f"input {name!r}: BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, at)
        if at + 4 + length > len(raw):
            raise _tensor_error(f"input {name!r}: a BYTES element of {length} bytes runs past the data")
        out.append(raw[at + 4:at + 4 + length])
        at += 4 + length
    if len(out) != count:
        raise _tensor_error(f"input {name!r}: {len(out)} BYTES elements for shape [{count}]")
    return out


def _binary_outputs(head: dict[str, Any]) -> bool:
    """Whether ``result`` goes as binary data; every requested output must be ``result``."""
    params = head.get("parameters")
    binary = isinstance(params, dict) and params.get("binary_data_output") is True
    outputs = head.get("outputs")
    if outputs is None:
        return binary
    if not isinstance(outputs, list):
        raise RunnerError("invalid_json", 'outputs is a list of {"name", "parameters"}')
    seen: set[str] = set()
    for item in outputs:
        name = item.get("name") if isinstance(item, dict) else None
        if name != "result":
            raise _tensor_error(f"no output {name!r}; the model's one output is 'result'")
        if name in seen:
            raise _tensor_error(f"output {name!r} is requested twice")
        seen.add(name)
        given = item.get("parameters") or {}
        if not isinstance(given, dict):
            raise RunnerError("invalid_json", "an output's parameters are an object")
        if given.get("class_count"):
            raise _tensor_error("the classification extension (class_count) is not supported")
        if "binary_data" in given:
            binary = given["binary_data"] is True
    return binary


def _kwargs(schema: SolverSchema, call: dict[str, Any], policy: images.ImagePolicy) -> dict[str, Any]:
    """One call's keyword arguments: the fields checked first, then the images decoded."""
    by_name = schema.by_name
    scalars: dict[str, Any] = {}
    for name, value in call.items():
        p = by_name[name]
        if not p.is_image:
            scalars[name] = p.from_json(_text(p, value) if isinstance(value, bytes) else value)
    schema.complete({**scalars, **dict.fromkeys(n for n in call if by_name[n].is_image)})
    decoded: dict[str, Any] = {}
    for name, value in call.items():
        p = by_name[name]
        if p.kind == "images":
            p.check_length(len(value), "images")
            decoded[name] = [_image(p, v, policy) for v in value]
        elif p.kind == "image":
            decoded[name] = _image(p, value, policy)
    inputs = schema.complete({**scalars, **decoded})
    if schema.extra is not None:  # a 2019 CVPM solver's config: no tensor fills it
        inputs[schema.extra] = {}
    return inputs


def _text(p: Param, value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise field_error("invalid_field", p.name, f"{p.name}: the BYTES value is not UTF-8 text") from None


def _image(p: Param, value: Any, policy: images.ImagePolicy) -> Any:
    if isinstance(value, bytes):
        return images.decode(value, p.name, policy)
    return images.from_json(value, p.name, policy)


# -- the calls --------------------------------------------------------------------------------


def _run(runner: Runner, solver: LoadedSolver, calls: list[dict[str, Any]], arrival: Arrival) -> list[Any]:
    """Every call's result, in order. A solver that batches gets up to ``max_size`` calls at once:
    each call of a group is queued from a thread of its own while the others are still announced
    as arriving, so the group forms one ``infer_batch``. Raises the first call's error."""
    size = solver.worker.max_size
    if size == 1 or len(calls) == 1:
        return [runner.call(solver, kwargs, arrival if i == 0 else None) for i, kwargs in enumerate(calls)]
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)

    def one(i: int, on_its_way: Arrival | None) -> None:
        try:
            results[i] = runner.call(solver, calls[i], on_its_way)
        except BaseException as exc:  # handed to the request's thread, which raises it
            errors[i] = exc

    for start in range(0, len(calls), size):
        group = range(start, min(start + size, len(calls)))
        with contextlib.ExitStack() as stack:
            first = arrival if start == 0 else stack.enter_context(solver.worker.arriving())
            arrivals = [first, *(stack.enter_context(solver.worker.arriving()) for _ in group[1:])]
            threads = [threading.Thread(target=one, args=(i, a), daemon=True)
                       for i, a in zip(group[1:], arrivals[1:], strict=True)]
            for thread in threads:
                thread.start()
            one(group[0], first)
            for thread in threads:
                thread.join()
        for error in errors:
            if error is not None:
                raise error
    return results


"""The OpenAPI 3.1 document, generated from the endpoint registry and the error table."""

from __future__ import annotations

import re
from typing import Any

from hub import __version__
from hub.api import endpoints
from hub.errors import CODES

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string", "enum": sorted(CODES)},
        "message": {"type": "string"},
        "details": {"type": "object"}}}},
}


def _path(path: str) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", r"{\1}", path)


def build() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints():
        op: dict[str, Any] = {"summary": ep.summary, "tags": [ep.tag],
                              "operationId": ep.func.__name__}
        params = []
        for name, where, desc in ep.params:
            params.append({"name": name, "in": where, "required": where == "path",
                           "description": desc, "schema": {"type": "string"}})
        if params:
            op["parameters"] = params
        if ep.auth != "none":
            op["security"] = [{"token": []}] if ep.auth == "required" else [{}, {"token": []}]
        if ep.request is not None:
            op["requestBody"] = {"required": True, "content": {ep.request_type: {"schema": ep.request}}}
        elif ep.request_type == "application/octet-stream":
            op["requestBody"] = {"required": True, "content": {ep.request_type: {
                "schema": {"type": "string", "format": "binary"}}}}
        ok: dict[str, Any] = {"description": "success"}
        if ep.response is not None:
            ok["content"] = {"application/json": {"schema": ep.response}}
        if ep.headers:
            ok["headers"] = {h: {"description": d, "schema": {"type": "string"}} for h, d in ep.headers.items()}
        responses: dict[str, Any] = {str(ep.status): ok}
        by_status: dict[int, list[str]] = {}
        for code in ep.errors:
            by_status.setdefault(CODES[code][0], []).append(code)
        for status, codes in sorted(by_status.items()):
            responses[str(status)] = {
                "description": "; ".join(f"`{c}`: {CODES[c][1]}" for c in codes),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"},
                                                 "examples": {c: {"value": {"error": {"code": c, "message": CODES[c][1]}}}
                                                              for c in codes}}},
            }
        op["responses"] = responses
        paths.setdefault(_path(ep.path), {})[ep.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "CVFlow hub", "version": __version__,
                 "description": "Registry of versioned computer-vision model packages. Every error body is "
                                "JSON with a stable `code`; the codes are listed in `x-error-codes`."},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "an API token, `cvf_...`"}},
        },
        "x-error-codes": {code: {"status": status, "description": desc} for code, (status, desc) in CODES.items()},
    }

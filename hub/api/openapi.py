"""The OpenAPI 3.1 document, generated from the endpoint registry and the error table."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from hub import __version__
from hub.api import endpoints
from hub.api.bodies import PATH_PARAMETERS
from hub.errors import CODES, ErrorCode

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


def _model(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """``model``'s JSON Schema, placed in ``schemas`` (with the models it uses); a reference to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as query parameters."""
    schema = model.model_json_schema()
    out = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        desc = prop.pop("description", "")
        prop.pop("title", None)
        if "anyOf" in prop:  # ``str | None``: absent is the None
            prop = {**next(p for p in prop.pop("anyOf") if p.get("type") != "null"), **prop}
            prop.pop("default", None)
        out.append({"name": name, "in": "query", "required": name in schema.get("required", ()),
                    "description": desc, "schema": prop})
    return out


def build() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": _ERROR}
    for ep in endpoints():
        op: dict[str, Any] = {"summary": ep.summary, "tags": [ep.tag],
                              "operationId": ep.func.__name__}
        params = []
        for name, where, desc in ep.params:
            params.append({"name": name, "in": where, "required": where in ("path", "header"),
                           "description": desc, "schema": PATH_PARAMETERS.get(name, {"type": "string"})})
        if ep.query is not None:
            params += _query(ep.query)
        if params:
            op["parameters"] = params
        op["description"] = ep.access.describe()
        op["x-cvflow-access"] = {"scope": ep.access.scope, "role": ep.access.role, "target": ep.access.target}
        if ep.auth != "none":
            op["security"] = [{"token": []}] if ep.auth == "required" else [{}, {"token": []}]
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _model(ep.body, schemas)}}}
        elif ep.request is not None:
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
        responses.update({str(status): {"description": what} for status, what in ep.also.items()})
        by_status: dict[int, list[ErrorCode]] = {}
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
            "schemas": schemas,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "an API token, `cvf_...`"}},
        },
        "x-error-codes": {code: {"status": status, "description": desc} for code, (status, desc) in CODES.items()},
    }

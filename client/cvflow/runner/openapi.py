"""The runner's OpenAPI 3.1 document, built from each solver's schema and from ``CODES``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cvflow.runner.errors import CODES, ErrorCode
from cvflow.runner.loader import LoadedSolver, PackageInfo

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": sorted(CODES)},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
_INFER_CODES: tuple[ErrorCode, ...] = (
                "not_an_image", "invalid_json", "invalid_multipart", "invalid_base64", "url_fetch_failed",
                "url_not_allowed", "solver_not_found", "request_too_large", "image_too_large",
                "unsupported_media_type", "invalid_field", "missing_field", "unknown_field", "invalid_input",
                "solver_error", "invalid_result", "not_ready", "busy", "solver_timeout")


def _errors(codes: Iterable[ErrorCode]) -> dict[str, Any]:
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        by_status.setdefault(CODES[code][0], []).append(code)
    out = {}
    for status, names in sorted(by_status.items()):
        out[str(status)] = {
            "description": "; ".join(f"`{c}`: {CODES[c][1]}" for c in names),
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"},
                "examples": {c: {"value": {"error": {"code": c, "message": CODES[c][1]}}} for c in names},
            }},
        }
    return out


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build_openapi(info: PackageInfo, solvers: Iterable[LoadedSolver], *, runner_version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/": {"get": {"operationId": "describe", "summary": "The package, its version and its solvers",
                      "responses": {"200": _json({"type": "object"}, "What this runner serves")}}},
        "/healthz": {"get": {"operationId": "healthz", "summary": "Live: the process answers",
                             "responses": {"200": _json({"type": "object"}, "Alive")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Ready: every solver is loaded",
                            "responses": {"200": _json({"type": "object"}, "Ready"),
                                          "503": _json({"type": "object"}, "Still loading")}}},
        "/docs": {"get": {"operationId": "docs", "summary": "This document as a readable HTML page",
                          "responses": {"200": {"description": "The API reference",
                                                "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }
    for s in solvers:
        schema = s.schema
        content: dict[str, Any] = {
            "multipart/form-data": {"schema": schema.request_schema(multipart=True)},
            "application/json": {"schema": schema.request_schema(multipart=False)},
        }
        raw = schema.raw_image()
        if raw is not None and not any(p.required for p in schema.params if p is not raw):
            content["image/*"] = {"schema": {"type": "string", "format": "binary", "description":
                                             f"the `{raw.name}` image itself; other inputs in the query string"}}
        summary = s.entry.description or f"Run solver {s.name}"
        batch = s.batching
        note = (f" Concurrent calls are batched: up to {batch['max_size']} per batch, waiting at most"
                f" {batch['max_wait_ms']:g} ms while more are arriving." if batch else "")
        if schema.extra is not None:
            note += (f" A 2019 CVPM solver: it reads `image` from a temporary file, and every other field reaches it"
                     f" in `{schema.extra}` (form fields and query parameters as text, JSON fields as given).")
        paths[f"/solvers/{s.name}/infer"] = {"post": {
            "operationId": f"infer_{s.name}".replace("-", "_"),
            "summary": summary,
            "description": (f"`{s.entry.class_path}`. Images go as multipart file parts, as base64 or data: URLs"
                            " in JSON, or as the raw body (`image/*`) when the solver takes one image; other"
                            " inputs may also go in the query string." + note),
            "tags": ["solvers"],
            "requestBody": {"required": True, "content": content},
            "responses": {"200": _json(schema.result, "The solver's result"), **_errors(_INFER_CODES)},
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{info.name} {info.version}", "version": info.version,
                 "description": f"{info.description}\n\nServed by the cvflow runner {runner_version}."},
        "paths": paths,
        "components": {"schemas": {"Error": _ERROR_SCHEMA}},
    }

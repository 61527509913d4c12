"""The runner's error codes and its JSON error body (the hub's shape)::

    {"error": {"code": "not_an_image", "message": "...", "details": {"field": "image"}}}

``CODES`` is the single source for the status of each code and for the OpenAPI document.
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

#: Every code the runner answers with; :data:`CODES` has exactly these keys (checked below).
ErrorCode = Literal[
    "bad_request", "not_an_image", "invalid_json", "too_deep", "invalid_multipart", "invalid_base64",
    "url_fetch_failed", "url_not_allowed", "invalid_tensor", "not_found", "solver_not_found", "method_not_allowed",
    "request_timeout", "request_too_large", "uri_too_long", "headers_too_large", "image_too_large",
    "unsupported_media_type", "invalid_field", "missing_field", "unknown_field", "invalid_input",
    "solver_error", "invalid_result", "not_implemented", "not_ready", "busy", "solver_timeout",
    "http_version_not_supported", "invalid_label_config",
]

#: code -> (HTTP status, meaning)
CODES: dict[ErrorCode, tuple[int, str]] = {
    "bad_request": (400, "The request is malformed (its request line, a header, its length or its chunked framing)."),
    "not_an_image": (400, "An image input holds bytes that are not an image."),
    "invalid_json": (400, "The body is not a JSON object."),
    "too_deep": (400, "The JSON body is nested deeper than the runner reads (64 levels); refused before parsing."),
    "invalid_multipart": (400, "The multipart/form-data body cannot be parsed."),
    "invalid_base64": (400, "An image given as text is not valid base64 or a data: URL."),
    "url_fetch_failed": (400, "An image URL the runner allows could not be fetched."),
    "invalid_tensor": (400, "A KServe v2 tensor whose datatype, shape or data does not match the model's metadata;"
                       " an input given twice; an output the model has not."),
    "url_not_allowed": (403, "An image URL the runner was not told to allow (cvflow run --allow-url)."),
    "not_found": (404, "No such route."),
    "solver_not_found": (404, "The package has no such solver, or this runner does not serve it."),
    "method_not_allowed": (405, "The method is not allowed on this route."),
    "request_timeout": (408, "The headers or the body did not arrive within the runner's time limit."),
    "request_too_large": (413, "The request body is over the runner's limit."),
    "uri_too_long": (414, "The request line is over the runner's limit on the head's size."),
    "headers_too_large": (431, "The headers are over the runner's limit on their size or their number."),
    "image_too_large": (413, "An image is over the runner's byte or pixel limit."),
    "unsupported_media_type": (415, "The body's content type is not one this route reads."),
    "invalid_field": (422, "A field has the wrong type, or a value outside its range or choices."),
    "missing_field": (422, "A required field is missing."),
    "unknown_field": (422, "The solver has no input of this name."),
    "invalid_input": (422, "The solver refused the input (its message says why)."),
    "invalid_label_config": (422, "A Label Studio labelling config: not XML, or no control the solver fills."),
    "solver_error": (500, "The solver raised an exception; the message is its text."),
    "invalid_result": (500, "The solver returned something that is not JSON-serialisable."),
    "not_implemented": (501, "A Transfer-Encoding other than chunked."),
    "not_ready": (503, "The runner is still loading its solvers."),
    "busy": (503, "Too many requests are queued for this solver; retry later."),
    "solver_timeout": (504, "The solver did not answer within the runner's time limit."),
    "http_version_not_supported": (505, "An HTTP version other than HTTP/1.0 and HTTP/1.1."),
}
if set(CODES) != set(get_args(ErrorCode)):  # pragma: no cover - a table edit without the type, or the reverse
    raise AssertionError(f"cvflow.runner.errors: CODES and ErrorCode differ: {set(CODES) ^ set(get_args(ErrorCode))}")


class RunnerError(Exception):
    """An error answered to the caller: ``code`` (from ``CODES``), message, optional details."""

    def __init__(self, code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def status(self) -> int:
        return CODES[self.code][0]

    def body(self) -> bytes:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return json.dumps({"error": error}).encode()


def field_error(code: ErrorCode, field: str, message: str) -> RunnerError:
    return RunnerError(code, message, {"field": field})

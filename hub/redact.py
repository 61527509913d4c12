"""Keeps credentials out of logs: API tokens (``cvf_...``) and Authorization values are redacted.

uvicorn's access log prints each request's path with its query string, so a token someone put in
a URL would be written to disk (the hub refuses such requests, but only after the line is logged).
:class:`RedactCredentials` filters every record that reaches the handlers it is attached to;
:func:`uvicorn_log_config` is uvicorn's own configuration with the filter on each handler.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

_PATTERNS = (
    # an API token anywhere: in a path, a query string, a message
    (re.compile(r"cvf_[A-Za-z0-9_-]+"), "cvf_[redacted]"),
    # credentials by name in a query string or a form: token=..., access_token=..., api_key=...
    (re.compile(r"(?i)\b((?:access_)?token|api_?key|password)=[^&\s\"']*"), r"\1=[redacted]"),
    # an Authorization header or a bare bearer credential, as a line of text prints it
    (re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(?:(bearer|basic|token)\s+)?[^\s\"',}]+"), r"\1\2 [redacted]"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text.replace("  [redacted]", " [redacted]")


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactCredentials(logging.Filter):
    """Redacts the message and its string arguments; the arguments stay a tuple, as uvicorn's
    access formatter unpacks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with :class:`RedactCredentials` on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": RedactCredentials}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact")
    return config

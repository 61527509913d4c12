"""Solver results to JSON: numpy scalars and arrays, enums, paths and dataclasses are converted;
NaN and infinity are refused rather than sent as the invalid JSON tokens ``NaN``/``Infinity``."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from typing import Any

from cvflow.runner.errors import RunnerError


def _default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# ``json.dumps`` with these options builds an encoder per call; one serves every call (``encode``
# keeps no state between calls, so threads share it).
_ENCODER = json.JSONEncoder(default=_default, allow_nan=False, separators=(",", ":"))


def encode_result(result: Any, solver: str) -> bytes:
    """Raises RunnerError ``invalid_result`` (500) for what JSON cannot hold."""
    try:
        return _ENCODER.encode(result).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise RunnerError("invalid_result", f"solver {solver} returned a result that is not JSON: {exc}") from None

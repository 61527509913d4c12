"""Serve a 2019 solver's ``infer(image_file, config)`` through the runner.

Such a solver is told by its ``infer``: two positional parameters after ``self``, neither with
a type hint (:func:`is_cvpm_solver`). The runner then constructs it with no arguments (the
2019 runtime did) and serves it with the schema :data:`SCHEMA`: one image input ``image``
(multipart file part, base64 or URL in JSON, or the raw body, with the runner's byte and pixel
limits), and every other field collected into ``config`` (form fields and query parameters as
strings, JSON fields as given). :class:`CvpmCall` writes the upload to a private temporary file,
passes its path, deletes it after the call (when ``infer`` raises too), and makes the result
JSON-safe (:func:`json_safe`).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from cvflow.runner.schema import Param, SolverSchema
from cvflow.solver import Image, Input

#: The keyword under which a 2019 solver's other fields reach it.
CONFIG = "config"
#: Where the upload goes; the name is the 2019 runtime's form field.
IMAGE = "image"

SCHEMA = SolverSchema(
    (Param(IMAGE, "image", required=True, spec=Input(
        description="the file the solver's infer(image_file, config) reads: written to a temporary file whose"
                    " path it is given")),),
    {}, extra=CONFIG)

_SUFFIX = re.compile(r"\A\.[A-Za-z0-9]{1,10}\Z")
_FORMAT_SUFFIX = {"JPEG": ".jpg", "MPO": ".jpg", "TIFF": ".tif"}


def is_cvpm_solver(cls: type) -> bool:
    """Whether ``cls.infer`` has the 2019 shape: ``infer(self, image_file, config)``, untyped."""
    infer = inspect.getattr_static(cls, "infer", None)
    if not inspect.isfunction(infer):
        return False
    try:
        params = list(inspect.signature(infer).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return (len(params) == 2 and all(p.kind in positional for p in params)
            and all(p.annotation is inspect.Parameter.empty for p in params))


def suffix_of(image: Image) -> str:
    """The temporary file's suffix: the upload's own (``.png``), else its format's, else none."""
    if image.filename:
        suffix = os.path.splitext(image.filename)[1]
        if _SUFFIX.match(suffix):
            return suffix.lower()
    if image.format:
        return _FORMAT_SUFFIX.get(image.format, "." + image.format.lower())
    return ""


class CvpmCall:
    """``infer(image=Image, config=dict)`` for the runner's worker, calling the solver's
    ``infer(path, config)``."""

    def __init__(self, infer: Callable[[str, dict[str, Any]], Any]) -> None:
        self.infer = infer

    def __call__(self, image: Image, config: Mapping[str, Any] | None = None) -> Any:
        fd, path = tempfile.mkstemp(prefix="cvflow-cvpm-", suffix=suffix_of(image))  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(image.data)
            result = self.infer(path, dict(config or {}))
        finally:
            with contextlib.suppress(FileNotFoundError):  # the solver may have moved or deleted it
                os.unlink(path)
        return json_safe(result)


def json_safe(value: Any) -> Any:
    """``value`` with what JSON cannot hold as a 2019 result had it turned into what it can: numpy
    arrays and scalars (``tolist``/``item``), tuples and sets (lists), bytes (UTF-8 text), and
    non-string dict keys (their text). Non-finite floats stay, and are refused when the result is
    encoded (``invalid_result``), as for every solver."""
    if isinstance(value, dict):
        return {_key(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((json_safe(v) for v in value), key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return json_safe(value.tolist())
    if hasattr(value, "item"):
        return json_safe(value.item())
    return value  # left to the encoder, which converts what it can and refuses the rest


def _key(key: Any) -> str | int | float | bool | None:
    if key is None or isinstance(key, str | bool | int):
        return key
    if isinstance(key, float):
        return key if math.isfinite(key) else str(key)
    key = json_safe(key)
    return key if isinstance(key, str | int | float | bool) else str(key)

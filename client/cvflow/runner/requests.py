"""Turn a request's body and query string into a solver's keyword arguments, checked.

Order matters for cost: the fields are checked first (names, scalars, counts), and only
then are images decoded, so a request with a wrong field never pays for decoding.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from cvflow.runner import images
from cvflow.runner.errors import RunnerError, field_error
from cvflow.runner.multipart import MultipartError, boundary_of, parse_multipart
from cvflow.runner.schema import Param, SolverSchema
from cvflow.safeparse import TooDeepError, loads_json

#: An image source before decoding: ("bytes", data, filename) or ("json", value, None).
Source = tuple[str, Any, str | None]


def parse_inputs(schema: SolverSchema, content_type: str, body: bytes, query: str,
                 policy: images.ImagePolicy) -> dict[str, Any]:
    """The keyword arguments for ``infer``: every input, defaults filled in.

    Raises:
        RunnerError: 4xx for anything wrong with the request.
    """
    ctype = content_type.split(";", 1)[0].strip().lower()
    scalars: dict[str, Any] = {}
    sources: dict[str, list[Source]] = {}
    if ctype == "multipart/form-data":
        _from_multipart(schema, content_type, body, scalars, sources)
    elif ctype == "application/json" or ctype.endswith("+json"):
        _from_json(schema, body, scalars, sources)
    elif ctype == "application/x-www-form-urlencoded":
        _from_pairs(schema, _pairs(body.decode("latin-1")), scalars, sources, form=True)
    elif ctype.startswith("image/") or ctype == "application/octet-stream":
        _from_raw(schema, body, sources)
    elif not body and not ctype:
        pass  # no body at all: every input from the query string (or defaults)
    else:
        raise RunnerError("unsupported_media_type",
                          f"cannot read a {ctype or 'body without a content type'}; send multipart/form-data,"
                          " application/json, or an image/* body")
    _from_pairs(schema, _pairs(query), scalars, sources, form=False)

    present = {**scalars, **dict.fromkeys(sources)}
    schema.complete(present)  # raises missing_field before any image is decoded
    by_name = schema.by_name
    for name, given in sources.items():
        p = by_name[name]
        if p.kind == "image" and len(given) != 1:
            raise field_error("invalid_field", name, f"{name}: takes one image; got {len(given)}")
        if p.kind == "images":
            p.check_length(len(given), "images")
    decoded = {name: [_decode(by_name[name], s, policy) for s in given] for name, given in sources.items()}
    values = {name: (imgs if by_name[name].kind == "images" else imgs[0]) for name, imgs in decoded.items()}
    inputs = schema.complete({**scalars, **values})
    if schema.extra is not None:  # the other fields, as one dict
        inputs[schema.extra] = {k: v for k, v in scalars.items() if k not in by_name}
    return inputs


def _decode(p: Param, source: Source, policy: images.ImagePolicy) -> Any:
    how, value, filename = source
    if how == "bytes":
        return images.decode(value, p.name, policy, filename=filename)
    return images.from_json(value, p.name, policy)


def _param(schema: SolverSchema, name: str) -> Param:
    p = schema.by_name.get(name)
    if p is None:
        if schema.extra is not None:
            return Param(name, "string", required=False)  # not an input: a text field for ``extra``
        schema.no_such_input(name)
    return p


def _set(scalars: dict[str, Any], p: Param, value: Any) -> None:
    if p.name in scalars:
        raise field_error("invalid_field", p.name, f"{p.name}: given more than once")
    scalars[p.name] = value


def _from_multipart(schema: SolverSchema, content_type: str, body: bytes, scalars: dict[str, Any],
                    sources: dict[str, list[Source]]) -> None:
    try:
        parts = parse_multipart(body, boundary_of(content_type))
    except MultipartError as exc:
        raise RunnerError("invalid_multipart", f"multipart/form-data: {exc}") from None
    for part in parts:
        p = _param(schema, part.name)
        if p.is_image:
            if not part.is_file:
                raise field_error("invalid_field", p.name, f"{p.name}: expects a file upload"
                                  " (curl -F 'name=@file.png'), not a text field")
            sources.setdefault(p.name, []).append(("bytes", part.data, part.filename))
        else:
            if part.is_file:
                raise field_error("invalid_field", p.name, f"{p.name}: expects a value, not a file")
            try:
                text = part.text()
            except MultipartError as exc:
                raise field_error("invalid_field", p.name, f"{p.name}: {exc}") from None
            _set(scalars, p, p.from_text(text))


def parse_json(body: bytes) -> Any:
    """A request body as JSON, its nesting bounded before parsing.

    Raises:
        RunnerError: ``too_deep`` or ``invalid_json``.
    """
    try:
        return loads_json(body)
    except TooDeepError as exc:
        raise RunnerError("too_deep", f"the body is not read: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunnerError("invalid_json", f"the body is not valid JSON: {exc}") from None


def _from_json(schema: SolverSchema, body: bytes, scalars: dict[str, Any], sources: dict[str, list[Source]]) -> None:
    data = parse_json(body) if body.strip() else {}
    if not isinstance(data, dict):
        raise RunnerError("invalid_json", f"the body must be a JSON object of inputs, not {type(data).__name__}")
    for name, value in data.items():
        p = _param(schema, name)
        if p.kind == "image":
            if value is None and p.nullable:
                scalars[name] = None
            else:
                sources[name] = [("json", value, None)]
        elif p.kind == "images":
            if value is None and p.nullable:
                scalars[name] = None
            elif not isinstance(value, list):
                raise field_error("invalid_field", name, f"{name}: must be a list of images")
            else:
                sources[name] = [("json", v, None) for v in value]
        elif name not in schema.by_name:
            _set(scalars, p, value)  # a field for ``extra``: as given
        else:
            _set(scalars, p, p.from_json(value))


def _from_pairs(schema: SolverSchema, pairs: list[tuple[str, str]], scalars: dict[str, Any],
                sources: dict[str, list[Source]], *, form: bool) -> None:
    for name, text in pairs:
        p = _param(schema, name)
        if p.is_image:
            if not form:
                raise field_error("invalid_field", name, f"{name}: an image cannot go in the query string")
            sources.setdefault(name, []).append(("json", text, None))
        else:
            _set(scalars, p, p.from_text(text))


def _from_raw(schema: SolverSchema, body: bytes, sources: dict[str, list[Source]]) -> None:
    target = schema.raw_image()
    if target is None:
        raise RunnerError("unsupported_media_type",
                          f"a raw image body needs a solver with one image input (or one required one); this one has"
                          f" {len(schema.images)}: send multipart/form-data or JSON")
    sources[target.name] = [("bytes", body, None)]


def _pairs(text: str) -> list[tuple[str, str]]:
    if not text:
        return []
    try:
        return urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=1000)
    except ValueError as exc:
        raise RunnerError("invalid_field", f"cannot parse the form fields: {exc}") from None

"""A solver's request schema, read from the type hints of its ``infer`` method (as Cog reads ``predict``).

Each parameter after ``self`` becomes an input:

| hint | input | multipart | JSON |
| --- | --- | --- | --- |
| ``Image`` | one image | a file part | base64 text, a ``data:`` URL, or ``{"url": ...}`` |
| ``list[Image]`` | images | the same field repeated | a list of those |
| ``int``, ``float``, ``str``, ``bool`` | a value | a text part | a JSON value |
| ``Literal["a", "b"]``, an ``Enum`` | one of the choices | a text part | a JSON value |

``X | None`` accepts null (JSON) and makes the input optional; a default makes it optional
too. ``Annotated[T, Input(...)]`` adds a description and bounds. Anything else is refused
when the runner loads the solver, with a message naming the parameter.
"""

from __future__ import annotations

import enum
import inspect
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from cvflow.runner.errors import RunnerError, field_error
from cvflow.solver import Image, Input

#: What an input takes: one image, a list of images, or a JSON scalar.
ParamKind = Literal["image", "images", "integer", "number", "string", "boolean"]
_KIND_OF: dict[type, ParamKind] = {int: "integer", float: "number", str: "string", bool: "boolean"}
_JSON_TYPE = {"integer": "integer", "number": "number", "string": "string", "boolean": "boolean"}
_INT_RE = re.compile(r"\A[+-]?\d{1,30}\Z")
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})


class SchemaError(TypeError):
    """A solver's ``infer`` has a parameter the runner cannot turn into an input."""


@dataclass(frozen=True)
class Param:
    """One input of a solver."""

    name: str
    kind: ParamKind
    required: bool
    default: Any = None
    nullable: bool = False
    choices: tuple[Any, ...] | None = None
    enum_type: type[enum.Enum] | None = None
    spec: Input | None = None

    @property
    def is_image(self) -> bool:
        return self.kind in ("image", "images")

    @property
    def description(self) -> str | None:
        return self.spec.description if self.spec else None

    # -- values -----------------------------------------------------------------------------

    def from_json(self, value: Any) -> Any:
        """A scalar input from a JSON value, checked. Raises RunnerError (422)."""
        if value is None:
            if self.nullable:
                return None
            raise self._invalid("must not be null")
        kind = self.kind
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int | float) or (
                    isinstance(value, float) and not value.is_integer()):
                raise self._invalid(f"must be an integer, not {_describe(value)}")
            value = int(value)
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise self._invalid(f"must be a finite number, not {_describe(value)}")
            value = float(value)
        elif kind == "string":
            if not isinstance(value, str):
                raise self._invalid(f"must be a string, not {_describe(value)}")
        elif kind == "boolean" and not isinstance(value, bool):
            raise self._invalid(f"must be true or false, not {_describe(value)}")
        return self._check(value)

    def from_text(self, text: str) -> Any:
        """A scalar input from a form field or query parameter. Raises RunnerError (422)."""
        kind = self.kind
        if kind == "integer":
            if not _INT_RE.match(text.strip()):
                raise self._invalid(f"must be an integer, not {text[:40]!r}")
            value: Any = int(text)
        elif kind == "number":
            try:
                value = float(text)
            except ValueError:
                raise self._invalid(f"must be a number, not {text[:40]!r}") from None
            if not math.isfinite(value):
                raise self._invalid("must be a finite number")
        elif kind == "boolean":
            low = text.strip().lower()
            if low not in _TRUE | _FALSE:
                raise self._invalid(f"must be true or false, not {text[:40]!r}")
            value = low in _TRUE
        else:
            value = text
        return self._check(value)

    def _check(self, value: Any) -> Any:
        spec = self.spec
        if self.choices is not None and value not in self.choices:
            raise self._invalid(f"must be one of {', '.join(map(_show, self.choices))}; got {_show(value)}")
        if spec is not None:
            if isinstance(value, int | float) and not isinstance(value, bool):
                for bound, words, ok in ((spec.ge, ">=", operator.ge), (spec.gt, ">", operator.gt),
                                         (spec.le, "<=", operator.le), (spec.lt, "<", operator.lt)):
                    if bound is not None and not ok(value, bound):
                        raise self._invalid(f"must be {words} {_show(bound)}; got {_show(value)}")
            if isinstance(value, str):
                self.check_length(len(value), "characters")
        if self.enum_type is not None:
            return self.enum_type(value)
        return value

    def check_length(self, n: int, unit: str) -> None:
        spec = self.spec
        if spec is None:
            return
        if spec.min_length is not None and n < spec.min_length:
            raise self._invalid(f"needs at least {spec.min_length} {unit}; got {n}")
        if spec.max_length is not None and n > spec.max_length:
            raise self._invalid(f"takes at most {spec.max_length} {unit}; got {n}")

    def _invalid(self, message: str) -> RunnerError:
        return field_error("invalid_field", self.name, f"{self.name}: {message}")

    # -- JSON Schema ------------------------------------------------------------------------

    def json_schema(self, *, multipart: bool) -> dict[str, Any]:
        if self.kind == "image":
            schema = dict(_BINARY if multipart else _IMAGE_JSON)
        elif self.kind == "images":
            schema = {"type": "array", "items": _BINARY if multipart else _IMAGE_JSON}
            if self.spec and self.spec.min_length is not None:
                schema["minItems"] = self.spec.min_length
            if self.spec and self.spec.max_length is not None:
                schema["maxItems"] = self.spec.max_length
        else:
            schema = {"type": _JSON_TYPE[self.kind]}
            if self.choices is not None:
                schema["enum"] = list(self.choices)
            spec = self.spec
            if spec is not None:
                for key, bound in (("minimum", spec.ge), ("exclusiveMinimum", spec.gt), ("maximum", spec.le),
                                   ("exclusiveMaximum", spec.lt), ("minLength", spec.min_length),
                                   ("maxLength", spec.max_length)):
                    if bound is not None:
                        schema[key] = bound
            if not self.required and self.default is not None:
                schema["default"] = self.default.value if isinstance(self.default, enum.Enum) else self.default
        if self.nullable and not multipart:
            schema = {"anyOf": [schema, {"type": "null"}]}
        if self.description:
            schema["description"] = self.description
        return schema


_BINARY = {"type": "string", "format": "binary"}
_IMAGE_JSON: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "contentEncoding": "base64",
         "description": "the image file's bytes in base64, or a data: URL (data:image/png;base64,...)"},
        {"type": "object", "properties": {"url": {"type": "string", "format": "uri"}}, "required": ["url"],
         "additionalProperties": False,
         "description": "an http(s) URL the runner fetches; only URLs it was told to allow"},
    ]
}


def _describe(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), _show(value))


def _show(value: Any) -> str:
    return repr(value.value if isinstance(value, enum.Enum) else value)


@dataclass(frozen=True)
class SolverSchema:
    """The inputs of one solver and the JSON Schema of its result."""

    params: tuple[Param, ...]
    result: dict[str, Any]
    #: When set, fields that are not inputs are taken, not refused: ``infer`` gets them as a dict
    #: under this keyword (a 2019 CVPM solver's ``config``, ``cvflow.runner.cvpm_compat.adapter``).
    extra: str | None = None

    @property
    def by_name(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    @property
    def images(self) -> list[Param]:
        return [p for p in self.params if p.is_image]

    def raw_image(self) -> Param | None:
        """The input a raw ``image/*`` body goes to: the only image input, else the only required
        single-image input; None when there is no such one."""
        images = self.images
        if len(images) == 1:
            return images[0]
        required = [p for p in images if p.kind == "image" and p.required]
        return required[0] if len(required) == 1 else None

    def request_schema(self, *, multipart: bool) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {p.name: p.json_schema(multipart=multipart) for p in self.params},
            "additionalProperties": False if self.extra is None else {"type": "string"} if multipart else {},
        }
        required = [p.name for p in self.params if p.required]
        if required:
            schema["required"] = required
        return schema

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params if not p.required}

    def complete(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` plus the defaults of what is missing; every required input must be there.

        Raises:
            RunnerError: ``missing_field`` for the first required input that is missing.
        """
        out = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = given[p.name]
            elif p.required:
                raise field_error("missing_field", p.name, f"{p.name}: this input is required")
            else:
                out[p.name] = p.default
        return out

    def unknown(self, names: Sequence[str]) -> None:
        """Raises RunnerError ``unknown_field`` if a name is not an input."""
        for name in names:
            if name not in self.by_name:
                self.no_such_input(name)

    def no_such_input(self, name: str) -> NoReturn:
        """Raises RunnerError ``unknown_field`` for ``name``, which is not an input."""
        listed = ", ".join(self.by_name) or "none"
        raise field_error("unknown_field", name, f"{name}: the solver has no such input (its inputs: {listed})")


def schema_of(infer: Callable[..., Any], *, where: str) -> SolverSchema:
    """Build the schema of a solver's bound ``infer`` method.

    Raises:
        SchemaError: a parameter has no hint, an unsupported hint, or is ``*args``/``**kwargs``.
    """
    try:
        hints = typing.get_type_hints(infer, include_extras=True)
    except Exception as exc:  # a hint naming something its module does not import
        raise SchemaError(f"{where}: cannot read its type hints ({exc})") from exc
    params = []
    for p in inspect.signature(infer).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise SchemaError(f"{where}: *{p.name} and **{p.name} are not supported; name each input")
        if p.kind is p.POSITIONAL_ONLY:
            raise SchemaError(f"{where}: parameter {p.name} is positional-only; inputs are passed by name")
        if p.name not in hints:
            raise SchemaError(f"{where}: parameter {p.name} has no type hint; the runner needs one to build"
                              " the request schema (Image, list[Image], int, float, str, bool, Literal, Enum)")
        params.append(_param(p, hints[p.name], where))
    return SolverSchema(tuple(params), result_schema(hints.get("return", Any)))


def _param(p: inspect.Parameter, hint: Any, where: str) -> Param:
    spec = None
    if typing.get_origin(hint) is typing.Annotated:
        spec = next((m for m in hint.__metadata__ if isinstance(m, Input)), None)
        hint = hint.__origin__
    nullable = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise SchemaError(f"{where}: parameter {p.name}: unions other than X | None are not supported")
        hint = args[0]
        if typing.get_origin(hint) is typing.Annotated:
            spec = spec or next((m for m in hint.__metadata__ if isinstance(m, Input)), None)
            hint = hint.__origin__
    has_default = p.default is not inspect.Parameter.empty
    default = p.default if has_default else None
    required = not has_default and not nullable
    common: dict[str, Any] = {"name": p.name, "required": required, "default": default, "nullable": nullable,
                              "spec": spec}

    if hint is Image:
        return Param(kind="image", **common)
    origin = typing.get_origin(hint)
    if origin in (list, Sequence, typing.List) and typing.get_args(hint) == (Image,):  # noqa: UP006
        return Param(kind="images", **common)
    if hint in _KIND_OF:
        return Param(kind=_KIND_OF[hint], **common)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        kinds = {_KIND_OF.get(type(c)) for c in choices}
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind is None:
            raise SchemaError(f"{where}: parameter {p.name}: Literal choices must all be str, int, float or bool")
        return Param(kind=kind, choices=tuple(choices), **common)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = tuple(m.value for m in hint)
        kinds = {_KIND_OF.get(type(v)) for v in values}
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind is None:
            raise SchemaError(f"{where}: parameter {p.name}: {hint.__name__}'s values must all be str or all int")
        if has_default and isinstance(default, hint):
            common["default"] = default
        return Param(kind=kind, choices=values, enum_type=hint, **common)
    raise SchemaError(f"{where}: parameter {p.name} has type {_hint_name(hint)}, which the runner cannot take"
                      " from a request; use Image, list[Image], int, float, str, bool, a Literal or an Enum")


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or repr(hint)


def result_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of ``infer``'s return hint, as far as it can be told; ``{}`` (anything) otherwise."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = hint.__origin__
    if hint is Any or hint is inspect.Parameter.empty:
        return {}
    if hint is None or hint is type(None):
        return {"type": "null"}
    if hint in _KIND_OF:
        return {"type": _JSON_TYPE[_KIND_OF[hint]]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        out: dict[str, Any] = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            out["additionalProperties"] = result_schema(args[1])
        return out
    if hint in (list, tuple) or origin in (list, tuple, Sequence):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return {"type": "array"}
        return {"type": "array", "items": result_schema(args[0])} if args else {"type": "array"}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [result_schema(a) for a in args]}
    if isinstance(hint, type) and typing.is_typeddict(hint):
        props = typing.get_type_hints(hint)
        return {"type": "object", "properties": {k: result_schema(v) for k, v in props.items()},
                "required": sorted(getattr(hint, "__required_keys__", props))}
    return {}

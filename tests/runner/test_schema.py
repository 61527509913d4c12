"""Request schemas from ``infer``'s type hints: what is accepted, what is refused, the JSON Schema."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, Optional, TypedDict

import pytest

from cvflow.runner.errors import RunnerError
from cvflow.runner.schema import SchemaError, result_schema, schema_of
from cvflow.solver import Image, Input


class Size(enum.Enum):
    SMALL = 1
    LARGE = 2


class Out(TypedDict):
    label: str
    score: float


class Solver:
    def infer(self, image: Image, images: list[Image], k: Annotated[int, Input(ge=1, le=5)] = 2,
              threshold: Optional[float] = None, name: str = "a", size: Size = Size.SMALL,  # noqa: UP045
              mode: Literal["a", "b"] = "a", exact: bool = False) -> Out:
        raise NotImplementedError


def params() -> dict[str, Any]:
    return schema_of(Solver().infer, where="t").by_name


def test_each_hint_becomes_an_input_of_the_right_kind():
    p = params()
    assert {n: (x.kind, x.required, x.nullable) for n, x in p.items()} == {
        "image": ("image", True, False), "images": ("images", True, False), "k": ("integer", False, False),
        "threshold": ("number", False, True), "name": ("string", False, False), "size": ("integer", False, False),
        "mode": ("string", False, False), "exact": ("boolean", False, False)}
    assert p["size"].choices == (1, 2) and p["mode"].choices == ("a", "b")


def test_values_are_checked_and_converted():
    p = params()
    assert p["k"].from_text("3") == 3 and p["k"].from_json(3) == 3 and p["k"].from_json(4.0) == 4
    assert p["threshold"].from_text("0.25") == 0.25 and p["threshold"].from_json(None) is None
    assert p["size"].from_text("2") is Size.LARGE and p["size"].from_json(1) is Size.SMALL
    assert p["exact"].from_text("yes") is True and p["exact"].from_text("0") is False
    for param, value, words in [("k", "6", "must be <= 5"), ("k", "0", "must be >= 1"), ("k", "1.5", "integer"),
                                ("threshold", "nan", "finite"), ("size", "3", "one of 1, 2"),
                                ("mode", "c", "one of 'a', 'b'"), ("exact", "maybe", "true or false")]:
        with pytest.raises(RunnerError) as info:
            p[param].from_text(value)
        assert info.value.code == "invalid_field" and words in info.value.message, info.value.message
    for param, value in [("k", True), ("k", "3"), ("name", 3), ("exact", 1), ("name", None), ("threshold", "x")]:
        with pytest.raises(RunnerError):
            p[param].from_json(value)


def test_json_schema_and_result_schema():
    schema = schema_of(Solver().infer, where="t")
    form = schema.request_schema(multipart=True)
    assert form["required"] == ["image", "images"] and form["additionalProperties"] is False
    assert form["properties"]["k"] == {"type": "integer", "minimum": 1, "maximum": 5, "default": 2}
    assert form["properties"]["size"] == {"type": "integer", "enum": [1, 2], "default": 1}
    assert schema.request_schema(multipart=False)["properties"]["threshold"] == {
        "anyOf": [{"type": "number"}, {"type": "null"}]}
    assert schema.result == {"type": "object", "properties": {"label": {"type": "string"},
                                                              "score": {"type": "number"}},
                             "required": ["label", "score"]}
    assert result_schema(list[dict[str, float]]) == {"type": "array", "items": {
        "type": "object", "additionalProperties": {"type": "number"}}}
    assert result_schema(Any) == {} and result_schema(object) == {}


class Unhinted:
    def infer(self, image):  # type: ignore[no-untyped-def]
        pass


class Starred:
    def infer(self, *images: Image) -> None:
        pass


class Unsupported:
    def infer(self, image: Image, box: tuple[int, int]) -> None:
        pass


class Mixed:
    def infer(self, x: Literal["a", 1]) -> None:
        pass


class Union:
    def infer(self, x: int | str) -> None:
        pass


@pytest.mark.parametrize(("cls", "words"), [
    (Unhinted, "parameter image has no type hint"),
    (Starred, "*images and **images are not supported"),
    (Unsupported, "parameter box has type tuple"),
    (Mixed, "Literal choices must all be"),
    (Union, "unions other than X | None"),
])
def test_hints_the_runner_cannot_serve_are_refused_by_name(cls, words):
    with pytest.raises(SchemaError, match="solver x: ") as info:
        schema_of(cls().infer, where="solver x: C.infer")
    assert words in str(info.value)

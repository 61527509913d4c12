"""A solver's ``suggest`` declaration: where its output holds labels an annotation project can use.

``cvflow annotate suggest`` (``cvflow.annotate``) reads it to turn the solver's JSON output into
suggestions (docs/annotation.md)::

    suggest = { kind = "boxes" }    # output {"boxes": [{"class": "car", "bbox": [x, y, w, h], "score": 0.9}]}
    suggest = { kind = "boxes", field = "faces", class = "face", box_field = "box" }
    suggest = { kind = "scores" }   # output {"scores": {"cat": 0.8, "dog": 0.2}}

| key | meaning | default |
| --- | --- | --- |
| ``kind`` | ``boxes`` (detection) or ``scores`` (classification) | required |
| ``field`` | where the list (or mapping) lives in the output; dots go deeper | ``boxes`` / ``scores`` |
| ``class`` | the class of every entry that names none | none |
| ``class_field`` | an entry's class | ``class`` |
| ``score_field`` | an entry's score | ``score`` |
| ``box_field`` | (boxes) an entry's box: ``[a, b, c, d]`` or a table | ``bbox`` |
| ``bbox`` | (boxes) ``xywh`` (COCO) or ``xyxy`` (corners) | ``xywh`` |

A ``scores`` field holds a ``{class: score}`` mapping or a list of ``{class, score}`` entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from cvflow.errors import Problem
from cvflow.manifest.dataset import class_name_problem

SuggestKind = Literal["boxes", "scores"]
BoxFormat = Literal["xywh", "xyxy"]
SUGGEST_KINDS: tuple[str, ...] = get_args(SuggestKind)
BOX_FORMATS: tuple[str, ...] = get_args(BoxFormat)
_KEY_RE = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
_PATH_RE = re.compile(r"\A[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64}){0,7}\Z")
_KEYS = ("kind", "field", "class", "class_field", "score_field", "box_field", "bbox")
_BOX_ONLY = ("box_field", "bbox")


@dataclass(frozen=True)
class Suggest:
    """How a solver's output becomes suggestions; every default filled in."""

    kind: SuggestKind
    field: str
    fixed_class: str | None = None  # ``class`` in the manifest
    class_field: str = "class"
    score_field: str = "score"
    box_field: str = "bbox"
    bbox: BoxFormat = "xywh"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "field": self.field, "class": self.fixed_class,
                               "class_field": self.class_field, "score_field": self.score_field}
        if self.kind == "boxes":
            out.update(box_field=self.box_field, bbox=self.bbox)
        return out


def parse_suggest(raw: object, where: str) -> tuple[Suggest | None, list[Problem]]:
    """The declaration at ``where`` (``solvers[0].suggest``), or None and every problem found."""
    problems: list[Problem] = []

    def bad(key: str, message: str, code: str = "invalid_field") -> None:
        problems.append(Problem(code, f"{where}.{key}" if key else where, message))

    if not isinstance(raw, dict):
        bad("", 'suggest must be a table like { kind = "boxes" }')
        return None, problems
    for key in raw:
        if key not in _KEYS:
            bad(key, f"unknown key {key!r} in suggest (it takes: {', '.join(_KEYS)})", "unknown_key")
    kind = raw.get("kind")
    if kind is None:
        bad("kind", f"suggest needs a kind: {' or '.join(SUGGEST_KINDS)}", "missing_field")
    elif kind not in SUGGEST_KINDS:
        bad("kind", f"kind must be {' or '.join(SUGGEST_KINDS)}, not {kind!r}")
    field = raw.get("field", "scores" if kind == "scores" else "boxes")
    if not isinstance(field, str) or not _PATH_RE.match(field):
        bad("field", f"field must name a key of the output ([A-Za-z0-9_-], dots to go deeper), not {field!r}")
    fixed = raw.get("class")
    if fixed is not None and (why := class_name_problem(fixed)) is not None:
        bad("class", why)
    keys = {}
    for key, default in (("class_field", "class"), ("score_field", "score"), ("box_field", "bbox")):
        value = raw.get(key, default)
        if not isinstance(value, str) or not _KEY_RE.match(value):
            bad(key, f"{key} must be a key name of 1 to 64 characters [A-Za-z0-9_-], not {value!r}")
        keys[key] = value
    bbox = raw.get("bbox", "xywh")
    if bbox not in BOX_FORMATS:
        bad("bbox", f"bbox must be {' or '.join(BOX_FORMATS)} (x, y, width, height or two corners), not {bbox!r}")
    if kind == "scores":
        for key in _BOX_ONLY:
            if key in raw:
                bad(key, f"{key} is for kind = \"boxes\"; a scores output has no boxes")
    if problems or kind not in ("boxes", "scores"):
        return None, problems
    return Suggest(kind=kind, field=field, fixed_class=fixed, class_field=keys["class_field"],
                   score_field=keys["score_field"], box_field=keys["box_field"], bbox=bbox), []

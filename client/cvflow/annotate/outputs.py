"""A solver's JSON output -> an annotation project's suggestions, as its ``suggest`` declaration says.

Detection suggestions are ``{"class", "bbox": [x, y, w, h], "score"}`` in image pixels, clipped
to the image; classification suggestions are ``{"class", "score"}``, best first, the top
:data:`TOP_CLASSES`. What cannot be a suggestion of this project is dropped and counted by
reason (:data:`DROP_REASONS`): a class the project lacks, a box of no size once clipped, an
entry that is not shaped as declared. An output without the declared field at all is the
declaration's fault, not one image's, and raises :class:`SuggestOutputError`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cvflow.errors import CVFlowError
from cvflow.manifest.suggest import Suggest

#: Classification: how many classes are suggested, best first.
TOP_CLASSES = 5
#: Most suggestions on one item (the hub's limit); the best scores are kept.
MAX_SUGGESTIONS = 1000
#: A score when the output gives none.
DEFAULT_SCORE = 1.0
DROP_REASONS = ("unknown_class", "no_class", "empty_box", "malformed", "too_many")

# Keys a box given as a table may use, per format.
_XYWH = (("x", "left"), ("y", "top"), ("width", "w"), ("height", "h"))
_XYXY = (("x1", "xmin", "left"), ("y1", "ymin", "top"), ("x2", "xmax", "right"), ("y2", "ymax", "bottom"))


class SuggestOutputError(CVFlowError):
    """The solver's output does not hold what its ``suggest`` declaration says."""

    code = "suggest_output"


@dataclass
class Mapped:
    """The suggestions for one image, and how many entries were dropped, by reason."""

    suggestions: list[dict[str, Any]]
    dropped: Counter[str] = field(default_factory=Counter)


def to_suggestions(output: Any, suggest: Suggest, classes: Sequence[str], width: int, height: int) -> Mapped:
    """Map one solver output (parsed JSON) to suggestions for an image of ``width`` x ``height``.

    Raises:
        SuggestOutputError: the output is not an object, or lacks ``suggest.field`` (or it is
            not a list, or for ``scores`` a mapping or list).
    """
    value = _field(output, suggest.field)
    known = frozenset(classes)
    if suggest.kind == "scores":
        return _scores(value, suggest, known)
    if not isinstance(value, list):
        raise SuggestOutputError(f"the solver's output field {suggest.field!r} is a {type(value).__name__},"
                                 " not the list of boxes its suggest declaration promises")
    dropped: Counter[str] = Counter()
    out = []
    for entry in value:
        box = _box(entry, suggest, known, width, height, dropped)
        if box is not None:
            out.append(box)
    out.sort(key=lambda s: -s["score"])
    if len(out) > MAX_SUGGESTIONS:
        dropped["too_many"] += len(out) - MAX_SUGGESTIONS
        del out[MAX_SUGGESTIONS:]
    return Mapped(out, dropped)


def _field(output: Any, path: str) -> Any:
    value = output
    for i, key in enumerate(path.split(".")):
        if not isinstance(value, Mapping):
            where = "the output" if i == 0 else repr(".".join(path.split(".")[:i]))
            raise SuggestOutputError(f"{where} is a {type(value).__name__}, not an object with {key!r}"
                                     " as the solver's suggest declaration says")
        if key not in value:
            have = ", ".join(sorted(map(str, value))[:10]) or "nothing"
            raise SuggestOutputError(f"the solver's output has no {path!r}, which its suggest declaration names"
                                     f" (it has: {have}); fix `suggest.field` in its cvflow.toml")
        value = value[key]
    return value


def _score(value: object) -> float | None:
    """A finite number clamped to 0..1; None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return round(min(1.0, max(0.0, float(value))), 4)


def _class(entry: Mapping[str, Any], suggest: Suggest, known: frozenset[str], dropped: Counter[str]) -> str | None:
    return _known(entry.get(suggest.class_field, suggest.fixed_class), known, dropped)


def _known(name: object, known: frozenset[str], dropped: Counter[str]) -> str | None:
    """``name`` if it is a class of the project (an integer class, e.g. a digit, as its text)."""
    if name is None:
        dropped["no_class"] += 1
        return None
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)
    if not isinstance(name, str) or name not in known:
        dropped["unknown_class"] += 1
        return None
    return name


def _box(entry: object, suggest: Suggest, known: frozenset[str], width: int, height: int,
         dropped: Counter[str]) -> dict[str, Any] | None:
    if not isinstance(entry, Mapping):
        dropped["malformed"] += 1
        return None
    corners = _corners(entry.get(suggest.box_field), suggest.bbox)
    score = _score(entry.get(suggest.score_field, DEFAULT_SCORE))
    if corners is None or score is None:
        dropped["malformed"] += 1
        return None
    name = _class(entry, suggest, known, dropped)
    if name is None:
        return None
    x0, y0, x1, y1 = corners
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)
    w, h = round(x1 - x0, 2), round(y1 - y0, 2)
    if w <= 0 or h <= 0:
        dropped["empty_box"] += 1
        return None
    return {"class": name, "bbox": [round(x0, 2), round(y0, 2), w, h], "score": score}


def _corners(raw: object, fmt: str) -> tuple[float, float, float, float] | None:
    """``(x0, y0, x1, y1)`` from ``[a, b, c, d]`` or a table (``{x, y, width, height}``, ``{x1, ...}``)."""
    if isinstance(raw, Mapping):
        names = _XYWH if fmt == "xywh" else _XYXY
        values = [next((raw[k] for k in keys if k in raw), None) for keys in names]
    elif isinstance(raw, (list, tuple)) and len(raw) == 4:
        values = list(raw)
    else:
        return None
    numbers = [float(v) for v in values
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(numbers) != 4:
        return None
    a, b, c, d = numbers
    return (a, b, a + c, b + d) if fmt == "xywh" else (a, b, c, d)


def _scores(value: object, suggest: Suggest, known: frozenset[str]) -> Mapped:
    dropped: Counter[str] = Counter()
    pairs: list[tuple[object, object]]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for entry in value:
            if isinstance(entry, Mapping):
                pairs.append((entry.get(suggest.class_field, suggest.fixed_class),
                              entry.get(suggest.score_field, DEFAULT_SCORE)))
            else:
                dropped["malformed"] += 1
    else:
        raise SuggestOutputError(f"the solver's output field {suggest.field!r} is a {type(value).__name__}, not"
                                 " the {class: score} mapping (or list of {class, score}) its suggest declaration"
                                 " promises")
    best: dict[str, float] = {}
    for raw_name, raw in pairs:
        score = _score(raw)
        if score is None:
            dropped["malformed"] += 1
        elif (name := _known(raw_name, known, dropped)) is not None:
            best[name] = max(score, best.get(name, 0.0))
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    return Mapped([{"class": name, "score": score} for name, score in ranked[:TOP_CLASSES]], dropped)

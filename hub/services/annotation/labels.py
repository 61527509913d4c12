"""The shape of labels and suggestions, checked once for every path that stores them.

Detection: a label is ``{"class": NAME, "bbox": [x, y, w, h], "from": I | null}`` in image
pixels (COCO's box), inside the image and of positive size; a suggestion is ``{"class": NAME,
"bbox": [...], "score": S}``. Classification: at most one label ``{"class": NAME, "from": I |
null}``; suggestions are ``{"class": NAME, "score": S}``, best first. ``from`` is the index of the
suggestion the label started from (null when drawn by hand), which is how a save is counted as
accepted, edited, rejected or added (:func:`compare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hub.errors import HubError

#: Most labels (or suggestions) on one item.
MAX_LABELS = 1000
#: A box may overhang its image by this much from rounding, and is then clipped.
_SLACK = 0.5
#: A suggestion kept within this many pixels on every side counts as accepted unchanged.
SAME_BOX_PX = 1.0


@dataclass
class Counts:
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    added: int = 0


def _problem(problems: list[dict[str, Any]], where: str, message: str) -> None:
    if len(problems) < 50:
        problems.append({"field": where, "message": message})


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check(raw: object, *, task: str, classes: list[str], width: int, height: int,
          suggestions: bool = False, known: int = 0) -> list[dict[str, Any]]:
    """``raw`` as normalised labels (or suggestions), or ``invalid_labels`` listing each problem.

    ``known`` is how many suggestions the item has, the bound for a label's ``from``.
    """
    kind = "suggestions" if suggestions else "labels"
    if not isinstance(raw, list):
        raise HubError("invalid_labels", f"{kind} must be a list")
    if len(raw) > MAX_LABELS:
        raise HubError("invalid_labels", f"at most {MAX_LABELS} {kind} per item")
    if task == "classification" and not suggestions and len(raw) > 1:
        raise HubError("invalid_labels", "a classification item has at most one label")
    names = set(classes)
    problems: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    used: set[int] = set()
    for i, entry in enumerate(raw):
        where = f"{kind}[{i}]"
        if not isinstance(entry, dict):
            _problem(problems, where, "must be an object")
            continue
        name = entry.get("class")
        if not isinstance(name, str) or name not in names:
            _problem(problems, f"{where}.class", "unknown class: use one of the project's classes")
            continue
        item: dict[str, Any] = {"class": name}
        if task == "detection":
            box = entry.get("bbox")
            if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
                _problem(problems, f"{where}.bbox", "must be [x, y, width, height], four finite numbers")
                continue
            x, y, w, h = (float(v) for v in box)
            if w <= 0 or h <= 0:
                _problem(problems, f"{where}.bbox", "width and height must be positive")
                continue
            if x < -_SLACK or y < -_SLACK or x + w > width + _SLACK or y + h > height + _SLACK:
                _problem(problems, f"{where}.bbox", f"the box leaves the {width}x{height} image")
                continue
            x0, y0 = max(x, 0.0), max(y, 0.0)
            x1, y1 = min(x + w, float(width)), min(y + h, float(height))
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                _problem(problems, f"{where}.bbox", "width and height must be positive")
                continue
            item["bbox"] = [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]
        if suggestions:
            score = entry.get("score")
            if not isinstance(score, (int, float)) or not _number(score) or not 0.0 <= float(score) <= 1.0:
                _problem(problems, f"{where}.score", "must be a number from 0 to 1")
                continue
            item["score"] = round(float(score), 4)
        else:
            origin = entry.get("from")
            if origin is not None:
                if not isinstance(origin, int) or isinstance(origin, bool) or not 0 <= origin < known:
                    _problem(problems, f"{where}.from", "must be the index of one of the item's suggestions, or null")
                    continue
                if origin in used:
                    _problem(problems, f"{where}.from", "two labels start from the same suggestion")
                    continue
                used.add(origin)
            item["from"] = origin
        out.append(item)
    if problems:
        raise HubError("invalid_labels", f"{len(problems)} problem(s) in the {kind}", details={"problems": problems})
    if suggestions and task == "classification":
        out.sort(key=lambda s: -s["score"])
    return out


def confidence(suggestions: list[dict[str, Any]], task: str) -> float | None:
    """The uncertainty queue's key: the lowest box score, or the top class score; None if none."""
    if not suggestions:
        return None
    if task == "classification":
        return max(float(s["score"]) for s in suggestions)
    return min(float(s["score"]) for s in suggestions)


def compare(labels: list[dict[str, Any]], suggestions: list[dict[str, Any]] | None) -> Counts:
    """How a save used the suggestions: kept as they were, changed, dropped, or drawn by hand."""
    counts = Counts()
    suggestions = suggestions or []
    used = set()
    for label in labels:
        origin = label.get("from")
        if origin is None or origin >= len(suggestions):
            counts.added += 1
            continue
        used.add(origin)
        s = suggestions[origin]
        same = s["class"] == label["class"] and (
            "bbox" not in s or all(abs(a - b) <= SAME_BOX_PX for a, b in zip(s["bbox"], label["bbox"], strict=True)))
        if same:
            counts.accepted += 1
        else:
            counts.edited += 1
    # Classification: the one suggestion that matters is the best one; the others were not offered.
    offered = range(min(len(suggestions), 1)) if suggestions and "bbox" not in suggestions[0] else range(len(suggestions))
    counts.rejected = sum(1 for i in offered if i not in used)
    return counts

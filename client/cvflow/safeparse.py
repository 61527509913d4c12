"""JSON and TOML parsing with a bound on nesting, checked before the parser runs.

``json.loads`` and ``tomllib.loads`` recurse once per level of nesting: a body of
100,000 ``[`` raises ``RecursionError`` (a 500, or a dead connection), and a TOML key of
100,000 dotted parts makes ``tomllib`` take minutes and gigabytes. Everything that reads
JSON or TOML from someone else (request bodies, manifests, documents from another hub,
bundles) goes through :func:`loads_json` / :func:`loads_toml`, which first scan the text
once, in linear time and without recursion, and refuse a document nested deeper than
``max_depth`` with :class:`TooDeepError` (a ``ValueError``).

Depth counts containers: a scalar is 0, ``{}`` and ``[]`` are 1, ``{"a": [1]}`` is 2. A
TOML document is a table, so it is at least 1; a table header ``[a.b]`` and a dotted key
``a.b = 1`` open one table per part. For a document within the bound the result is
exactly the standard library's; past it, :class:`TooDeepError`.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from itertools import accumulate
from typing import Any

#: Deep enough for any manifest, request body or solver input we know of; shallow enough
#: that the parsers (about three Python frames per level in tomllib) stay far from the
#: interpreter's recursion limit.
MAX_DEPTH = 64
#: For documents that carry manifests inside them (a hub's answers, a mirror's feed, a
#: bundle's index): a manifest may be ``MAX_DEPTH`` deep on its own.
MAX_DOCUMENT_DEPTH = 2 * MAX_DEPTH

__all__ = [
    "MAX_DEPTH", "MAX_DOCUMENT_DEPTH", "TooDeepError", "check_json_depth", "loads_json", "loads_toml", "toml_depth",
]


class TooDeepError(ValueError):
    """A document is nested deeper than the bound; raised before it is parsed."""

    def __init__(self, kind: str, max_depth: int) -> None:
        super().__init__(f"the {kind} document is nested more than {max_depth} levels deep")
        self.kind = kind
        self.max_depth = max_depth


# JSON: brackets outside strings are exactly the containers the parser builds. A string
# runs to its closing quote; an unterminated one runs to the end of the text: the parser fails
# there too, having read no structure past it, and taking the rest whole (rather than retrying
# at each later quote) keeps the scan linear.
_JSON_STRING_OR_REST = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_JSON_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_JSON_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def check_json_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`TooDeepError` if the JSON ``text`` nests deeper than ``max_depth``."""
    # Two regex passes and a running sum, all in C: a per-token Python loop cost more than
    # json.loads itself on a large document (a COCO file of 50,000 boxes).
    brackets = _JSON_NOT_BRACKET.sub("", _JSON_STRING_OR_REST.sub("", text))
    # Unbalanced input goes negative harmlessly: the parser refuses it.
    if len(brackets) > max_depth and max(accumulate(map(_JSON_STEP.__getitem__, brackets))) > max_depth:
        raise TooDeepError("JSON", max_depth)


def loads_json(data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted input.

    Raises:
        TooDeepError: nested deeper than ``max_depth`` (checked before parsing).
        json.JSONDecodeError: not JSON.
        UnicodeDecodeError: bytes that are not text in a JSON encoding.
    """
    if isinstance(data, (bytes, bytearray)):
        # What json.loads does with bytes, so that the scan sees the same characters.
        data = bytes(data).decode(json.detect_encoding(data), "surrogatepass")
    check_json_depth(data, max_depth)
    return json.loads(data)


# TOML: strings and comments are skipped whole; what remains of interest is structure.
_TOML_NEXT = re.compile(r"[\"'#\[\]{}=,.\n]")
_TOML_STRING = re.compile(
    r'"""(?:[^\\]|\\.)*?"""(?:""?)?'  # multi-line basic (one or two quotes may end its content)
    r"|'''.*?'''(?:''?)?"  # multi-line literal
    r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*"'  # basic
    r"|'[^'\n]*'",  # literal
    re.DOTALL,
)


def _toml_tokens(text: str) -> Iterator[str]:
    """The structural tokens of ``text``: ``[[``, ``]]``, brackets, ``=``, ``,``, ``.``, newline,
    and ``"`` for each string. Comments are skipped. It stops at an unterminated string, where
    the parser fails too, having read nothing past it; never retrying at a later quote keeps
    the scan linear."""
    pos = 0
    while (found := _TOML_NEXT.search(text, pos)) is not None:
        char, start = found.group(), found.start()
        if char in "\"'":
            string = _TOML_STRING.match(text, start)
            if string is None:
                return
            pos = string.end()
            yield '"'
        elif char == "#":
            end = text.find("\n", start)
            if end < 0:
                return
            pos = end
        elif char in "[]" and text.startswith(char * 2, start):
            pos = start + 2
            yield char * 2
        else:
            pos = start + 1
            yield char


def toml_depth(text: str, max_depth: int = MAX_DEPTH) -> int:
    """A lower bound on the nesting depth of the TOML ``text``, found without parsing.

    It counts what makes tables and arrays: header parts (``[a.b]`` is 2 deep, ``[[a.b]]``
    3), dotted key parts (``a.b.c = 1`` is 3 deep), and arrays and inline tables in values.
    It is exact but for headers under arrays of tables (``[[a]]`` then ``[a.b]``), where the
    document is deeper than it says, never shallower. Raises :class:`TooDeepError` as soon as
    the count passes ``max_depth``, so a hostile document costs one pass over its prefix.
    """
    deepest = 1

    def note(depth: int) -> None:
        nonlocal deepest
        if depth > deepest:
            deepest = depth
            if depth > max_depth:
                raise TooDeepError("TOML", max_depth)

    table = 1  # depth of the table that top-level key/value pairs go into
    stack: list[tuple[str, int]] = []  # open arrays and inline tables: (bracket, depth)
    header: str | None = None  # "[" or "[[" while inside a table header
    line_start = True  # nothing but blanks and comments since the last top-level newline
    in_key = True  # at a key: line start, after "{", after "," in an inline table
    parts = 1  # parts of the key (or header) being read

    for token in _toml_tokens(text):
        if token == '"':
            line_start = False
            continue
        if header is not None:
            if token == ".":
                parts += 1
                note(1 + parts)
            elif token in ("]", "]]"):
                table = 1 + parts + (token == "]]")
                note(table)
                header = None
            elif token == "\n":  # malformed: the parser will say so
                header, line_start, in_key, parts = None, True, True, 1
            continue
        if token == "\n":
            if not stack:
                line_start, in_key, parts = True, True, 1
            continue
        if line_start and token in ("[", "[["):
            header, parts, line_start = token, 1, False
            continue
        line_start = False
        if token == ".":
            if in_key:
                parts += 1
                note((stack[-1][1] if stack else table) + parts - 1)
        elif token == "=":
            if in_key:
                note((stack[-1][1] if stack else table) + parts - 1)
                in_key = False
        elif token in ("[", "[[", "{"):
            for bracket in token:
                if stack and stack[-1][0] == "[":
                    depth = stack[-1][1] + 1
                else:
                    depth = (stack[-1][1] if stack else table) + parts
                note(depth)
                stack.append((bracket, depth))
                in_key, parts = bracket == "{", 1
        elif token in ("]", "]]", "}"):
            for _ in token:
                if stack:
                    stack.pop()
            in_key = False
        elif token == "," and stack and stack[-1][0] == "{":
            in_key, parts = True, 1
    return deepest


def _depth(value: Any) -> int:
    """The nesting depth of parsed data, without recursion."""
    deepest = 0
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in children)
    return deepest


def loads_toml(text: str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """``tomllib.loads`` for untrusted input.

    Raises:
        TooDeepError: nested deeper than ``max_depth``. The scan before parsing catches
            what would make the parser recurse or crawl; a check of the parsed tables
            catches the few documents the scan counts short.
        tomllib.TOMLDecodeError: not TOML.
    """
    toml_depth(text, max_depth)
    data = tomllib.loads(text)
    if _depth(data) > max_depth:
        raise TooDeepError("TOML", max_depth)
    return data

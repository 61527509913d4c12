"""The bounded parsers against the standard library, on generated documents.

For every document: within the bound, ``loads_json``/``loads_toml`` give exactly what
``json.loads``/``tomllib.loads`` give; past it, ``TooDeepError``. The depth that decides is
measured on the standard library's own result, so the generators only need to produce
varied text, not to know its depth. The pre-parse TOML scan must never count deeper than
the document is (that would refuse a good manifest).
"""

from __future__ import annotations

import json
import string
import time
import tomllib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvflow.safeparse import MAX_DEPTH, TooDeepError, loads_json, loads_toml, toml_depth


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


# Text that tries to confuse a scanner: brackets, quotes, escapes, comment and key marks.
TRICKY = st.text(alphabet=st.sampled_from(list('[]{}"\'\\#=.,:\n\t ab\u00e9\u2028') + ["\U0001f600"]), max_size=12)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TRICKY,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TRICKY, children, max_size=4),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=json_values, bound=st.integers(1, 10), indent=st.sampled_from([None, 0, 2]),
       ascii_only=st.booleans(), encoding=st.sampled_from([None, "utf-8", "utf-16", "utf-32-le", "utf-16-be"]))
def test_json_equals_stdlib_within_the_bound_and_refuses_past_it(
    value: Any, bound: int, indent: int | None, ascii_only: bool, encoding: str | None
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    data: str | bytes = text if encoding is None else text.encode(encoding)
    expected = json.loads(data)
    if depth(expected) <= bound:
        assert loads_json(data, max_depth=bound) == expected
    else:
        with pytest.raises(TooDeepError):
            loads_json(data, max_depth=bound)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('[]{}"\\,:1 ')), max_size=40))
def test_json_garbage_is_refused_cleanly_or_parsed_identically(text: str) -> None:
    try:
        expected: Any = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):  # JSONDecodeError or TooDeepError, both ValueError
            loads_json(text, max_depth=3)
        return
    if depth(expected) <= 3:
        assert loads_json(text, max_depth=3) == expected


# -- TOML text, rendered with every construct that makes depth: headers, arrays of tables,
# dotted keys, inline tables, arrays; and strings and comments that mimic them.

BARE = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=5)
QUOTED_CONTENT = st.text(alphabet=st.sampled_from(list("[]{}.#=,'\" ab\\")), max_size=8)


@st.composite
def keys(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["bare", "bare", "basic", "literal"]))
    if kind == "bare":
        return draw(BARE)
    content = draw(QUOTED_CONTENT)
    if kind == "literal" and "'" not in content:
        return f"'{content}'"
    return json.dumps(content)  # a valid TOML basic string for this alphabet


@st.composite
def strings(draw: st.DrawFn) -> str:
    content = draw(TRICKY)
    kind = draw(st.sampled_from(["basic", "literal", "ml_basic", "ml_literal"]))
    if kind == "literal" and "'" not in content and "\n" not in content:
        return f"'{content}'"
    if kind == "ml_literal" and "'''" not in content and not content.endswith("'"):
        return f"'''{content}'''" if draw(st.booleans()) else f"'''\n{content}'''"
    body = json.dumps(content)[1:-1]  # escapes valid in TOML basic strings too
    if kind == "ml_basic":
        body = body.replace("\\n", "\n")
        extra = draw(st.sampled_from(["", '"', '""']))  # quotes just before the closing ones
        return f'"""{body}{extra}"""'
    return f'"{body}"'


scalars = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.sampled_from(["1.5", "-0.25", "6.02e23", "1e3", "inf", "+inf", "true", "false", "0x1F", "1_000",
                     "1979-05-27T07:32:00.999-07:00", "1979-05-27 07:32:00", "07:32:00.5", "1979-05-27"]),
    strings(),
)

GAP = st.sampled_from(["", " ", "  ", "\t"])
COMMENT = st.sampled_from(["", " # [[x]] {y.z} = '\"", " #", " # a.b.c = [1"])


@st.composite
def values(draw: st.DrawFn, level: int = 0) -> str:
    choice = draw(st.integers(0, 5 if level < 6 else 0))
    if choice <= 2:
        return draw(scalars)
    if choice in (3, 4):
        items = [draw(values(level + 1)) for _ in range(draw(st.integers(0, 3)))]
        sep = draw(st.sampled_from([",", ", ", ",\n  ", f",{draw(COMMENT)}\n"]))
        trailing = "," if items and draw(st.booleans()) else ""
        return "[" + sep.join(items) + trailing + "]"
    pairs = {draw(dotted()): draw(values(level + 1)) for _ in range(draw(st.integers(0, 3)))}
    return "{" + ", ".join(f"{k}{draw(GAP)}={draw(GAP)}{v}" for k, v in _no_prefix_clash(pairs)) + "}"


@st.composite
def dotted(draw: st.DrawFn) -> str:
    sep = draw(st.sampled_from([".", " . ", "."]))
    return sep.join(draw(keys()) for _ in range(draw(st.integers(1, 4))))


def _no_prefix_clash(pairs: dict[str, str]) -> list[tuple[str, str]]:
    """Drop keys that would redefine another's table; a few clashes are left to the parser anyway."""
    seen: list[str] = []
    out = []
    for key, value in pairs.items():
        norm = key.replace(" ", "")
        if any(norm == s or norm.startswith(s + ".") or s.startswith(norm + ".") for s in seen):
            continue
        seen.append(norm)
        out.append((key, value))
    return out


@st.composite
def documents(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["pairs", "pairs", "table", "array_table"]))
        if kind == "table":
            lines.append(f"{draw(GAP)}[{draw(GAP)}{draw(dotted())}{draw(GAP)}]{draw(COMMENT)}")
        elif kind == "array_table":
            lines.append(f"[[{draw(dotted())}]]{draw(COMMENT)}")
        pairs = {draw(dotted()): draw(values()) for _ in range(draw(st.integers(0, 3)))}
        for key, value in _no_prefix_clash(pairs):
            lines.append(f"{draw(GAP)}{key}{draw(GAP)}={draw(GAP)}{value}{draw(COMMENT)}")
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "# [[[[", "   "])))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines) + draw(st.sampled_from(["", newline]))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(text=documents(), bound=st.integers(1, 9))
def test_toml_equals_stdlib_within_the_bound_and_refuses_past_it(text: str, bound: int) -> None:
    try:
        expected = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        with pytest.raises(ValueError):  # TOMLDecodeError or TooDeepError
            loads_toml(text, max_depth=bound)
        return
    actual = depth(expected)
    assert toml_depth(text, max_depth=1000) <= actual, "the scan counted deeper than the document is"
    if actual <= bound:
        assert loads_toml(text, max_depth=bound) == expected
    else:
        with pytest.raises(TooDeepError):
            loads_toml(text, max_depth=bound)


def test_the_generators_reach_deep_and_valid_documents() -> None:
    """Guard against a generator that only makes invalid or shallow TOML (the test above would pass vacuously)."""
    seen: list[int] = []

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(documents())
    def collect(text: str) -> None:
        try:
            seen.append(depth(tomllib.loads(text)))
        except tomllib.TOMLDecodeError:
            seen.append(-1)

    collect()
    valid = [d for d in seen if d >= 0]
    assert len(valid) > len(seen) // 4  # enough valid documents that the comparison above is not vacuous
    assert max(valid) >= 6


@pytest.mark.parametrize("text", [
    "a = " + "[" * 100_000 + "]" * 100_000,
    "a = " + "{b=" * 100_000 + "1" + "}" * 100_000,
    "[" + ".".join(["a"] * 100_000) + "]\n",
    "[[" + ".".join(["a"] * 100_000) + "]]\n",
    ".".join(["a"] * 100_000) + " = 1\n",
    "x = {" + ".".join(["a"] * 100_000) + " = 1}\n",
    "\n".join(f"[[{'.'.join(['t'] * i)}]]\n[{'.'.join(['t'] * i)}.u]" for i in range(1, 60)),
])
def test_hostile_toml_is_refused_fast(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(TooDeepError):
        loads_toml(text)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("text", ["[" * 100_000, "{\"a\":" * 100_000, '[{"a": [' * 40_000])
def test_hostile_json_is_refused_fast(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(TooDeepError) as caught:
        loads_json(text)
    assert caught.value.max_depth == MAX_DEPTH
    assert time.monotonic() - started < 1
    with pytest.raises(TooDeepError):
        loads_json(text.encode("utf-16"))


def test_the_default_bound_admits_what_it_promises() -> None:
    deep_json = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert depth(loads_json(deep_json)) == MAX_DEPTH
    deep_toml = ".".join(["k"] * MAX_DEPTH) + " = 1\n"
    assert depth(loads_toml(deep_toml)) == MAX_DEPTH
    with pytest.raises(TooDeepError):
        loads_toml("z." + deep_toml)


@pytest.mark.parametrize(("kind", "text"), [
    ("json", '["' + '\\"' * 500_000),
    ("json", "[" * 60 + '"' + '\\"' * 500_000),
    ("toml", 'a = "' + '\\"' * 120_000),
    ("toml", 'a = """' + '\\"""' * 60_000),
    ("toml", "a = '''" + "x''" * 80_000),
    ("toml", "a = [" + '"x",' * 60_000 + '"'),
])
def test_unterminated_strings_cost_one_pass(kind: str, text: str) -> None:
    """A scan that retried at every later quote would be quadratic: minutes for these."""
    started = time.monotonic()
    with pytest.raises(ValueError):  # the parser's own error: the scan let it through
        loads_json(text) if kind == "json" else loads_toml(text)
    assert time.monotonic() - started < 2

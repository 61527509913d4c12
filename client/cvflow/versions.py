"""SemVer 2.0.0 versions and the version-range grammar.

Versions follow https://semver.org exactly (``MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]``,
no leading zeros, no leading ``v``), with limits so that every version fits a
database column and ``Version.sort_key_text`` stays fixed-width: at most 256
characters, major/minor/patch at most 10 digits, numeric prerelease identifiers at
most 20 digits (enough for a ``YYYYMMDDhhmmssSSS`` timestamp).

Range grammar (used for ``[dependencies]``)::

    range      := "*" | comparator ("," comparator)*     # commas mean AND
    comparator := [op] version
    op         := "=" | "^" | "~" | ">=" | ">" | "<=" | "<" | "!="
    version    := MAJOR | MAJOR.MINOR | MAJOR.MINOR.PATCH[-PRERELEASE]

Whitespace is allowed around commas and between an operator and its version.

* ``*`` matches any version.
* ``1.2.3`` or ``=1.2.3``: exactly that version (build metadata ignored); it needs all
  three parts.
* ``^1.2.3`` := ``>=1.2.3, <2.0.0``; ``^0.2.3`` := ``>=0.2.3, <0.3.0``;
  ``^0.0.3`` := ``>=0.0.3, <0.0.4``; ``^1.2`` := ``>=1.2.0, <2.0.0``;
  ``^1`` := ``>=1.0.0, <2.0.0``; ``^0`` := ``<1.0.0``; ``^0.0`` := ``<0.1.0``.
* ``~1.2.3`` := ``>=1.2.3, <1.3.0``; ``~1.2`` := ``>=1.2.0, <1.3.0``; ``~1`` := ``>=1.0.0, <2.0.0``.
* ``>=``, ``>``, ``<=``, ``<``, ``!=``: compare by SemVer precedence; a partial version
  is padded with zeros (``>1.2`` means ``>1.2.0``).

Pre-releases are only chosen when asked for. A pre-release version matches a range
only if the caller passes ``prereleases=True``, or a comparator of the range (other
than ``!=``) itself names a pre-release of the same ``MAJOR.MINOR.PATCH`` (npm's
rule: ``>=1.0.0-rc.1`` matches ``1.0.0-rc.2`` but not ``1.1.0-rc.1``). And, as in
PEP 440, ``<X.Y.Z`` never matches a pre-release of ``X.Y.Z`` itself, so ``^1.2`` never
picks ``2.0.0-alpha`` even with ``prereleases=True``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cvflow.errors import InvalidRangeError, InvalidVersionError

__all__ = ["Version", "VersionRange"]

MAX_VERSION_LENGTH = 256
_MAX_CORE = 10**10 - 1  # 10 digits: the fixed width of sort_key_text's core fields
_MAX_PRE_NUMBER = 10**20 - 1

_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_VERSION_RE = re.compile(
    rf"(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_ALNUM_ID_RE = re.compile(r"[0-9A-Za-z-]+")
_PARTIAL_RE = re.compile(rf"(?P<major>{_NUM})(?:\.(?P<minor>{_NUM}))?")


def _explain(text: str) -> str:
    """Say why ``text`` is not a version; only called after the pattern failed."""
    if not text:
        return "version is empty"
    if text != text.strip() or any(c.isspace() for c in text):
        return f"version {text!r} must not contain whitespace"
    if text[0] in "vV":
        if _VERSION_RE.fullmatch(text[1:]):
            return f"version {text!r} must not start with {text[0]!r}; write {text[1:]!r}"
        return f"version {text!r} must not start with {text[0]!r}, and {_explain(text[1:])}"
    core, _, rest = text.partition("+")
    core, dash, pre = core.partition("-")
    parts = core.split(".")
    # zip stops at three: the part count is checked after, so "01.2" blames the zero.
    for label, part in zip(("major", "minor", "patch"), parts, strict=False):
        if not part.isascii() or not part.isdigit():
            return f"version {text!r}: {label} part {part!r} is not a number"
        if len(part) > 1 and part[0] == "0":
            return f"version {text!r}: {label} part {part!r} has a leading zero"
    if len(parts) != 3:
        return f"version {text!r} must have three parts MAJOR.MINOR.PATCH"
    for label, section, present in (("pre-release", pre, dash), ("build", rest, "+" in text)):
        if present and not section:
            return f"version {text!r} has an empty {label} section"
        for ident in section.split(".") if section else ():
            if not ident:
                return f"version {text!r} has an empty {label} identifier"
            if not _ALNUM_ID_RE.fullmatch(ident):
                return f"version {text!r}: {label} identifier {ident!r} may only use [0-9A-Za-z-]"
            if label == "pre-release" and ident.isdigit() and len(ident) > 1 and ident[0] == "0":
                return f"version {text!r}: pre-release identifier {ident!r} has a leading zero"
    return f"{text!r} is not a SemVer 2.0.0 version"


@dataclass(frozen=True)
class Version:
    """A SemVer 2.0.0 version.

    Equality is structural (``1.0.0+a != 1.0.0+b``); ordering follows SemVer
    precedence, which ignores build metadata. Use ``key`` or ``precedence_str``
    wherever two versions that differ only in build metadata must count as one.
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[str | int, ...] = ()
    build: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for label in ("major", "minor", "patch"):
            value = getattr(self, label)
            if type(value) is not int or not 0 <= value <= _MAX_CORE:
                raise InvalidVersionError(
                    f"{label} must be an integer 0-{_MAX_CORE}, got {value!r}"
                )
        for ident in self.prerelease:
            # Numeric identifiers must be ints so that they compare by value.
            if isinstance(ident, str):
                ok = bool(_ALNUM_ID_RE.fullmatch(ident)) and not ident.isdigit()
            else:
                ok = type(ident) is int and 0 <= ident <= _MAX_PRE_NUMBER
            if not ok:
                raise InvalidVersionError(f"invalid pre-release identifier {ident!r}")
        for ident in self.build:
            if not isinstance(ident, str) or not _ALNUM_ID_RE.fullmatch(ident):
                raise InvalidVersionError(f"invalid build identifier {ident!r}")

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse a strict SemVer 2.0.0 string such as ``1.2.3-rc.1+build.5``.

        Raises:
            InvalidVersionError: saying what is wrong (leading ``v``, leading zero, ...).
        """
        if not isinstance(text, str):
            raise InvalidVersionError(f"version must be a string, not {type(text).__name__}")
        match = _VERSION_RE.fullmatch(text) if len(text) <= MAX_VERSION_LENGTH else None
        if match is None:
            if len(text) > MAX_VERSION_LENGTH:
                raise InvalidVersionError(f"version is longer than {MAX_VERSION_LENGTH} characters")
            raise InvalidVersionError(_explain(text))
        pre, build = match["pre"], match["build"]
        return cls(
            int(match["major"]),
            int(match["minor"]),
            int(match["patch"]),
            tuple(int(i) if i.isdigit() else i for i in pre.split(".")) if pre else (),
            tuple(build.split(".")) if build else (),
        )

    @classmethod
    def parse_tag(cls, text: str) -> Version:
        """Parse a git tag such as ``v1.2.3``: like ``parse`` but a leading v/V is allowed.

        Raises:
            InvalidVersionError: if the rest is not a SemVer version.
        """
        if isinstance(text, str) and text[:1] in ("v", "V"):
            text = text[1:]
        return cls.parse(text)

    def __str__(self) -> str:
        return self.precedence_str + ("+" + ".".join(self.build) if self.build else "")

    @property
    def precedence_str(self) -> str:
        """The version without build metadata: equal for versions of equal precedence."""
        core = f"{self.major}.{self.minor}.{self.patch}"
        return core + ("-" + ".".join(map(str, self.prerelease)) if self.prerelease else "")

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    @property
    def key(self) -> tuple[Any, ...]:
        """A tuple that sorts in SemVer precedence order and ignores build metadata."""
        if not self.prerelease:
            # A release sorts after every pre-release of the same MAJOR.MINOR.PATCH.
            return (self.major, self.minor, self.patch, 1, ())
        idents = tuple((0, i, "") if type(i) is int else (1, 0, i) for i in self.prerelease)
        return (self.major, self.minor, self.patch, 0, idents)

    @property
    def sort_key_text(self) -> str:
        """A string whose plain text order is SemVer precedence, for ``ORDER BY``.

        It uses only digits, lowercase hex and dots at fixed positions, so it sorts
        the same under byte ("C") order and under locale collations that ignore
        punctuation or case. Layout: ``MMMMMMMMMM.mmmmmmmmmm.pppppppppp.`` then ``z``
        for a release, or for a pre-release each identifier as ``1`` + 20-digit number
        (numeric) or ``2`` + hex of its ASCII + ``0`` (alphanumeric; hex digits are
        all >= ``2`` so the ``0`` ends it), then a closing ``0`` so a shorter list of
        identifiers sorts first. ``1`` < ``2`` puts numeric before alphanumeric.
        """
        head = f"{self.major:010d}.{self.minor:010d}.{self.patch:010d}."
        if not self.prerelease:
            return head + "z"
        parts = [
            f"1{i:020d}" if type(i) is int else "2" + str(i).encode("ascii").hex() + "0"
            for i in self.prerelease
        ]
        return head + "".join(parts) + "0"

    def __lt__(self, other: object) -> bool:
        return self.key < other.key if isinstance(other, Version) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.key <= other.key if isinstance(other, Version) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.key > other.key if isinstance(other, Version) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.key >= other.key if isinstance(other, Version) else NotImplemented


@dataclass(frozen=True)
class _Comparator:
    op: str  # one of "=", "!=", ">", ">=", "<", "<="
    bound: Version

    def matches(self, v: Version) -> bool:
        a, b = v.key, self.bound.key
        if self.op == "<":
            # PEP 440: "<2.0.0" must not admit 2.0.0-alpha, or ^1 would pick it.
            same_core = not self.bound.is_prerelease and a[:3] == b[:3]
            return a < b and not same_core
        return {"=": a == b, "!=": a != b, ">": a > b, ">=": a >= b, "<=": a <= b}[self.op]


_TERM_RE = re.compile(r"(?P<op>\^|~|>=|<=|>|<|!=|=)?[ \t]*(?P<ver>\S*)")


def _parse_bound(text: str, whole: str) -> tuple[Version, int]:
    """Parse a full or partial version; return it padded with zeros and its part count."""
    partial = _PARTIAL_RE.fullmatch(text)
    if partial:
        minor = partial["minor"]
        return Version(int(partial["major"]), int(minor or 0), 0), 2 if minor else 1
    try:
        version = Version.parse(text)
    except InvalidVersionError as exc:
        if any(x in text.split(".") for x in ("x", "X", "*")):
            raise InvalidRangeError(
                f"range {whole!r}: wildcards like {text!r} are not supported; use ^ or ~"
            ) from exc
        raise InvalidRangeError(f"range {whole!r}: {exc.message}") from exc
    if version.build:
        raise InvalidRangeError(f"range {whole!r}: build metadata has no meaning in a range")
    return version, 3


def _expand(op: str, bound: Version, parts: int) -> list[_Comparator]:
    """Turn one written comparator into primitive comparators (see module docstring)."""
    if op == "^":
        if parts == 1 or bound.major > 0:
            upper = Version(bound.major + 1, 0, 0)
        elif parts == 2 or bound.minor > 0:
            upper = Version(0, bound.minor + 1, 0)
        else:
            upper = Version(0, 0, bound.patch + 1)
        return [_Comparator(">=", bound), _Comparator("<", upper)]
    if op == "~":
        upper = (
            Version(bound.major + 1, 0, 0)
            if parts == 1
            else Version(bound.major, bound.minor + 1, 0)
        )
        return [_Comparator(">=", bound), _Comparator("<", upper)]
    return [_Comparator(op, bound)]


class VersionRange:
    """A set of versions written in the range grammar of this module's docstring."""

    __slots__ = ("_comparators", "_is_exact", "_prerelease_cores", "_text")

    def __init__(self, text: str, comparators: Iterable[_Comparator], is_exact: bool) -> None:
        self._text = text
        self._comparators = tuple(comparators)
        self._is_exact = is_exact
        self._prerelease_cores = frozenset(
            c.bound.key[:3] for c in self._comparators if c.op != "!=" and c.bound.is_prerelease
        )

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        """Parse a range such as ``^1.2``, ``>=1.2, <2`` or ``*``.

        Raises:
            InvalidRangeError: saying which part is wrong and, where it helps, what to write.
        """
        if not isinstance(text, str):
            raise InvalidRangeError(f"version range must be a string, not {type(text).__name__}")
        whole = text.strip()
        if not whole:
            raise InvalidRangeError("version range is empty; use '*' to accept any version")
        if len(whole) > MAX_VERSION_LENGTH:
            raise InvalidRangeError(f"version range is longer than {MAX_VERSION_LENGTH} characters")
        if whole == "*":
            return cls("*", (), False)
        if "||" in whole:
            raise InvalidRangeError(f"range {whole!r}: '||' (OR) is not supported")
        comparators: list[_Comparator] = []
        written: list[str] = []
        terms = [t.strip() for t in whole.split(",")]
        for term in terms:
            if not term:
                raise InvalidRangeError(f"range {whole!r} has an empty comparator between commas")
            if term == "*":
                raise InvalidRangeError(f"range {whole!r}: '*' cannot be combined with others")
            if term.startswith(("==", "~=", "=>", "=<")):
                hint = {"==": "=", "~=": "~", "=>": ">=", "=<": "<="}[term[:2]]
                raise InvalidRangeError(f"range {whole!r}: write {hint!r} instead of {term[:2]!r}")
            match = _TERM_RE.fullmatch(term)
            if match is None:
                raise InvalidRangeError(
                    f"range {whole!r}: {term!r} has a space inside; separate comparators with ','"
                )
            op, ver = match["op"] or "=", match["ver"]
            if not ver:
                raise InvalidRangeError(f"range {whole!r}: {term!r} has no version")
            try:
                bound, parts = _parse_bound(ver, whole)
                expanded = _expand(op, bound, parts)
            except InvalidVersionError as exc:  # a number past the limits
                raise InvalidRangeError(f"range {whole!r}: {exc.message}") from exc
            if op == "=" and parts != 3:
                raise InvalidRangeError(
                    f"range {whole!r}: an exact version needs MAJOR.MINOR.PATCH;"
                    f" write '^{ver}' or '~{ver}' for a range"
                )
            comparators.extend(expanded)
            written.append(ver if op == "=" else op + ver)
        is_exact = len(terms) == 1 and comparators[0].op == "="
        return cls(", ".join(written), comparators, is_exact)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"VersionRange({self._text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VersionRange):
            return NotImplemented
        return self._text == other._text

    def __hash__(self) -> int:
        return hash(self._text)

    @property
    def is_exact(self) -> bool:
        """True for an exact pin such as ``1.2.3`` or ``=1.2.3``."""
        return self._is_exact

    @property
    def allows_prereleases(self) -> bool:
        """True when the range itself names a pre-release (so some pre-releases match)."""
        return bool(self._prerelease_cores)

    def contains(self, version: Version, *, prereleases: bool = False) -> bool:
        """Whether ``version`` is in the range; pre-releases follow the module's rule."""
        if (
            version.is_prerelease
            and not prereleases
            and version.key[:3] not in self._prerelease_cores
        ):
            return False
        return all(c.matches(version) for c in self._comparators)

    def __contains__(self, version: object) -> bool:
        return isinstance(version, Version) and self.contains(version)

    def best_match(
        self, versions: Iterable[Version], *, prereleases: bool = False
    ) -> Version | None:
        """The highest version in ``versions`` that the range contains, or None."""
        matching = [v for v in versions if self.contains(v, prereleases=prereleases)]
        return max(matching, key=lambda v: v.key, default=None)

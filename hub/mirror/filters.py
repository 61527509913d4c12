"""Which packages and versions a mirror copies (``--filter`` and ``--latest``), also used by ``export``.

A filter is ``PATTERN[@RANGE]``. ``PATTERN`` is a namespace (``alice``), a package
(``alice/detector``) or a glob over ``namespace/name`` (``alice/det*``, ``*/face-*``);
``RANGE`` is a version range as ``cvflow install`` takes them (``^1.2``, ``>=2.0,<3``).
A package is copied when some filter's pattern matches it, and a version of it when it is
in the range of one of those filters (a filter without range takes every version). Then
``--latest N`` keeps the N highest of those versions per package. No filter: everything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from cvflow.errors import CVFlowError
from cvflow.versions import Version, VersionRange

_PATTERN = re.compile(r"\A[a-z0-9*?][a-z0-9._*?-]*(/[a-z0-9*?][a-z0-9._*?-]*)?\Z")


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Filter:
    pattern: str
    range: VersionRange | None = None

    @classmethod
    def parse(cls, text: str) -> Filter:
        """Raises FilterError for a malformed pattern or range."""
        pattern, at, rng = text.strip().partition("@")
        if not _PATTERN.match(pattern):
            raise FilterError(f"{text!r}: a filter is NAMESPACE, NAMESPACE/NAME or a glob of them, then @RANGE")
        if "/" not in pattern:
            pattern += "/*"
        try:
            return cls(pattern, VersionRange.parse(rng) if at else None)
        except CVFlowError as exc:
            raise FilterError(f"{text!r}: {exc.message}") from exc

    def __str__(self) -> str:
        return self.pattern + (f"@{self.range}" if self.range is not None else "")


@dataclass(frozen=True)
class Filters:
    items: tuple[Filter, ...] = ()
    latest: int | None = None

    @classmethod
    def parse(cls, texts: Iterable[str], latest: int | None = None) -> Filters:
        if latest is not None and latest < 1:
            raise FilterError("--latest takes a number of versions, 1 or more")
        return cls(tuple(Filter.parse(t) for t in texts), latest)

    def key(self) -> str:
        """What identifies these filters in the mirror's saved state."""
        return json.dumps({"filters": sorted(map(str, self.items)), "latest": self.latest}, sort_keys=True)

    def wants(self, name: str) -> bool:
        return not self.items or any(fnmatchcase(name, f.pattern) for f in self.items)

    def select(self, name: str, versions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The entries (``{"version": ...}``) of ``versions`` to copy, highest first."""
        applicable = [f for f in self.items if fnmatchcase(name, f.pattern)] if self.items else [Filter("*/*")]
        if not applicable:
            return []
        chosen = []
        for entry in versions:
            try:
                version = Version.parse(str(entry.get("version")))
            except CVFlowError:
                continue
            if any(f.range is None or f.range.contains(version, prereleases=True) for f in applicable):
                chosen.append((version, entry))
        chosen.sort(key=lambda pair: pair[0].key, reverse=True)
        if self.latest is not None:
            chosen = chosen[: self.latest]
        return [entry for _, entry in chosen]

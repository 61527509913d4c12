"""Dependency resolution: which version of each package to install.

The search itself is resolvelib's; this module supplies what it asks for. A
:class:`MetadataSource` knows, per package, its versions with their yank state and
package dependencies:

* :class:`HubSource` asks the hub's bulk ``/api/v1/index`` endpoint. It fetches
  breadth-first: whenever metadata arrives, the names its versions depend on join a
  *frontier*, and the next package the resolver needs is fetched together with the
  whole frontier. A dependency tree of depth *d* costs about *d* requests. What it
  fetched is saved in the cache for offline use.
* :class:`OfflineSource` reads the cache only, and offers only versions whose snapshot
  is cached (so an offline resolution never picks something it cannot install).
* :class:`MemorySource` holds a dict, for tests and benchmarks.

Rules: a version must be in every range that names its package (ranges follow
:mod:`cvflow.versions`); pre-releases only when a range names one of the same
``MAJOR.MINOR.PATCH`` or ``prereleases=True`` (``--pre``); yanked versions only when a
requirement pins that exact version; among what is left, the highest version wins.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from resolvelib import AbstractProvider, BaseReporter, Resolver
from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep, ResolverException

from cvflow.errors import InvalidRangeError, InvalidVersionError, OfflineError, ResolutionError
from cvflow.names import package_key
from cvflow.versions import Version, VersionRange

if TYPE_CHECKING:
    from cvflow.api import HubClient

__all__ = [
    "Candidate",
    "HubSource",
    "MemorySource",
    "MetadataSource",
    "OfflineSource",
    "Requirement",
    "VersionInfo",
    "resolve",
    "resolve_graph",
]

INDEX_BATCH = 500  # the hub's limit of names per /api/v1/index request


@dataclass(frozen=True)
class VersionInfo:
    """One published version as the resolver sees it."""

    version: Version
    dependencies: Mapping[str, str] = field(default_factory=dict)
    yanked: bool = False


class _Cache(Protocol):  # what the sources need of cvflow.cache.Cache
    def save_metadata(self, name: str, doc: dict[str, Any]) -> None: ...

    def load_metadata(self, name: str) -> dict[str, Any] | None: ...

    def version_docs(self, name: str) -> list[dict[str, Any]]: ...


class MetadataSource:
    """Versions of packages, fetched in breadth-first batches.

    Subclasses implement :meth:`_fetch`. ``offline`` makes "not found" errors
    :class:`~cvflow.errors.OfflineError` and their messages speak of the cache.
    """

    offline = False

    def __init__(self) -> None:
        self._known: dict[str, list[VersionInfo] | None] = {}  # None: no such package
        self._frontier: set[str] = set()
        self.batches: list[list[str]] = []  # every batch fetched, in order (for tests and benchmarks)

    def want(self, names: Iterable[str]) -> None:
        """Say that ``names`` will be needed, so they are fetched with the next batch."""
        self._frontier.update(n for n in names if n not in self._known)

    def versions(self, name: str) -> list[VersionInfo] | None:
        """Every version of ``name`` (any order), or None if there is no such package."""
        if name not in self._known:
            batch = sorted(self._frontier | {name})
            self._frontier.clear()
            self.batches.append(batch)
            found = self._fetch(batch)
            for n in batch:
                infos = found.get(n)
                self._known[n] = infos
                for info in infos or ():
                    self.want(info.dependencies)
        return self._known[name]

    def _fetch(self, names: list[str]) -> dict[str, list[VersionInfo]]:
        """Metadata of ``names``; a name left out does not exist."""
        raise NotImplementedError


def _parse_entries(entries: Iterable[Mapping[str, Any]]) -> list[VersionInfo]:
    out = []
    for e in entries:
        try:
            version = Version.parse(str(e["version"]))
        except InvalidVersionError:
            continue  # nothing can pin an unparsable version; skip rather than fail everyone
        out.append(VersionInfo(version, dict(e.get("dependencies") or {}), bool(e.get("yanked"))))
    return out


class MemorySource(MetadataSource):
    """Metadata from a dict ``{name: {version: {dep: range}}}``; ``yanked`` lists ``name@version``."""

    def __init__(self, packages: Mapping[str, Mapping[str, Mapping[str, str]]],
                 yanked: Iterable[str] = ()) -> None:
        super().__init__()
        self._yanked = set(yanked)
        self._packages = {
            name: [VersionInfo(Version.parse(v), dict(deps), f"{name}@{v}" in self._yanked) for v, deps in vs.items()]
            for name, vs in packages.items()
        }

    def _fetch(self, names: list[str]) -> dict[str, list[VersionInfo]]:
        return {n: self._packages[n] for n in names if n in self._packages}


class HubSource(MetadataSource):
    """Metadata from a hub's ``/api/v1/index``, saved into ``cache`` (if given) for offline use."""

    def __init__(self, client: HubClient, cache: _Cache | None = None) -> None:
        super().__init__()
        self.client = client
        self.cache = cache

    def _fetch(self, names: list[str]) -> dict[str, list[VersionInfo]]:
        out: dict[str, list[VersionInfo]] = {}
        for i in range(0, len(names), INDEX_BATCH):
            body = self.client.index(names[i : i + INDEX_BATCH])
            for name, doc in (body.get("packages") or {}).items():
                out[name] = _parse_entries(doc.get("versions") or [])
                if self.cache is not None:
                    self.cache.save_metadata(name, {"name": name, "versions": doc.get("versions") or []})
        return out


class OfflineSource(MetadataSource):
    """Metadata from the local cache alone: the versions whose snapshots are cached.

    Yank state comes from the metadata saved online when there is some (it may be newer
    than the snapshot), dependencies from each snapshot's version document (the saved
    metadata may be a package document, which lists none).
    """

    offline = True

    def __init__(self, cache: _Cache) -> None:
        super().__init__()
        self.cache = cache

    def _fetch(self, names: list[str]) -> dict[str, list[VersionInfo]]:
        out: dict[str, list[VersionInfo]] = {}
        for name in names:
            saved = {str(e.get("version")): e for e in (self.cache.load_metadata(name) or {}).get("versions") or []}
            infos = []
            for doc in self.cache.version_docs(name):
                meta = saved.get(str(doc.get("version")), {})
                entry = {"version": doc.get("version"),
                         "dependencies": doc.get("dependencies") or (doc.get("manifest") or {}).get("dependencies"),
                         "yanked": meta.get("yanked", doc.get("yanked"))}
                infos.extend(_parse_entries([entry]))
            if infos:
                out[name] = infos
        return out


# -- resolvelib's side -------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _range(text: str) -> VersionRange:
    return VersionRange.parse(text)


@dataclass(frozen=True, eq=False)
class Candidate:
    """A version of a package that the resolver may pin.

    There is one object per package version in a resolution, so identity is equality (and
    hashing is cheap: resolvelib checks pins against requirements very often).
    """

    name: str
    version: Version
    dependencies: tuple[tuple[str, str], ...]
    yanked: bool = False

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Requirement:
    """``name`` within ``range``, asked for by ``parent`` (None: the user)."""

    name: str
    range: VersionRange
    parent: Candidate | None = None
    #: candidate -> whether the range accepts it (candidates hash by identity: cheap).
    memo: dict[Candidate, bool] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.name}@{self.range}"


class _Provider(AbstractProvider[Requirement, Candidate, str]):
    def __init__(self, source: MetadataSource, *, prereleases: bool) -> None:
        self.source = source
        self.prereleases = prereleases
        self._candidates: dict[str, list[Candidate]] = {}
        self._pinned: set[str] = set()  # names some requirement pins exactly
        # The first spelling seen of each package: ``a_b`` and ``a-b`` are one package (the hub
        # answers any spelling with it), so every requirement on it uses one name.
        self._spelling: dict[str, str] = {}

    def candidates(self, name: str) -> list[Candidate]:
        """Every version of ``name``, highest first; empty if there is no such package."""
        if name not in self._candidates:
            infos = self.source.versions(name) or []
            cands = [Candidate(name, i.version, tuple(sorted(i.dependencies.items())), i.yanked) for i in infos]
            cands.sort(key=lambda c: c.version.key, reverse=True)
            self._candidates[name] = cands
        return self._candidates[name]

    def identify(self, requirement_or_candidate: Requirement | Candidate) -> str:
        return requirement_or_candidate.name

    def get_preference(self, identifier: str, resolutions: Mapping[str, Candidate],
                       candidates: Mapping[str, Iterator[Candidate]],
                       information: Mapping[str, Iterator[Any]], backtrack_causes: Any) -> Any:
        return (identifier not in self._pinned, identifier)

    def narrow_requirement_selection(self, identifiers: Iterable[str], resolutions: Mapping[str, Candidate],
                                     candidates: Mapping[str, Iterator[Candidate]],
                                     information: Mapping[str, Iterator[Any]], backtrack_causes: Any) -> Iterable[str]:
        # The order of work: after a conflict what caused it (as pip does: backtracking stays short),
        # then exact pins (they cannot move), then by name so that it is reproducible. Choosing here,
        # in one pass, spares resolvelib a get_preference call per open name per round.
        causes = {c.requirement.name for c in backtrack_causes}
        causes.update(c.parent.name for c in backtrack_causes if c.parent is not None)
        identifiers = list(identifiers)
        chosen = [i for i in identifiers if i in causes] or identifiers
        return [min(chosen, key=lambda i: (i not in self._pinned, i))]

    def find_matches(self, identifier: str, requirements: Mapping[str, Iterator[Requirement]],
                     incompatibilities: Mapping[str, Iterator[Candidate]]) -> list[Candidate]:
        reqs = list(requirements[identifier])
        bad = {c.version for c in incompatibilities[identifier]}
        pins = {r.range for r in reqs if r.range.is_exact}
        out = []
        for cand in self.candidates(identifier):
            if cand.version in bad or not all(self.is_satisfied_by(r, cand) for r in reqs):
                continue
            if cand.yanked and not any(p.contains(cand.version, prereleases=True) for p in pins):
                continue
            out.append(cand)
        return out

    def is_satisfied_by(self, requirement: Requirement, candidate: Candidate) -> bool:
        ok = requirement.memo.get(candidate)
        if ok is None:
            ok = requirement.memo[candidate] = requirement.range.contains(
                candidate.version, prereleases=self.prereleases)
        return ok

    def requirement(self, name: str, text: str, parent: Candidate | None = None) -> Requirement:
        """Raises InvalidRangeError."""
        name = self._spelling.setdefault(package_key(name), name)
        req = Requirement(name, _range(text), parent)
        if req.range.is_exact:
            self._pinned.add(name)
        return req

    def get_dependencies(self, candidate: Candidate) -> list[Requirement]:
        self.source.want(n for n, _ in candidate.dependencies)
        reqs = []
        for name, text in candidate.dependencies:
            try:
                reqs.append(self.requirement(name, text, candidate))
            except InvalidRangeError as exc:
                raise ResolutionError(f"{candidate} has an invalid range for {name}: {exc.message}") from exc
        return reqs


# -- entry points -----------------------------------------------------------------------------


def resolve_graph(requirements: Mapping[str, str], source: MetadataSource, *,
                  prereleases: bool = False) -> dict[str, Candidate]:
    """Like :func:`resolve`, but each package's chosen :class:`Candidate` (with its dependencies)."""
    provider = _Provider(source, prereleases=prereleases)
    roots = []
    for name, text in requirements.items():
        try:
            roots.append(provider.requirement(name, text or "*"))
        except InvalidRangeError as exc:
            raise ResolutionError(f"{name}: {exc.message}") from exc
    source.want(requirements)
    try:
        result = Resolver(provider, BaseReporter()).resolve(roots, max_rounds=10_000)
    except ResolutionImpossible as exc:
        raise _explain(exc.causes, provider) from None
    except ResolutionTooDeep as exc:
        raise ResolutionError(f"gave up after {exc.args[0]} rounds; the dependency graph is too tangled") from None
    except ResolverException as exc:  # pragma: no cover - resolvelib's other internal failures
        raise ResolutionError(f"resolution failed: {exc}") from exc
    return dict(sorted(result.mapping.items()))


def resolve(requirements: Mapping[str, str], source: MetadataSource, *,
            prereleases: bool = False) -> dict[str, Version]:
    """Pick one version of each package needed by ``requirements`` (``{name: range}``).

    Raises:
        ResolutionError: no set of versions satisfies everything; the message says which
            requirements clash and who asked for them, or which package does not exist.
        OfflineError: with an :class:`OfflineSource`, when the cache lacks what is needed.
        HubError: the hub could not be asked.
    """
    graph = resolve_graph(requirements, source, prereleases=prereleases)
    return {name: cand.version for name, cand in graph.items()}


# -- explaining failure -----------------------------------------------------------------------


def _asks(info: Any) -> str:
    if info.parent is None:
        return f"you asked for {info.requirement.range}"
    return f"{info.parent} needs {info.requirement.range}"


def _available(cands: list[Candidate]) -> str:
    shown = [f"{c.version}{' (yanked)' if c.yanked else ''}" for c in cands[:8]]
    more = f" and {len(cands) - 8} older" if len(cands) > 8 else ""
    return ", ".join(shown) + more


def _explain(causes: Iterable[Any], provider: _Provider) -> ResolutionError | OfflineError:
    """Turn resolvelib's causes into one readable message (one clause per package)."""
    offline = provider.source.offline
    by_name: dict[str, dict[str, Any]] = {}
    for info in causes:
        by_name.setdefault(info.requirement.name, {}).setdefault(_asks(info), info)
    lines = []
    for name, asks in by_name.items():
        infos = list(asks.values())
        cands = provider.candidates(name)
        if not cands:
            parents = sorted({str(i.parent) for i in infos if i.parent is not None})
            where = "in the cache" if offline else "on the hub (or it is private)"
            by = f", required by {', '.join(parents)}" if parents else ""
            lines.append(f"{name}: no such package {where}{by}")
            continue
        alone = [i for i in infos
                 if not provider.find_matches(name, {name: iter([i.requirement])}, {name: iter(())})]
        if alone:
            what = "cached version" if offline else "version"
            lines.append(f"{name}: {_asks(alone[0])} — no {what} matches (available: {_available(cands)})")
        elif len(infos) == 1:
            lines.append(f"{name}: {_asks(infos[0])} — every matching version conflicts with other requirements")
        else:
            both = "both" if len(infos) == 2 else "all of them"
            lines.append(f"{name}: {', '.join(asks)} — no version satisfies {both}")
    message = "; ".join(lines) or "no set of versions satisfies the requirements"
    if offline:
        return OfflineError(f"offline: {message}; pull what is missing while online")
    return ResolutionError(message)

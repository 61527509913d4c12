"""Namespace and package name rules.

A package is addressed as ``namespace/name``:

* **namespace** (a user or organisation): 2-39 characters, lowercase ASCII letters,
  digits and single hyphens, starting and ending with a letter or digit (GitHub's
  rule, so accounts can mirror GitHub handles). Names the website uses for its own
  routes are reserved (``RESERVED_NAMESPACES``).
* **name**: 1-64 characters, lowercase ASCII letters, digits and the separators
  ``-``, ``_`` and ``.``, starting and ending with a letter or digit, with no two
  separators in a row.

Only lowercase is accepted (rather than case-folding on lookup) so that a name has
exactly one spelling in URLs, on disk and in the database.

Names that differ only in their runs of separators (``a-b``, ``a_b``, ``a.b``, ``a--b``)
are one name, as PEP 503 normalises Python package names (:func:`normalize_name`): a
namespace holds at most one of them, and asking for any spelling finds it. Namespaces
allow only single hyphens, so no two valid namespaces are look-alikes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cvflow.errors import InvalidNameError, Problem

__all__ = [
    "NAMESPACE_RE",
    "NAME_RE",
    "RESERVED_NAMESPACES",
    "PackageName",
    "normalize_name",
    "package_key",
    "validate_name",
    "validate_namespace",
]

# \A...\Z rather than ^...$ so a trailing newline never slips through with .match().
NAMESPACE_RE = re.compile(r"\A(?=.{2,39}\Z)[a-z0-9]+(?:-[a-z0-9]+)*\Z")
NAME_RE = re.compile(r"\A(?=.{1,64}\Z)[a-z0-9]+(?:[-_.][a-z0-9]+)*\Z")

RESERVED_NAMESPACES = frozenset(
    {
        "api", "admin", "static", "login", "logout", "search", "settings", "new", "about",
        "healthz", "readyz", "zoo", "orgs", "users", "tokens", "docs", "help", "publish", "projects",
    }
)  # fmt: skip

_SEPARATORS = "-_."
_SEPARATOR_RUNS = re.compile(r"[-_.]+")


def normalize_name(name: str) -> str:
    """The PEP 503 form of a package name: runs of ``-``, ``_`` and ``.`` become one ``-``,
    letters become lowercase. Two names with the same form are the same package."""
    return _SEPARATOR_RUNS.sub("-", name).lower()


def package_key(full_name: str) -> str:
    """``namespace/name`` with the name normalised (:func:`normalize_name`) and the namespace
    lowercased: equal keys are the same package, however each is spelled."""
    namespace, _, name = full_name.partition("/")
    return f"{namespace.lower()}/{normalize_name(name)}"


def _explain(kind: str, value: str, *, min_len: int, max_len: int, separators: str) -> str:
    """Say which rule ``value`` breaks; only called once the pattern has failed."""
    if not value:
        return f"{kind} is empty"
    if len(value) < min_len or len(value) > max_len:
        return f"{kind} {value!r} is {len(value)} characters long; it must be {min_len}-{max_len}"
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789" + separators)
    if value != value.lower() and all(c in allowed for c in value.lower()):
        hint = f"; did you mean {value.lower()!r}?"
        return f"{kind} {value!r} must be lowercase{hint}"
    bad = sorted({c for c in value if c not in allowed})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        seps = " ".join(repr(s) for s in separators)
        return (
            f"{kind} {value!r} contains {shown}; only lowercase letters, digits and {seps}"
            " are allowed"
        )
    if value[0] in separators or value[-1] in separators:
        return f"{kind} {value!r} must start and end with a letter or digit"
    return f"{kind} {value!r} must not have two separators in a row"


def validate_namespace(value: str) -> str:
    """Return ``value`` if it is a valid, unreserved namespace.

    Raises:
        InvalidNameError: saying which rule the namespace breaks.
    """
    if not isinstance(value, str):
        raise InvalidNameError(f"namespace must be a string, not {type(value).__name__}")
    if value.lower() in RESERVED_NAMESPACES:  # before the case rule: never suggest a reserved name
        raise InvalidNameError(f"namespace {value!r} is reserved")
    if not NAMESPACE_RE.match(value):
        raise InvalidNameError(_explain("namespace", value, min_len=2, max_len=39, separators="-"))
    return value


def validate_name(value: str) -> str:
    """Return ``value`` if it is a valid package name (the part after the ``/``).

    Raises:
        InvalidNameError: saying which rule the name breaks.
    """
    if not isinstance(value, str):
        raise InvalidNameError(f"package name must be a string, not {type(value).__name__}")
    if not NAME_RE.match(value):
        raise InvalidNameError(
            _explain("package name", value, min_len=1, max_len=64, separators=_SEPARATORS)
        )
    return value


@dataclass(frozen=True, order=True)
class PackageName:
    """A validated ``namespace/name`` pair; ``str()`` gives ``"namespace/name"``."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        # Validating here means a PackageName that exists is always a valid one.
        problems = _problems(self.namespace, self.name)
        if problems:
            raise InvalidNameError(_summary(problems, f"{self.namespace}/{self.name}"), problems)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, value: str) -> PackageName:
        """Parse ``"namespace/name"``.

        Raises:
            InvalidNameError: if there is not exactly one ``/`` or either part is invalid.
        """
        if not isinstance(value, str):
            raise InvalidNameError(f"package name must be a string, not {type(value).__name__}")
        if value.count("/") != 1:
            raise InvalidNameError(
                f"package name {value!r} must have the form 'namespace/name' with exactly one '/'"
            )
        namespace, name = value.split("/")
        return cls(namespace, name)


def _problems(namespace: str, name: str) -> list[Problem]:
    problems = []
    for field, check, part in (
        ("namespace", validate_namespace, namespace),
        ("name", validate_name, name),
    ):
        try:
            check(part)
        except InvalidNameError as exc:
            problems.append(Problem(InvalidNameError.code, field, exc.message))
    return problems


def _summary(problems: list[Problem], full: str) -> str:
    if len(problems) == 1:
        return problems[0].message
    return f"package name {full!r} is invalid"

"""Errors raised by the cvflow library.

Every error carries ``code``, a stable machine-readable string that the hub also
sends in its JSON error bodies, so callers branch on the code, never on the text::

    CVFlowError(Exception)                      code="cvflow_error"
    └── ValidationError(CVFlowError, ValueError) code="validation_error", .problems
        ├── InvalidNameError                     code="invalid_package_name"
        ├── InvalidVersionError                  code="invalid_version"
        ├── InvalidRangeError                    code="invalid_version_range"
        ├── InvalidPathError                     code="invalid_path"
        ├── ManifestError                        code="invalid_manifest"
        └── DatasetError                         code="invalid_dataset": each problem has its own code
    ├── HubError(CVFlowError)                   code=the hub's code, .status, .details
    │   ├── HubNotFoundError(HubError, FileNotFoundError)   404s
    │   ├── HubAuthError(HubError, PermissionError)         401s and 403s
    │   ├── HubConflictError(HubError)                      409s (version_exists, ...)
    │   └── HubUnavailableError(HubError, ConnectionError)  no hub at the URL, timeouts, 5xx
    ├── ConfigError(CVFlowError)                code="invalid_config": e.g. a hub URL that is not http(s)
    ├── IntegrityError(CVFlowError)             code="digest_mismatch": bytes that fail their sha256
    ├── OfflineError(CVFlowError)               code="offline_miss": --offline and not in the cache
    ├── ResolutionError(CVFlowError)            code="resolution_impossible": requirements clash
    └── TrainingError(CVFlowError)              code=no_trainer, class_mismatch, dataset_too_small,
                                                invalid_hyperparameters or trainer_failed (docs/training.md)

The hub's error codes reach callers unchanged: ``HubError.code`` is the ``code`` of the
hub's JSON error body, and the class follows the HTTP status.

A ``ValidationError`` holds *all* the problems found in one input (a manifest, a
file list), so a user fixes everything in one round instead of one per upload.
``ValidationError`` also inherits ``ValueError`` so code that already catches
``ValueError`` around parsing keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CVFlowError",
    "ConfigError",
    "DatasetError",
    "HubAuthError",
    "HubConflictError",
    "HubError",
    "HubNotFoundError",
    "HubUnavailableError",
    "IntegrityError",
    "InvalidNameError",
    "InvalidPathError",
    "InvalidRangeError",
    "InvalidVersionError",
    "ManifestError",
    "OfflineError",
    "Problem",
    "ResolutionError",
    "ValidationError",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input.

    ``field`` locates it in the input's own terms, e.g. ``"package.version"``
    or ``"files[3].path"``; it is ``""`` when the problem is about the whole input.
    """

    code: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class CVFlowError(Exception):
    """Base of every error this library raises on purpose."""

    code: str = "cvflow_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ValidationError(CVFlowError, ValueError):
    """Input broke one or more rules; ``problems`` lists every one found."""

    code = "validation_error"

    def __init__(
        self, message: str, problems: Iterable[Problem] | None = None, *, field: str = ""
    ) -> None:
        super().__init__(message)
        # A single-rule error still exposes a problem list, so callers (the hub's
        # JSON error body, the CLI) can treat every ValidationError the same way.
        self.problems: list[Problem] = (
            list(problems) if problems is not None else [Problem(self.code, field, message)]
        )

    def __str__(self) -> str:
        if len(self.problems) == 1 and self.problems[0].message == self.message:
            return self.message
        lines = [self.message]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)


class InvalidNameError(ValidationError):
    """A namespace or package name breaks the naming rules (see ``cvflow.names``)."""

    code = "invalid_package_name"


class InvalidVersionError(ValidationError):
    """A version string is not a SemVer 2.0.0 version."""

    code = "invalid_version"


class InvalidRangeError(ValidationError):
    """A version range does not follow the range grammar (see ``cvflow.versions``)."""

    code = "invalid_version_range"


class InvalidPathError(ValidationError):
    """A file path or file list entry is not acceptable inside a package."""

    code = "invalid_path"


class ManifestError(ValidationError):
    """A manifest (``cvflow.toml`` or legacy ``cvpm.toml``) is missing or invalid."""

    code = "invalid_manifest"


class DatasetError(ValidationError):
    """A dataset (to import, export or publish) is malformed; each problem's code says how
    (``bad_json``, ``xml_forbidden``, ``missing_image``, ... listed in ``docs/datasets.md``)."""

    code = "invalid_dataset"


class HubError(CVFlowError):
    """The hub refused a request; ``code`` is the hub's stable error code."""

    code = "hub_error"

    def __init__(
        self, message: str, *, code: str | None = None, status: int = 0,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        if code:
            self.code = code
        self.status = status
        self.details = details or {}


class HubNotFoundError(HubError, FileNotFoundError):
    """The package, version, file or upload does not exist (or is private)."""


class HubAuthError(HubError, PermissionError):
    """No token, a wrong or expired token, or one without the needed scope or role."""


class HubConflictError(HubError):
    """The request clashes with what is stored, e.g. a version that is already published."""


class HubUnavailableError(HubError, ConnectionError):
    """The hub cannot be reached, timed out, or failed on its side."""

    code = "hub_unavailable"


class ConfigError(CVFlowError):
    """The client's own settings are unusable, e.g. a ``--hub``/``CVFLOW_HUB`` that is not a URL."""

    code = "invalid_config"


class IntegrityError(CVFlowError):
    """Bytes do not hash to the sha256 they were promised to have."""

    code = "digest_mismatch"


class OfflineError(CVFlowError):
    """Working offline, and something needed is not in the local cache."""

    code = "offline_miss"


class ResolutionError(CVFlowError):
    """No set of versions satisfies every requirement; the message says which clash."""

    code = "resolution_impossible"


class TrainingError(CVFlowError):
    """A fine-tune cannot start or did not finish; ``code`` says why (docs/training.md)::

        no_trainer               the base version declares no (such) trainer for the dataset's task
        class_mismatch           a dataset class has no model class of the same name
        dataset_too_small        empty, or too few images to split into training and validation
        invalid_hyperparameters  a value out of bounds, of the wrong type, or not declared
        trainer_failed           the trainer raised or its process died (the message ends with the log's tail)
    """

    code = "trainer_failed"
    CODES = ("no_trainer", "class_mismatch", "dataset_too_small", "invalid_hyperparameters", "trainer_failed")

    def __init__(self, message: str, *, code: str = "trainer_failed") -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown training error code {code!r}")
        super().__init__(message)
        self.code = code

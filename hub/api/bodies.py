"""Request bodies, query strings and path parameters: each defined once, as a pydantic model.

The same model validates the request (:func:`parse`) and documents it: ``hub.api.openapi``
puts ``model_json_schema()`` into the document's components. An endpoint names its models
where it registers (``body=``, ``query=``), so a rule the handler enforces is a rule the
document states.

Bodies are validated strictly (a JSON string is not an integer, ``0`` is not ``false``), query
strings as text (``?page=2``). Unknown properties are ignored, as before. A value that breaks
its model is a ``422 invalid_field`` (or the field's own code: ``invalid_scope``,
``invalid_digest``, ``invalid_package_name``) naming every problem in ``details.problems``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from cvflow.names import RESERVED_NAMESPACES
from hub.errors import ErrorCode, HubError
from hub.mirror.feed import MAX_PAGE
from hub.models import OrgRole, PackageRoleName
from hub.security import DEFAULT_SCOPES, Scopes
from hub.services.accounts import MAX_TOKEN_LIFETIME
from hub.services.catalog import MAX_PER_PAGE, Kind, Sort
from hub.services.repositories import MAX_PATTERN

#: The largest id a database row has (a signed 64-bit integer).
MAX_ID = 2**63 - 1


_NS = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_NAME = r"[a-z0-9]+(?:[-_.][a-z0-9]+)*"
# cvflow.names states each rule as one pattern with a length look-ahead; JSON Schema states the
# length apart (pydantic's validator has no look-ahead). A test holds the two readings together.
NAMESPACE_PATTERN, NAMESPACE_LENGTH = f"^{_NS}$", (2, 39)
NAME_PATTERN, NAME_LENGTH = f"^{_NAME}$", (1, 64)
#: read, publish, admin, publish:NAMESPACE or publish:NAMESPACE/NAME (as ``hub.security`` parses them).
SCOPE_PATTERN = rf"^(?:read|publish|admin|publish:(?=[^/]{{2,39}}(?:/|$)){_NS}(?:/(?=.{{1,64}}$){_NAME})?)$"
DIGEST_PATTERN = r"^[0-9a-f]{64}$"
#: SemVer 2.0 (semver.org's pattern), as ``cvflow.versions`` reads it.
SEMVER_PATTERN = (r"^(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)"
                  r"(?:-(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
                  r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
#: Has a character that ``str.strip()`` keeps: the text is not blank.
_NOT_BLANK = r"[^\s\x1c-\x1f]"
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


def _not_reserved(name: str) -> str:
    if name in RESERVED_NAMESPACES:
        raise ValueError(f"{name!r} is reserved")
    return name


def _scope(value: str) -> str:
    try:
        if value != value.strip():
            raise ValueError
        Scopes.parse([value])
    except ValueError:
        raise ValueError(f"unknown scope {value!r}: use read, publish, publish:NAMESPACE, "
                         "publish:NAMESPACE/NAME or admin") from None
    return value


def integral(value: Any) -> Any:
    """A body's integer also when written ``3.0``: JSON Schema's ``integer`` is any number without
    a fraction, and bodies are strict otherwise (``"3"`` and ``true`` stay refused). Use it after
    the field's constraints, ``Annotated[int, Field(ge=0), BeforeValidator(integral)]``, so the
    document keeps ``minimum`` and ``maximum``."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _decimal(value: Any) -> Any:
    """Query integers are plain decimal digits: no ``1_000``, ``0x10``, ``1.0`` or spaces."""
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]{1,19}", value):
        raise ValueError("must be an integer")
    return value


Namespace = Annotated[str, Field(pattern=NAMESPACE_PATTERN, min_length=NAMESPACE_LENGTH[0],
                                 max_length=NAMESPACE_LENGTH[1], description="a user or organisation name")]
OrgName = Annotated[str, Field(pattern=NAMESPACE_PATTERN, min_length=NAMESPACE_LENGTH[0], max_length=NAMESPACE_LENGTH[1],
                               json_schema_extra={"not": {"enum": sorted(RESERVED_NAMESPACES)}},
                               description="2 to 39 lowercase letters, digits and single hyphens; not a reserved word"),
                    AfterValidator(_not_reserved)]
Digest = Annotated[str, Field(pattern=DIGEST_PATTERN, description="a sha256 digest: 64 lowercase hexadecimal characters")]
Reason = Annotated[str, Field(min_length=1, max_length=500, pattern=_NOT_BLANK,
                              description="why: 1 to 500 characters, not blank")]
Scope = Annotated[str, AfterValidator(_scope), WithJsonSchema({"type": "string", "pattern": SCOPE_PATTERN})]
QueryInt = Annotated[int, BeforeValidator(_decimal)]


class Body(BaseModel):
    """A JSON request body. ``codes`` maps a field (``field.*``: its items) to the code its problems carry."""

    model_config = ConfigDict(strict=True, extra="ignore")
    codes: ClassVar[dict[str, ErrorCode]] = {}


class Query(BaseModel):
    """A query string: text, converted to the declared types."""

    model_config = ConfigDict(extra="ignore")
    codes: ClassVar[dict[str, ErrorCode]] = {}


# --- accounts ---------------------------------------------------------------------------------


class NewToken(Body):
    """A token to create: its name, scopes and lifetime."""

    codes: ClassVar[dict[str, ErrorCode]] = {"scopes": "invalid_scope"}
    name: Annotated[str, Field(max_length=100, description="a label for you")] | None = None
    scopes: Annotated[list[Scope], Field(
        min_length=1, max_length=50, examples=[["read", "publish:demo"]],
        description="read, publish, publish:NAMESPACE, publish:NAMESPACE/NAME or admin")] = list(DEFAULT_SCOPES)
    expires_in: Annotated[int, Field(ge=1, le=MAX_TOKEN_LIFETIME,
                                     description="seconds until the token expires (at most 10 years)")] | None = None


class Login(NewToken):
    """A user name and password, and the token to create for them."""

    username: Annotated[str, Field(max_length=1000)]
    password: Annotated[str, Field(max_length=1000)]


class NewOrg(Body):
    codes: ClassVar[dict[str, ErrorCode]] = {"name": "invalid_package_name"}
    name: OrgName


class OrgMember(Body):
    role: OrgRole


# --- packages ---------------------------------------------------------------------------------


class PackageSettings(Body):
    private: bool = Field(description="whether only its owners, maintainers and tokens covering it see it")


class Index(Body):
    packages: Annotated[list[str], Field(max_length=500, description="package names, namespace/name")]


class FileEntry(Body):
    path: Annotated[str, Field(min_length=1, max_length=1024, description="the file's path in the package")]
    size: Annotated[int, Field(ge=0, le=MAX_ID)]
    sha256: Digest


class Publish(Body):
    codes: ClassVar[dict[str, ErrorCode]] = {"files": "invalid_files"}
    manifest: str = Field(description="the cvflow.toml text")
    files: list[FileEntry]
    private: bool | None = Field(default=None, description="for a new package: make it private")


class VersionChange(Body):
    """A yank, unyank or take-down: each needs a reason, recorded with it."""

    reason: Reason


class PackageRole(Body):
    role: PackageRoleName


class Search(Query):
    q: str = Field(default="", description="text to find in names, descriptions and tags (the first 200 characters count)")
    task: str | None = Field(default=None, description="task, e.g. detection")
    tag: str | None = Field(default=None, description="a tag")
    namespace: str | None = Field(default=None, description="only this namespace")
    kind: Kind | None = Field(default=None, description="only models or only datasets")
    sort: Sort = Field(default="downloads", description="the order of the results")
    page: QueryInt = Field(default=1, ge=1, le=1_000_000, description="page number, from 1")
    per_page: QueryInt = Field(default=20, ge=1, le=MAX_PER_PAGE, description="results per page")


# --- blobs ------------------------------------------------------------------------------------


class BlobCheck(Body):
    codes: ClassVar[dict[str, ErrorCode]] = {"digests.*": "invalid_digest"}
    digests: Annotated[list[Digest], Field(max_length=10_000)]


class NewUpload(Body):
    size: Annotated[int, Field(ge=0, le=MAX_ID, description="the blob's size in bytes (the hub's limit applies: "
                                                            "`upload_too_large`)")]


class FinishUpload(Body):
    codes: ClassVar[dict[str, ErrorCode]] = {"sha256": "invalid_digest"}
    sha256: Digest


# --- repositories and the change feed ---------------------------------------------------------


_Glob = Annotated[str, Field(max_length=MAX_PATTERN, pattern=_NO_CONTROL)]


class NewRepository(Body):
    url: Annotated[str, Field(min_length=1, max_length=1000,
                              description="https://, http:// or git:// URL of the repository, at a public address")]
    namespace: Namespace | None = Field(default=None, description="where its package goes [default: your own]")
    subdir: Annotated[str, Field(max_length=1000)] | None = Field(
        default=None, description="the package's directory in the repository")
    branch_pattern: _Glob | None = Field(default=None, description="only tags on a branch matching this glob")
    tag_pattern: _Glob | None = Field(default=None, description="only tags matching this glob, e.g. v*")
    private: bool = Field(default=False, description="make the package it creates private")


class Changes(Query):
    since: QueryInt = Field(default=0, ge=0, le=MAX_ID, description="the last serial already seen (0: from the start)")
    limit: QueryInt = Field(default=MAX_PAGE, ge=1, le=MAX_PAGE, description="most events to return")


# --- training (docs/training.md) ---------------------------------------------------------------

_PACKAGE = r"^[a-z0-9]+(?:-[a-z0-9]+)*/[a-z0-9]+(?:[-_.][a-z0-9]+)*$"
_PROJECT = r"^[a-z0-9]+(?:-[a-z0-9]+)*/[a-z0-9]+(?:[-_.][a-z0-9]+)*$"
MetricName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="a metric's name")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=2**53), BeforeValidator(integral)]
Lease = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$",
                             description="the lease secret the claim answered")]
LeaseSeconds = Annotated[int, Field(ge=30, le=86_400, description="how long the lease lasts without a heartbeat"),
                         BeforeValidator(integral)]
Metrics = Annotated[dict[MetricName, Finite], Field(max_length=64)]
HyperparameterValue = Annotated[bool | int | Finite | Annotated[str, Field(max_length=256)],
                                Field(description="a number, true/false or a string")]


class TrainingSettings(Body):
    """A project's fine-tune settings; only the fields given change (null resets one)."""

    codes: ClassVar[dict[str, ErrorCode]] = {k: "invalid_training" for k in (
        "every", "target", "trainer", "hyperparameters", "hyperparameters.*")}
    every: Annotated[int, Field(ge=1, le=100_000, description="fine-tune after every N newly accepted items; "
                                "null: never by itself"), BeforeValidator(integral)] | None = None
    target: Annotated[str, Field(pattern=_PACKAGE, max_length=104, description=(
        "the package fine-tunes are published to (namespace/name); null: the suggestion package"))] | None = None
    trainer: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$", description=(
        "the base's trainer to use; null: its first for the project's task"))] | None = None
    hyperparameters: Annotated[dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")],
                                    HyperparameterValue], Field(max_length=32, description=(
        "overrides, checked against the trainer's bounds when a job is queued"))] | None = None


class ClaimTraining(Body):
    """A training worker asks for a job (a JSON object; every field may be left out)."""

    worker: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$",
                                 description="the worker's name, shown on the job")] | None = None
    lease_seconds: LeaseSeconds = 600
    projects: Annotated[list[Annotated[str, Field(pattern=_PROJECT, max_length=104)]], Field(
        max_length=100, description="only jobs of these projects (namespace/name)")] | None = None


class TrainingProgress(Body):
    step: Count | None = None
    total: Count | None = None
    epoch: Count | None = None
    loss: Finite | None = None


class TrainingEpoch(Body):
    """One point of the curves: an epoch's training loss and validation metrics."""

    epoch: Count
    loss: Finite | None = None
    metrics: Annotated[dict[MetricName, Finite], Field(max_length=32)] = Field(default_factory=dict)


class TrainingHeartbeat(Body):
    """The lease's holder reports progress and renews the lease."""

    lease: Lease
    progress: TrainingProgress | None = None
    history: Annotated[list[TrainingEpoch], Field(max_length=1000, description=(
        "every epoch so far (the whole list each time)"))] | None = None
    log_tail: Annotated[str, Field(max_length=1 << 20, description="the log's end; the hub keeps its last 8 KiB")
                        ] | None = None
    lease_seconds: LeaseSeconds | None = None


class FinishTraining(Body):
    """The lease's holder ends the job: done (naming the version it published) or failed."""

    lease: Lease
    state: Literal["done", "failed"]
    version: Annotated[str, Field(pattern=SEMVER_PATTERN, max_length=128, description=(
        "done: the version published to the job's target"))] | None = None
    metrics: Metrics | None = None
    base_metrics: Metrics | None = None
    device: Annotated[str, Field(max_length=64)] | None = None
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    message: Annotated[str, Field(max_length=8000, description="failed: why")] | None = None
    log_tail: Annotated[str, Field(max_length=1 << 20)] | None = None


#: Path (and header) parameters, by name: what the document says each one is.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    **{key: {"type": "string", "pattern": NAMESPACE_PATTERN, "minLength": NAMESPACE_LENGTH[0],
             "maxLength": NAMESPACE_LENGTH[1]} for key in ("namespace", "org", "user")},
    "name": {"type": "string", "pattern": NAME_PATTERN, "minLength": NAME_LENGTH[0], "maxLength": NAME_LENGTH[1]},
    "version": {"type": "string", "pattern": SEMVER_PATTERN},
    # ``{x:id}`` (hub.api.IdConvertor): a row id, an SQL INTEGER
    "token_id": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "repository_id": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "item_id": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "job_id": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "CVFlow-Lease": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_-]+$"},
    "upload_id": {"type": "string"},
    "Upload-Offset": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
    "path": {"type": "string"},
}


def parse(model: type[Body] | type[Query], data: Any) -> Any:
    """``data`` validated by ``model``; raises ``invalid_field`` (or the field's code) listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        fields = [k for e in exc.errors() if e["loc"]
                  for k in ((f"{e['loc'][0]}.*",) if len(e["loc"]) > 1 else ()) + (str(e["loc"][0]),)]
        code: ErrorCode = next((model.codes[f] for f in fields if f in model.codes), "invalid_field")
        first = problems[0]
        message = f"'{first['field']}': {first['message']}" if first["field"] else first["message"]
        raise HubError(code, message, details={"problems": problems}) from None

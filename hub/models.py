"""SQLModel tables. The schema changes only through Alembic migrations in ``migrations/``.

Timestamps are timezone-aware UTC; SQLModel's ``UTCDateTime`` keeps them so on SQLite too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


#: Who owns a namespace: a user, an organisation, or (on a mirror) the upstream it copies.
NamespaceKind = Literal["user", "org", "mirror"]
#: A user's role in an organisation.
OrgRole = Literal["owner", "member"]
#: A user's role on one package, beside the namespace's owners.
PackageRoleName = Literal["owner", "maintainer"]
#: The ways the hub copies versions itself (``PackageOrigin.via``, and grant holders ``hub:<via>``).
HubPath = Literal["mirror", "pull-through", "bundle"]
#: What a change-feed entry records (docs/mirrors.md).
ChangeAction = Literal["publish", "yank", "unyank", "delete", "public", "private"]
#: What a yank event records.
YankAction = Literal["yank", "unyank"]
#: Why an index job was queued.
JobReason = Literal["register", "webhook", "poll", "manual", "retry"]
#: Where an index job is: waiting, taken by a worker, or finished.
JobState = Literal["queued", "running", "done", "failed"]


class _HasId(Protocol):
    id: int | None


def row_id(row: _HasId) -> int:
    """The primary key of a row that was loaded or flushed (SQLModel types ``id`` as ``int | None``
    because a new row has none until the database gives it one)."""
    if row.id is None:
        raise RuntimeError(f"{type(row).__name__} has no id yet: flush it first")
    return row.id


def _bigint(**kw: Any) -> Any:
    # Any: SQLModel's ``Field`` overloads cannot be forwarded **kw, and the column reads as an int.
    return Field(sa_type=sa.BigInteger, **kw)


class Namespace(SQLModel, table=True):
    """The first half of ``namespace/name``; owned by exactly one user or organisation."""

    __tablename__ = "namespaces"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=39, unique=True, index=True)
    kind: NamespaceKind = Field(sa_type=sa.String(8))
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    namespace_id: int = Field(foreign_key="namespaces.id", unique=True)
    name: str = Field(max_length=39, unique=True, index=True)
    email: str | None = Field(default=None, max_length=254)
    password_hash: str | None = Field(default=None, max_length=255)
    is_admin: bool = False
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class Organisation(SQLModel, table=True):
    __tablename__ = "organisations"
    id: int | None = Field(default=None, primary_key=True)
    namespace_id: int = Field(foreign_key="namespaces.id", unique=True)
    name: str = Field(max_length=39, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class OrgMember(SQLModel, table=True):
    __tablename__ = "org_members"
    org_id: int = Field(foreign_key="organisations.id", primary_key=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    role: OrgRole = Field(sa_type=sa.String(16))
    created_at: datetime = Field(default_factory=utcnow)


class Token(SQLModel, table=True):
    """An API token. Only the sha256 of the secret is kept; the secret is shown once."""

    __tablename__ = "tokens"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    display_prefix: str = Field(max_length=16)
    scopes: str = Field(max_length=2000)  # space-separated
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class Package(SQLModel, table=True):
    __tablename__ = "packages"
    #: One package per look-alike name in a namespace (``cvflow.names.normalize_name``); the
    #: index decides races between publishers of ``a-b`` and ``a_b``.
    __table_args__ = (sa.Index("uq_packages_namespace_normalized", "namespace_id", "normalized_name", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    namespace_id: int = Field(foreign_key="namespaces.id", index=True)
    name: str = Field(max_length=64)
    #: ``normalize_name(name)``; a package that collided before migration 0006 has ``~<id>`` appended.
    normalized_name: str = Field(max_length=96)
    full_name: str = Field(max_length=104, unique=True, index=True)
    private: bool = False
    description: str = Field(default="", max_length=512)
    task: str | None = Field(default=None, max_length=32, index=True)
    license: str | None = Field(default=None, max_length=100)
    framework: str | None = Field(default=None, max_length=32, index=True)
    #: ``model`` or ``dataset``: the manifest's ``package.kind`` at the latest version (search filters on it).
    kind: str = Field(default="model", max_length=16, index=True)
    latest_version: str | None = Field(default=None, max_length=128)
    downloads: int = _bigint(default=0, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class UserIdentity(SQLModel, table=True):
    """A sign-in identity from an OpenID Connect provider, linked to a local user."""

    __tablename__ = "user_identities"
    provider: str = Field(max_length=64, primary_key=True)
    subject: str = Field(max_length=255, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow)


class PackageTag(SQLModel, table=True):
    __tablename__ = "package_tags"
    package_id: int = Field(foreign_key="packages.id", primary_key=True, ondelete="CASCADE")
    tag: str = Field(max_length=32, primary_key=True, index=True)


class PackageRole(SQLModel, table=True):
    """Per-package owners and maintainers, beside the namespace's owners."""

    __tablename__ = "package_roles"
    package_id: int = Field(foreign_key="packages.id", primary_key=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    role: PackageRoleName = Field(sa_type=sa.String(16))


class Version(SQLModel, table=True):
    __tablename__ = "versions"
    __table_args__ = (sa.UniqueConstraint("package_id", "precedence", name="uq_versions_package_precedence"),)
    id: int | None = Field(default=None, primary_key=True)
    package_id: int = Field(foreign_key="packages.id", index=True, ondelete="CASCADE")
    version: str = Field(max_length=128)
    #: The version without build metadata: ``1.0.0+a`` and ``1.0.0+b`` are the same release.
    precedence: str = Field(max_length=128)
    #: Sorts lexicographically in SemVer precedence order.
    sort_key: str = Field(max_length=400, index=True)
    is_prerelease: bool = False
    manifest: str  # canonical JSON of the parsed manifest
    manifest_toml: str  # the manifest as published
    published_by: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow)
    total_size: int = _bigint(default=0)
    file_count: int = 0
    yanked: bool = False
    yank_reason: str | None = Field(default=None, max_length=500)
    yanked_at: datetime | None = None
    downloads: int = _bigint(default=0)
    source_repository: str | None = Field(default=None, max_length=500)
    source_commit: str | None = Field(default=None, max_length=64)


class Blob(SQLModel, table=True):
    """A verified blob in the store; a row exists only after its digest was checked."""

    __tablename__ = "blobs"
    sha256: str = Field(max_length=64, primary_key=True)
    size: int = _bigint()
    created_at: datetime = Field(default_factory=utcnow)
    #: Last time a client was told the hub has this blob; ``gc`` spares recent ones.
    touched_at: datetime = Field(default_factory=utcnow)


class BlobGrant(SQLModel, table=True):
    """Who has shown they hold a blob's bytes, and so may reference it in a version.

    A version may reference a blob only if its publisher holds a grant for it or may read a
    version that references it already (docs/api.md, "Blobs and private packages"): knowing a
    digest never gives the bytes. Grants go with their blob (gc).
    """

    __tablename__ = "blob_grants"
    sha256: str = Field(max_length=64, foreign_key="blobs.sha256", primary_key=True, ondelete="CASCADE")
    #: ``user:<id>``: the user uploaded the bytes (the indexer uploads as a repository's
    #: registrant). ``hub:mirror``, ``hub:pull-through``, ``hub:bundle``: the hub fetched them
    #: itself from an upstream or read them from a bundle.
    holder: str = Field(max_length=64, primary_key=True)


class File(SQLModel, table=True):
    __tablename__ = "files"
    __table_args__ = (sa.UniqueConstraint("version_id", "path", name="uq_files_version_path"),)
    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="versions.id", index=True, ondelete="CASCADE")
    path: str = Field(max_length=1024)
    size: int = _bigint()
    sha256: str = Field(max_length=64, foreign_key="blobs.sha256", index=True)


class Dependency(SQLModel, table=True):
    """A version's dependency on another package by version range."""

    __tablename__ = "dependencies"
    version_id: int = Field(foreign_key="versions.id", primary_key=True, ondelete="CASCADE")
    package: str = Field(max_length=104, primary_key=True, index=True)
    range: str = Field(max_length=200)


class YankEvent(SQLModel, table=True):
    __tablename__ = "yank_events"
    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="versions.id", index=True, ondelete="CASCADE")
    action: YankAction = Field(sa_type=sa.String(8))
    reason: str = Field(max_length=500)
    user_id: int | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow)


class DownloadCount(SQLModel, table=True):
    __tablename__ = "download_counts"
    version_id: int = Field(foreign_key="versions.id", primary_key=True, ondelete="CASCADE")
    day: date = Field(primary_key=True)
    count: int = _bigint(default=0)


class Upload(SQLModel, table=True):
    """A resumable upload session. ``offset`` counts bytes committed to staging."""

    __tablename__ = "uploads"
    id: str = Field(max_length=64, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    offset: int = _bigint(default=0)
    chunk_count: int = 0
    storage_token: str = Field(default="", max_length=1024)
    declared_size: int | None = _bigint(default=None)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


# --- the git indexer (indexer/) -----------------------------------------------------------------


class Repository(SQLModel, table=True):
    """A git repository the indexer turns into package versions, one per release tag."""

    __tablename__ = "repositories"
    __table_args__ = (sa.UniqueConstraint("display_url", "subdir", name="uq_repositories_url_subdir"),)
    id: int | None = Field(default=None, primary_key=True)
    namespace_id: int = Field(foreign_key="namespaces.id", index=True)
    registered_by: int = Field(foreign_key="users.id", index=True)
    #: The URL as registered; it may carry credentials, so it is never shown or logged.
    url: str = Field(max_length=1000)
    #: The URL without credentials: what is shown, and what versions record as their source.
    display_url: str = Field(max_length=1000)
    subdir: str = Field(default="", max_length=500)
    branch_pattern: str | None = Field(default=None, max_length=200)
    tag_pattern: str | None = Field(default=None, max_length=200)
    private: bool = False
    #: The package this repository publishes to; set by its first published version.
    package_id: int | None = Field(default=None, foreign_key="packages.id", index=True)
    #: Signs (GitHub, Gitea) or is (GitLab) the secret of this repository's webhooks.
    webhook_secret: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_polled_at: datetime | None = Field(default=None, index=True)
    last_indexed_at: datetime | None = None
    last_status: str | None = Field(default=None, max_length=16)  # "ok" | "error"
    last_result: str | None = None  # JSON: versions, skipped tags, moved tags, errors


class IndexJob(SQLModel, table=True):
    """A request to index one repository, shared by all indexer workers.

    At most one job per repository waits (``queued``) at a time; more triggers add nothing.
    """

    __tablename__ = "index_jobs"
    __table_args__ = (
        sa.Index("uq_index_jobs_one_queued", "repository_id", unique=True,
                 sqlite_where=sa.text("state = 'queued'"), postgresql_where=sa.text("state = 'queued'")),
    )
    id: int | None = Field(default=None, primary_key=True)
    repository_id: int = Field(foreign_key="repositories.id", index=True, ondelete="CASCADE")
    reason: JobReason = Field(sa_type=sa.String(16))
    state: JobState = Field(default="queued", sa_type=sa.String(16), index=True)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: A running job whose lease ran out is taken for lost: its worker died.
    lease_expires_at: datetime | None = None
    worker: str | None = Field(default=None, max_length=200)
    message: str | None = Field(default=None, max_length=1000)


class RepositoryTag(SQLModel, table=True):
    """A tag the indexer published, and the commit it pointed at then; never rewritten."""

    __tablename__ = "repository_tags"
    repository_id: int = Field(foreign_key="repositories.id", primary_key=True, ondelete="CASCADE")
    tag: str = Field(max_length=255, primary_key=True)
    commit: str = Field(max_length=64)
    version: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


# --- mirrors: change feed, sync state, origins, pull-through (hub/mirror/) ---------------------


class ChangeEvent(SQLModel, table=True):
    """One entry of the change feed: a publish, yank, unyank, deletion or visibility change.

    Serials come from :class:`FeedCounter` inside the writing transaction, so they are
    gap-free and become visible in order (docs/mirrors.md).
    """

    __tablename__ = "change_events"
    serial: int = _bigint(primary_key=True, sa_column_kwargs={"autoincrement": False})
    action: ChangeAction = Field(sa_type=sa.String(16))
    package: str = Field(max_length=104, index=True)
    version: str | None = Field(default=None, max_length=128)
    #: JSON with what a mirror needs beside the names (a yank's reason).
    data: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class FeedCounter(SQLModel, table=True):
    """The last serial handed out; its row lock orders writers of the change feed."""

    __tablename__ = "feed_counters"
    name: str = Field(max_length=32, primary_key=True)
    value: int = _bigint(default=0)


class MirrorState(SQLModel, table=True):
    """Where ``cvflow-hub mirror sync`` stopped for one upstream: the last upstream serial applied."""

    __tablename__ = "mirror_states"
    upstream: str = Field(max_length=500, primary_key=True)
    serial: int = _bigint(default=0)
    #: JSON: the filters of the run that reached ``serial``; other filters start over.
    filters: str = Field(default="", max_length=4000)
    #: JSON list of packages whose last sync failed; each run tries them again first.
    retry: str = ""
    last_run_at: datetime | None = None
    last_error: str | None = Field(default=None, max_length=1000)


class PackageOrigin(SQLModel, table=True):
    """Where a package that was not published here came from."""

    __tablename__ = "package_origins"
    package_id: int = Field(foreign_key="packages.id", primary_key=True, ondelete="CASCADE")
    upstream: str = Field(max_length=500)
    via: HubPath = Field(sa_type=sa.String(16))
    synced_at: datetime = Field(default_factory=utcnow)


class UpstreamDocument(SQLModel, table=True):
    """A pull-through hub's copy of an upstream's metadata, served again while upstreams are down."""

    __tablename__ = "upstream_documents"
    #: "package:NS/NAME", "version:NS/NAME@VERSION" or "index:NS/NAME".
    key: str = Field(max_length=300, primary_key=True)
    upstream: str = Field(max_length=500)
    body: str
    fetched_at: datetime = Field(default_factory=utcnow, index=True)


class LoginThrottle(SQLModel, table=True):
    """One key of the shared sign-in limiter (hub/services/throttle.py): a GCRA bucket.

    ``tat`` (the "theoretical arrival time", epoch seconds) is when the key's bucket is empty
    again; a row whose ``tat`` has passed means nothing and is deleted on its own.
    """

    __tablename__ = "login_throttle"
    #: "user:NAME" or "ip:ADDRESS" (IPv6 by its /64).
    key: str = Field(max_length=200, primary_key=True)
    tat: float = Field(index=True)


# --- annotation projects (docs/annotation.md) ------------------------------------------------

#: What a project labels: boxes with a class, or one class per image.
AnnotationTask = Literal["detection", "classification"]
#: A user's role in an annotation project, beside the owners of its namespace.
ProjectRole = Literal["owner", "annotator", "reviewer"]
#: Where an item is: waiting for an annotator, saved by one, or approved by a reviewer.
ItemStatus = Literal["todo", "done", "approved"]
#: The order the queue hands items out in.
QueueOrder = Literal["sequential", "uncertainty"]
#: What an annotation event records.
ItemAction = Literal["add", "suggest", "save", "approve", "reject"]


class AnnotationProject(SQLModel, table=True):
    """An annotation project: the only mutable state of the annotation environment.

    It belongs to a namespace and follows the hub's access rules (``hub.services.access``);
    it is private unless made public. ``classes`` is the label set (a JSON list of names, the
    same rules as a dataset's classes). The suggestion model is a package, a version range and
    a solver; ``model_version`` is the newest version in that range that a suggestion worker
    was last handed, so items suggested by an older one are suggested again.
    """

    __tablename__ = "annotation_projects"
    __table_args__ = (sa.UniqueConstraint("namespace_id", "name", name="uq_annotation_projects_namespace_name"),)
    id: int | None = Field(default=None, primary_key=True)
    namespace_id: int = Field(foreign_key="namespaces.id", index=True)
    name: str = Field(max_length=64)
    full_name: str = Field(max_length=104, unique=True, index=True)
    description: str = Field(default="", max_length=512)
    task: AnnotationTask = Field(sa_type=sa.String(16))
    classes: list[str] = Field(sa_type=sa.JSON)
    private: bool = True
    queue_order: QueueOrder = Field(default="sequential", sa_type=sa.String(16))
    suggest_package: str | None = Field(default=None, max_length=104)
    suggest_range: str = Field(default="*", max_length=128)
    suggest_solver: str | None = Field(default=None, max_length=64)
    model_version: str | None = Field(default=None, max_length=128)
    #: Where snapshots are published: a dataset package ``namespace/name``.
    dataset_package: str = Field(max_length=104)
    #: Fine-tune after every N newly accepted items (``done`` or ``approved``); None: never by itself.
    finetune_every: int | None = None
    #: Where fine-tunes are published (``namespace/name``); None: the suggestion package itself.
    finetune_target: str | None = Field(default=None, max_length=104)
    finetune_trainer: str | None = Field(default=None, max_length=64)
    finetune_hyperparameters: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    #: How many items were accepted when the last training job was queued.
    finetune_accepted: int = 0
    #: The suggestion model's validation metric, as the last training job measured it.
    model_metric: float | None = None
    created_by: int | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ProjectMember(SQLModel, table=True):
    """A user's role in one project."""

    __tablename__ = "project_members"
    project_id: int = Field(foreign_key="annotation_projects.id", primary_key=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="users.id", primary_key=True, index=True, ondelete="CASCADE")
    role: ProjectRole = Field(sa_type=sa.String(16))
    added_at: datetime = Field(default_factory=utcnow)


class AnnotationItem(SQLModel, table=True):
    """One image of a project, its current labels and the model's suggestions.

    ``revision`` grows by one with every saved change: a save names the revision it started
    from, and a stale one is refused with the current state (optimistic concurrency). An
    annotator holds an item while ``lease_until`` lies ahead; a suggestion worker holds it
    while ``suggest_lease_until`` does. ``labels`` and ``suggestions`` are JSON lists
    (docs/annotation.md); ``confidence`` is the suggestions' lowest score, the key of the
    ``uncertainty`` queue order.
    """

    __tablename__ = "annotation_items"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "file_name", name="uq_annotation_items_project_file"),
        sa.Index("ix_annotation_items_queue", "project_id", "status", "confidence", "id"),
        # The queue first looks for the item the caller holds: without this, a walk of the project.
        sa.Index("ix_annotation_items_lease", "leased_by", "project_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="annotation_projects.id", index=True, ondelete="CASCADE")
    sha256: str = Field(max_length=64, foreign_key="blobs.sha256", index=True)
    file_name: str = Field(max_length=255)
    width: int
    height: int
    split: str = Field(default="train", max_length=32)
    status: ItemStatus = Field(default="todo", sa_type=sa.String(16))
    revision: int = 0
    labels: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    suggestions: list[dict[str, Any]] | None = Field(default=None, sa_type=sa.JSON)
    suggestion_version: str | None = Field(default=None, max_length=128)
    confidence: float | None = None
    suggest_lease_until: datetime | None = None
    suggest_worker: str | None = Field(default=None, max_length=200)
    leased_by: int | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    lease_until: datetime | None = None
    time_ms: int = _bigint(default=0)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: int | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")


class AnnotationEvent(SQLModel, table=True):
    """Every change to an item: who, what, when, and how much came from the suggestions.

    For a ``save``, ``accepted``/``edited``/``rejected`` count the suggestions kept as they
    were, changed, or dropped, and ``added`` the labels drawn by hand; ``model_version`` is the
    version whose suggestions the annotator saw.
    """

    __tablename__ = "annotation_events"
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="annotation_projects.id", index=True, ondelete="CASCADE")
    item_id: int = Field(foreign_key="annotation_items.id", index=True, ondelete="CASCADE")
    user_id: int | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    at: datetime = Field(default_factory=utcnow)
    action: ItemAction = Field(sa_type=sa.String(16))
    revision: int
    model_version: str | None = Field(default=None, max_length=128)
    labels: list[dict[str, Any]] | None = Field(default=None, sa_type=sa.JSON)
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    added: int = 0
    duration_ms: int = _bigint(default=0)


class AnnotationSnapshot(SQLModel, table=True):
    """A dataset version published from a project's accepted labels."""

    __tablename__ = "annotation_snapshots"
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="annotation_projects.id", index=True, ondelete="CASCADE")
    package: str = Field(max_length=104)
    version: str = Field(max_length=128)
    items: int
    labels: int
    created_by: int | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow)


# --- training: jobs that workers claim, and where fine-tuned versions came from ----------------

#: Where a training job is.
TrainingState = Literal["queued", "running", "done", "failed"]
TRAINING_ACTIVE = ("queued", "running")


class TrainingJob(SQLModel, table=True):
    """A fine-tune of a base model version on a dataset version, for a project (docs/training.md).

    A worker (``cvflow worker --train``) claims a queued job with a row lock and holds it with a
    lease it renews by heartbeats; a job whose lease runs out goes back to the queue and the next
    worker resumes from ``checkpoint_sha256``. The worker proves it holds the lease with the
    secret the claim handed it (``lease_hash`` is its sha256). ``progress``, ``history`` (one
    entry per epoch: loss and validation metrics) and ``log_tail`` feed the project page. At most
    one job per project is queued or running.
    """

    __tablename__ = "training_jobs"
    __table_args__ = (
        sa.Index("uq_training_jobs_one_active", "project_id", unique=True,
                 sqlite_where=sa.text("state IN ('queued', 'running')"),
                 postgresql_where=sa.text("state IN ('queued', 'running')")),
        sa.Index("ix_training_jobs_state", "state", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="annotation_projects.id", index=True, ondelete="CASCADE")
    state: TrainingState = Field(default="queued", sa_type=sa.String(16))
    reason: str = Field(default="manual", max_length=16)  # "auto" (every N accepted) or "manual"
    base_package: str = Field(max_length=104)
    base_version: str = Field(max_length=128)
    trainer: str = Field(max_length=64)
    dataset_package: str = Field(max_length=104)
    dataset_version: str = Field(max_length=128)
    target_package: str = Field(max_length=104)
    hyperparameters: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    accepted: int = 0  #: the project's accepted items when the job was queued
    created_by: int | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow)
    claimed_by: int | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    worker: str | None = Field(default=None, max_length=200)
    lease_hash: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = None
    heartbeat_at: datetime | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    history: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    log_tail: str = Field(default="", sa_type=sa.Text)
    checkpoint_sha256: str | None = Field(default=None, max_length=64, foreign_key="blobs.sha256")
    checkpoint_state: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    preview_sha256: str | None = Field(default=None, max_length=64, foreign_key="blobs.sha256")
    result_version: str | None = Field(default=None, max_length=128)
    metric: str | None = Field(default=None, max_length=64)
    base_metric: float | None = None
    result_metric: float | None = None
    promoted: bool | None = None
    device: str | None = Field(default=None, max_length=64)
    seconds: float | None = None
    message: str | None = Field(default=None, max_length=2000)


class VersionLineage(SQLModel, table=True):
    """A fine-tuned version's ``[lineage]``: its base version and the dataset version it was trained on.

    The references are kept as written (``base_package``/``base_version``) and, when the version
    exists on this hub, as row ids, so a base's page lists its fine-tunes with one indexed query.
    A mirror may hold a fine-tune without its base: the ids are then None.
    """

    __tablename__ = "version_lineage"
    version_id: int = Field(foreign_key="versions.id", primary_key=True, ondelete="CASCADE")
    base_package: str = Field(max_length=104)
    base_version: str = Field(max_length=128)
    base_version_id: int | None = Field(default=None, foreign_key="versions.id", index=True, ondelete="SET NULL")
    dataset_package: str = Field(max_length=104)
    dataset_version: str = Field(max_length=128)
    dataset_version_id: int | None = Field(default=None, foreign_key="versions.id", index=True,
                                           ondelete="SET NULL")

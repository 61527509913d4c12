"""Typed hub settings, read from the environment once.

Every setting has an environment variable ``CVFLOW_HUB_<NAME>``; the ``cvflow-hub serve``
options override them. Everything else in the hub receives a :class:`Settings` object;
tests build one directly instead of editing ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GiB = 1 << 30
MiB = 1 << 20

_PREFIX = "CVFLOW_HUB_"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cvflow-hub"


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    storage_url: str
    #: Apply Alembic migrations at start-up. On by default for the embedded SQLite database;
    #: production deployments run ``cvflow-hub migrate`` instead.
    auto_migrate: bool = True
    max_blob_size: int = 50 * GiB
    max_chunk_size: int = 1 * GiB
    max_manifest_size: int = 256 * 1024
    max_files_per_version: int = 10_000
    #: Seconds an idle upload session is kept before ``gc`` drops it.
    upload_expiry: int = 24 * 3600
    #: Seconds a blob nothing references is kept before ``gc`` removes it, so a client
    #: that uploaded blobs (or was told they exist) has time to publish the version.
    gc_grace: int = 3600
    #: Seconds a rendered public package document may be served from the in-process cache.
    #: Writes on this replica invalidate at once; other replicas see them within this time.
    metadata_cache_ttl: float = 2.0
    #: S3: answer downloads with a redirect to a presigned URL instead of proxying bytes.
    s3_presign: bool = False
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    #: File storage behind nginx: answer downloads with ``X-Accel-Redirect: <prefix><key>``
    #: so nginx sends the file. Empty disables it.
    accel_redirect_prefix: str = ""
    #: Signs session cookies. Set the same value on every replica; when empty, the embedded
    #: default generates one and keeps it in ``<data dir>/secret_key``.
    secret_key: str = ""
    #: OpenID Connect providers for website sign-in, as JSON: a list of
    #: ``{"name", "issuer", "client_id", "client_secret", "title"?}`` objects.
    oidc_providers: str = ""
    #: Failed sign-in attempts (API and website together) allowed per user name and per client
    #: address in a burst; then one more every ``login_rate_window / login_rate_limit`` seconds.
    #: 0 turns the limit off.
    login_rate_limit: int = 10
    #: Seconds in which ``login_rate_limit`` failed attempts are allowed.
    login_rate_window: float = 300.0
    #: Most sign-in limiter buckets kept; past it the emptiest go first (never all at once).
    login_throttle_max_keys: int = 100_000
    #: Redis for the sign-in limiter (``redis://HOST:6379/0``); empty keeps it in the database.
    redis_url: str = ""
    #: Argon2 cost; tests lower it.
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 64 * 1024
    # --- the git indexer (docs/indexer.md)
    #: Seconds one git command may run before it is killed.
    indexer_git_timeout: int = 600
    #: Largest git repository (objects fetched into the bare cache), in bytes.
    indexer_max_repo_size: int = 2 * GiB
    #: Most files a package directory at one tag may hold.
    indexer_max_files: int = 10_000
    #: Largest file read out of the repository, in bytes.
    indexer_max_file_size: int = 512 * MiB
    #: Largest weight file downloaded from a manifest's URL, in bytes.
    indexer_max_weight_size: int = 20 * GiB
    #: Seconds one weight download may take, all in all.
    indexer_weight_timeout: int = 3600
    #: Most new tags indexed in one run; the rest wait for the next run.
    indexer_max_new_tags: int = 50
    #: Seconds between polls of each registered repository; 0 turns polling off.
    indexer_poll_interval: int = 3600
    #: Seconds an idle worker waits before it looks for work again.
    indexer_idle_sleep: float = 5.0
    #: Seconds after which a job still marked running is taken for lost (its worker died).
    indexer_job_lease: int = 4 * 3600
    #: Allow repositories and weight URLs on private, loopback and link-local addresses
    #: (tests; a hub indexing its own intranet). Off: such addresses are refused.
    indexer_allow_private_addresses: bool = False
    #: Allow ``file://`` repository URLs (tests only: it reads the hub machine's disk).
    indexer_allow_file_urls: bool = False
    #: Fetch submodules (one level, under the same URL rules) and include their files.
    #: Off: submodules are left out of packages.
    indexer_allow_submodules: bool = False
    # --- mirrors (docs/mirrors.md)
    #: Pull-through: upstream hub URLs, comma-separated, asked in order for what this hub lacks.
    #: They are asked anonymously, so only their public packages come through.
    upstreams: str = ""
    #: Seconds a pull-through copy of an upstream's package metadata is served before it is
    #: asked again; when every upstream is down the old copy is served however old it is.
    upstream_metadata_ttl: float = 300.0
    #: Seconds to wait for an upstream to answer (connect and each read).
    upstream_timeout: float = 30.0
    #: Refuse every API write except signing in (a mirror that only serves).
    read_only: bool = False
    #: Allow publishing a new package whose name an upstream has. Off (the default), such a
    #: publish is refused with ``name_shadows_upstream``: the guard against dependency confusion.
    allow_shadowing: bool = False

    @property
    def upstream_urls(self) -> tuple[str, ...]:
        return tuple(u.strip().rstrip("/") for u in self.upstreams.split(",") if u.strip())

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def create(
        cls,
        *,
        data_dir: str | Path | None = None,
        database_url: str | None = None,
        storage_url: str | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: object,
    ) -> Settings:
        """Build settings from explicit values, then ``CVFLOW_HUB_*`` variables, then defaults."""
        env = os.environ if environ is None else environ

        def pick(name: str, explicit: object) -> str | None:
            if explicit is not None:
                return str(explicit)
            return env.get(_PREFIX + name.upper())

        data = Path(pick("data_dir", data_dir) or default_data_dir(env)).expanduser().resolve()
        db_url = normalise_database_url(
            pick("database_url", database_url) or f"sqlite:///{data / 'hub.db'}"
        )
        store_url = pick("storage_url", storage_url) or (data / "storage").as_uri()
        values: dict[str, Any] = {}  # field name -> value, each coerced to its field's type
        for field in dataclasses.fields(cls):
            if field.name in {"data_dir", "database_url", "storage_url"}:
                continue
            if field.name in overrides:
                values[field.name] = overrides.pop(field.name)
                continue
            raw = env.get(_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _coerce(field, raw)
        if overrides:
            raise TypeError(f"unknown settings: {', '.join(sorted(overrides))}")
        if "auto_migrate" not in values:
            values["auto_migrate"] = db_url.startswith("sqlite")
        return cls(data_dir=data, database_url=db_url, storage_url=store_url, **values)


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs written the usual way."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def _coerce(field: dataclasses.Field[object], raw: str) -> object:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    if kind.startswith("bool"):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    return raw

"""Fetching a repository into its bare cache, ``<data dir>/git/<id>-<url hash>.git``.

The cache is reused across runs, so a run fetches only what is new. Branches and tags are
mirrored with force (``+refs/...``) and pruned, so a tag moved or deleted upstream is seen as
it is now; what was published from it is kept in the database and never rewritten. A fetch
that grows the cache past the size limit is killed and the cache removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from indexer.git import GitError, GitOptions, directory_size, run_git


def cache_path(data_dir: Path, repository_id: int, display_url: str) -> Path:
    """Where a repository's bare cache lives; the URL hash keeps a reused id from reusing a cache."""
    digest = hashlib.sha256(display_url.encode()).hexdigest()[:16]
    return data_dir / "git" / f"{repository_id}-{digest}.git"


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Hold the cache for one run: a worker and ``cvflow-hub index`` never fetch into it at once."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.with_suffix(".lock"), "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def fetch(url: str, cache: Path, *, options: GitOptions, max_size: int) -> None:
    """Create the bare cache if needed and fetch every branch and tag of ``url`` into it.

    Raises GitError: ``too_large`` (the cache is removed), ``timeout``, ``failed``, ``missing``.
    """
    if not (cache / "HEAD").exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        # No template: the cache gets no sample hooks, description or info/ files at all.
        run_git(["init", "--bare", "--quiet", "--template=", "."], cwd=cache, options=options)
    try:
        run_git(["fetch", "--quiet", "--prune", "--force", "--no-tags", "--no-write-fetch-head",
                 "--no-recurse-submodules", "--", url, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                cwd=cache, options=options, watch=(cache, max_size))
        if directory_size(cache) > max_size:
            raise GitError(f"the repository is larger than the limit of {max_size} bytes", kind="too_large")
    except GitError as exc:
        if exc.kind in ("too_large", "timeout"):
            shutil.rmtree(cache, ignore_errors=True)
        raise


def remove_cache(cache: Path) -> None:
    shutil.rmtree(cache, ignore_errors=True)
    with contextlib.suppress(OSError):
        cache.with_suffix(".lock").unlink()

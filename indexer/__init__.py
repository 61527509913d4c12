"""The git indexer: turns release tags of git repositories into package versions.

* ``urls``: which repository and weight URLs may be fetched;
* ``git``: the one safe way git runs (clean environment, time limit, no hooks or filters);
* ``fetch``: the bare cache per repository; ``scan``: tags, trees, symlinks and bounds;
* ``weights``: downloading URL weights, verified; ``service``: indexing one repository;
* ``jobs``: the job table workers share, and the worker loop; ``webhooks``: GitHub, GitLab
  and Gitea signatures; ``registry``: registered repositories, access and documents.

See docs/indexer.md.
"""

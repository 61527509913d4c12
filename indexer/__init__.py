"""The git indexer: turns release tags of git repositories into package versions.

| module | what it holds |
| --- | --- |
| ``git`` | the one safe way git runs (clean environment, time limit, no hooks or filters) |
| ``fetch`` | the bare cache per repository |
| ``scan`` | tags, trees, symlinks and bounds |
| ``release`` | one tag to one version (legacy CVPM manifests too) |
| ``weights`` | downloading URL weights, verified |
| ``service`` | indexing one repository |
| ``worker`` | the worker loop, which claims jobs from the shared job table |

The indexer depends on ``hub``, never the reverse. Registered repositories, their access
rules, webhook signatures, the URL policy and the job table are hub domain logic, in
``hub.services`` (``repositories``, ``access``, ``webhooks``, ``urls``, ``jobs``).

See docs/indexer.md.
"""

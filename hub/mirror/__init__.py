"""On-prem mirroring: the change feed, ``mirror sync``, the pull-through cache and air-gap bundles.

See docs/mirrors.md. ``feed`` is used by every write path; the rest only by mirrors.

| module | what it holds |
| --- | --- |
| ``feed`` | the change feed: every change numbered by a serial |
| ``middleware`` | the ``X-CVFlow-Serial`` header; refusing writes on a read-only hub |
| ``sync`` | ``cvflow-hub mirror sync`` |
| ``upstream`` | pull-through from upstream hubs |
| ``copies`` | writing copies of versions published on another hub |
| ``fetch`` | copying blobs from an upstream hub, resumed and verified |
| ``filters`` | ``--filter`` and ``--latest``: which packages and versions are copied |
| ``bundle`` | ``cvflow-hub export`` and ``import`` |
"""

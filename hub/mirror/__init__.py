"""On-prem mirroring: the change feed, ``mirror sync``, the pull-through cache and air-gap bundles.

See docs/mirrors.md. ``feed`` is used by every write path; the rest only by mirrors.
"""

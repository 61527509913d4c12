"""Annotation projects (docs/annotation.md): the only mutable state of the annotation environment.

``labels`` holds the rules every label and suggestion obeys; ``projects`` creates, reads and
manages projects and their members; ``queue`` hands items out with leases and saves labels with
optimistic concurrency; ``images`` adds items from blobs; ``suggestions`` is the side that
suggestion workers call; ``snapshots`` publishes accepted labels as a dataset version. Who may do
what is decided in :mod:`hub.services.access` ("Annotation projects").
"""

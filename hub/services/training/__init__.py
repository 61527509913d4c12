"""The hub's side of the fine-tune loop in a project (docs/training.md): settings, the trigger,
the training job table and its worker protocol, and promotion.

The hub never runs a trainer: it snapshots a project's accepted labels as a dataset version,
queues a ``training_jobs`` row naming the base model version, the trainer and the dataset, and
hands the job to a worker (``cvflow worker --train``) that claims it with a lease. The worker
reports progress, checkpoints and a preview grid while it holds the lease, publishes the
fine-tuned version itself (with ``[lineage]``) and finishes the job naming it; the hub checks
the version's lineage is the job's and promotes it when its validation metric beats the base's.

- :mod:`hub.services.training.loop`: the settings, the project's training view, queueing a job
  (snapshot first) by hand or when enough items were accepted (:func:`after_accept`).
- :mod:`hub.services.training.leases`: claim, heartbeat, checkpoint, preview, finish, promotion.
"""

from __future__ import annotations

from hub.services.training.leases import (
    Claimed,
    checkpoint_blob,
    claim,
    finish,
    heartbeat,
    held_job,
    record_checkpoint,
    record_preview,
    store_checkpoint,
    store_preview,
)
from hub.services.training.loop import (
    after_accept,
    attach,
    job_document,
    job_for_reader,
    preview_bytes,
    queue_job,
    training_view,
    update_settings,
)

__all__ = [
    "Claimed", "after_accept", "attach", "checkpoint_blob", "claim", "finish", "heartbeat", "held_job",
    "job_document", "job_for_reader", "preview_bytes", "queue_job", "record_checkpoint", "record_preview",
    "store_checkpoint", "store_preview", "training_view", "update_settings",
]

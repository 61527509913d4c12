"""Fine-tuning in a project (docs/training.md): the settings, the jobs, and the training workers' protocol.

Readers of a project see its settings and jobs; owners change the settings and queue a job. A
worker (``cvflow worker --train``, a token with ``annotate`` and a publish scope covering the
job's target) claims a job and proves it holds the lease with the secret the claim answered:
``lease`` in JSON bodies, the ``CVFlow-Lease`` header on binary uploads and the checkpoint's
download. The rules are :mod:`hub.services.training`'s.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response

from hub.api._http import Registry, json_response, principal, read_body
from hub.api.access import OPTIONAL, Access
from hub.api.blobs import _stream_into
from hub.api.bodies import ClaimTraining, FinishTraining, TrainingHeartbeat, TrainingSettings
from hub.api.downloads import blob_response
from hub.context import ctx, in_session, run_sync
from hub.errors import ErrorCode, HubError
from hub.services import training
from hub.services.annotation.projects import get_project
from hub.services.training import leases, loop

endpoint = Registry()

_PROJECT = (("namespace", "path", "namespace (user or organisation)"), ("name", "path", "project name"))
_JOB = (("job_id", "path", "the training job's id"),)
_LEASE = (*_JOB, ("CVFlow-Lease", "header", "the lease secret the claim answered"))
_HOLDER: tuple[ErrorCode, ...] = ("job_not_found", "lease_lost")
_HOLDER_ACCESS = Access("annotate", role="holder of the job's lease")
#: A heartbeat carries up to 1000 epochs of curves.
_HEARTBEAT_LIMIT = 4 << 20

_NUMBER = {"type": ["number", "null"]}
_TEXT = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
JOB = {"type": "object", "description": "a training job (docs/training.md)", "properties": {
    "id": {"type": "integer"}, "project": {"type": "string"},
    "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
    "reason": {"type": "string"}, "base": _TEXT, "trainer": _TEXT, "dataset": _TEXT, "target": _TEXT,
    "hyperparameters": {"type": "object"}, "accepted": {"type": "integer"}, "worker": _TEXT,
    "attempts": {"type": "integer"}, "created_at": _TIME, "started_at": _TIME, "finished_at": _TIME,
    "heartbeat_at": _TIME, "lease_expires_at": _TIME, "progress": {"type": ["object", "null"]},
    "history": {"type": "array", "items": {"type": "object"}}, "log_tail": {"type": "string"},
    "has_checkpoint": {"type": "boolean"}, "has_preview": {"type": "boolean"}, "metric": _TEXT,
    "base_metric": _NUMBER, "result_metric": _NUMBER, "result_version": _TEXT,
    "promoted": {"type": ["boolean", "null"]}, "device": _TEXT, "seconds": _NUMBER, "message": _TEXT}}
_CHECKPOINT = {"type": "object", "properties": {
    "sha256": {"type": "string"}, "size": {"type": ["integer", "null"]}, "state": {"type": ["object", "null"]}}}
VIEW = {"type": "object", "properties": {
    "settings": {"type": "object", "properties": {
        "every": {"type": ["integer", "null"]}, "target": _TEXT, "trainer": _TEXT,
        "hyperparameters": {"type": "object"},
        "accepted": {"type": "integer", "description": "items done or approved now"},
        "accepted_at_last_job": {"type": "integer"},
        "next_at": {"type": ["integer", "null"], "description": "the accepted count that queues the next job"},
        "model_metric": _NUMBER}},
    "jobs": {"type": "array", "items": JOB, "description": "newest first, at most 20"}}}


def _lease_header(request: Request) -> str:
    lease = request.headers.get("cvflow-lease", "").strip()
    if not lease:
        raise HubError("bad_request", "send the lease secret in the CVFlow-Lease header")
    return lease


@endpoint("GET", "/api/v1/projects/{namespace}/{name}/training", "The project's fine-tune settings and recent jobs",
          "training", access=OPTIONAL, params=_PROJECT, errors=("project_not_found",), response=VIEW)
async def get_training(request: Request) -> Response:
    who = await principal(request)
    namespace, name = request.path_params["namespace"], request.path_params["name"]

    def work(session: Session) -> dict[str, Any]:
        return training.training_view(session, who, get_project(session, who, namespace, name))

    return json_response(await in_session(request, work))


@endpoint("PATCH", "/api/v1/projects/{namespace}/{name}/training", "Change the project's fine-tune settings",
          "training", access=Access("annotate", role="project's owner"), params=_PROJECT, body=TrainingSettings,
          errors=("project_not_found", "invalid_training"), response=VIEW)
async def patch_training(request: Request) -> Response:
    who = await principal(request, required=True)
    body: TrainingSettings = await read_body(request)
    namespace, name = request.path_params["namespace"], request.path_params["name"]
    changes = {k: getattr(body, k) for k in body.model_fields_set}

    def work(session: Session) -> dict[str, Any]:
        return training.update_settings(session, who, get_project(session, who, namespace, name), **changes)

    return json_response(await in_session(request, work, write=True))


@endpoint("POST", "/api/v1/projects/{namespace}/{name}/training-jobs",
          "Queue a fine-tune now: the accepted labels are published as a snapshot, then the job is queued",
          "training", access=Access("annotate", role="project's owner"), params=_PROJECT, status=201,
          errors=("project_not_found", "job_active", "nothing_to_snapshot", "no_suggestion_model", "no_trainer",
                  "invalid_training", "invalid_labels", "namespace_not_found", "invalid_package_name",
                  "invalid_manifest", "version_exists", "similar_name_exists", "name_shadows_upstream",
                  "missing_blobs", "storage_unavailable"),
          response=JOB)
async def post_training_job(request: Request) -> Response:
    who = await principal(request, required=True)
    full = f"{request.path_params['namespace']}/{request.path_params['name']}"
    doc = await run_sync(training.queue_job, ctx(request), who, full, reason="manual")
    return json_response(doc, status=201, headers={"location": f"/api/v1/training-jobs/{doc['id']}"})


@endpoint("GET", "/api/v1/training-jobs/{job_id:id}", "A training job", "training", access=OPTIONAL, params=_JOB,
          errors=("job_not_found",), response=JOB)
async def get_training_job(request: Request) -> Response:
    who = await principal(request)
    job_id = request.path_params["job_id"]

    def work(session: Session) -> dict[str, Any]:
        job = training.job_for_reader(session, who, job_id)
        return training.job_document(job, loop.project_name(session, job))

    return json_response(await in_session(request, work))


@endpoint("GET", "/api/v1/training-jobs/{job_id:id}/preview.png", "The job's preview grid (PNG or JPEG)", "training",
          access=OPTIONAL, params=_JOB, errors=("job_not_found", "storage_unavailable"),
          response={"type": "string", "format": "binary"})
async def get_training_preview(request: Request) -> Response:
    who = await principal(request)
    data = await run_sync(training.preview_bytes, ctx(request), who, request.path_params["job_id"])
    return Response(data, media_type=loop.image_type(data), headers={"cache-control": "private, max-age=60"})


@endpoint("POST", "/api/v1/training-jobs/claim",
          "A training worker takes the oldest queued job it may run, with a lease; 204 when there is none",
          "training", access=Access("annotate"), body=ClaimTraining,
          also={204: "no job the caller may run is queued"},
          response={"type": "object", "properties": {
              "job": JOB, "lease": {"type": "string", "description": "the lease secret: prove the lease with it"},
              "lease_expires_at": {"type": "string", "format": "date-time"},
              "checkpoint": {"anyOf": [_CHECKPOINT, {"type": "null"}], "description": "where to resume from"}}})
async def claim_training_job(request: Request) -> Response:
    who = await principal(request, required=True)
    body: ClaimTraining = await read_body(request)
    worker = body.worker or (who.user.name if who.user else "worker")
    claimed = await run_sync(leases.claim, ctx(request).engine, who, worker=worker,
                             lease_seconds=body.lease_seconds, projects=body.projects)
    if claimed is None:
        return Response(status_code=204, media_type="application/json")  # JSON's type, as every API answer
    return json_response(claimed.document())


@endpoint("POST", "/api/v1/training-jobs/{job_id:id}/heartbeat",
          "The lease's holder reports progress, the epochs' curves and the log tail, and renews the lease",
          "training", access=_HOLDER_ACCESS, params=_JOB, body=TrainingHeartbeat, errors=_HOLDER,
          response={"type": "object", "properties": {"lease_expires_at": {"type": "string", "format": "date-time"}}})
async def training_heartbeat(request: Request) -> Response:
    who = await principal(request, required=True)
    body: TrainingHeartbeat = await read_body(request, _HEARTBEAT_LIMIT)
    job_id = request.path_params["job_id"]
    progress = body.progress.model_dump() if body.progress is not None else None
    history = [e.model_dump() for e in body.history] if body.history is not None else None

    def work(session: Session) -> dict[str, Any]:
        return training.heartbeat(session, who, job_id, body.lease, progress=progress, history=history,
                                  log_tail=body.log_tail, lease_seconds=body.lease_seconds)

    return json_response(await in_session(request, work, write=True))


@endpoint("PUT", "/api/v1/training-jobs/{job_id:id}/checkpoint",
          "The lease's holder uploads its latest checkpoint (a safetensors file, its state in the metadata's "
          "cvflow_state)", "training", access=_HOLDER_ACCESS, params=_LEASE, request_type="application/octet-stream",
          errors=(*_HOLDER, "bad_request", "invalid_training", "upload_too_large", "storage_unavailable"),
          response=_CHECKPOINT)
async def put_training_checkpoint(request: Request) -> Response:
    who = await principal(request, required=True)
    lease = _lease_header(request)
    job_id = request.path_params["job_id"]
    hub = ctx(request)
    await in_session(request, lambda session: training.held_job(session, who, job_id, lease))
    limit = min(leases.MAX_CHECKPOINT_BYTES, hub.settings.max_blob_size)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HubError("upload_too_large", f"a checkpoint may be at most {limit} bytes", details={"limit": limit})
    digest, size, state = await _stream_into(request, lambda pieces: training.store_checkpoint(
        hub.uploads, pieces, limit=limit))

    def work(session: Session) -> dict[str, Any]:
        return training.record_checkpoint(session, who, job_id, lease, digest, size, state)

    return json_response(await in_session(request, work, write=True))


@endpoint("GET", "/api/v1/training-jobs/{job_id:id}/checkpoint", "The lease's holder downloads the checkpoint to "
          "resume from", "training", access=_HOLDER_ACCESS, params=_LEASE,
          errors=(*_HOLDER, "bad_request", "not_found", "blob_not_found", "storage_unavailable", "invalid_range"),
          response={"type": "string", "format": "binary"})
async def get_training_checkpoint(request: Request) -> Response:
    who = await principal(request, required=True)
    lease = _lease_header(request)
    job_id = request.path_params["job_id"]
    digest, size = await in_session(request, lambda session: training.checkpoint_blob(session, who, job_id, lease))
    response = await blob_response(request, ctx(request), digest, size, filename="checkpoint.safetensors")
    response.headers["cache-control"] = "private, no-store"
    return response


@endpoint("PUT", "/api/v1/training-jobs/{job_id:id}/preview",
          "The lease's holder uploads the preview grid (a PNG or JPEG of at most 8 MiB)", "training",
          access=_HOLDER_ACCESS, params=_LEASE, request_type="application/octet-stream", status=204,
          errors=(*_HOLDER, "bad_request", "invalid_image", "body_too_large", "storage_unavailable"))
async def put_training_preview(request: Request) -> Response:
    who = await principal(request, required=True)
    lease = _lease_header(request)
    job_id = request.path_params["job_id"]
    hub = ctx(request)
    await in_session(request, lambda session: training.held_job(session, who, job_id, lease))
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > leases.MAX_PREVIEW_BYTES:
        raise HubError("body_too_large", f"a preview may be at most {leases.MAX_PREVIEW_BYTES} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > leases.MAX_PREVIEW_BYTES:
            raise HubError("body_too_large", f"a preview may be at most {leases.MAX_PREVIEW_BYTES} bytes")
    digest = await run_sync(training.store_preview, hub.uploads, bytes(data))
    await in_session(request, lambda session: training.record_preview(session, who, job_id, lease, digest), write=True)
    return Response(status_code=204)


@endpoint("POST", "/api/v1/training-jobs/{job_id:id}/finish",
          "The lease's holder ends the job: done, naming the version it published (its lineage must be the job's; "
          "it is promoted when its metric beats the base's), or failed", "training", access=_HOLDER_ACCESS,
          params=_JOB, body=FinishTraining, errors=(*_HOLDER, "invalid_training"), response=JOB)
async def finish_training_job(request: Request) -> Response:
    who = await principal(request, required=True)
    body: FinishTraining = await read_body(request, _HEARTBEAT_LIMIT)
    job_id = request.path_params["job_id"]

    def work(session: Session) -> dict[str, Any]:
        return training.finish(session, who, job_id, body.lease, state=body.state, version=body.version,
                               metrics=body.metrics, base_metrics=body.base_metrics, device=body.device,
                               seconds=body.seconds, message=body.message, log_tail=body.log_tail)

    return json_response(await in_session(request, work, write=True))

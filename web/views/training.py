"""The project page's fine-tuning panel (docs/training.md, "The loop in a project").

The panel is part of ``/projects/NS/NAME``: :func:`panel` builds its part of the page's context
(the project page's view calls it in the same unit of work), and ``web/templates/_training.html``
draws it. It shows the settings (a form for owners, read-only for everyone else), how many items
are accepted and when the next job is queued, the current or last job (state, worker, progress,
the loss and validation-metric curves as server-rendered SVG, the preview grid, the log tail, the
result), and the earlier jobs.

The rules are the hub's, in :mod:`hub.services.training`; this module turns the form into their
arguments and their errors into the panel, as the API does with JSON. Its routes:

- ``POST /projects/NS/NAME/-/training``: the settings form (owners, CSRF);
- ``POST /projects/NS/NAME/-/training-jobs``: "Queue a fine-tune now" (owners, CSRF);
- ``GET /projects/NS/NAME/-/training``: the training view as JSON, for the page's poll while a
  job is queued or running (``web/static/training.js``; readers of the project);
- ``GET /projects/NS/NAME/-/training-jobs/ID/preview.png``: a job's preview grid (readers; a
  private project's previews are 404 to everyone else, as its page is).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.api._http import json_response
from hub.context import ctx, in_session, run_sync
from hub.errors import HubError
from hub.models import AnnotationProject
from hub.services import training as service
from hub.services.access import require_project_role
from hub.services.accounts import Principal
from web.charts import loss_curve_svg, metric_curve_svg, metric_names
from web.session import web_principal
from web.templating import render
from web.views import projects

#: The states in which a job may still change: the page polls while its current job is in one.
ACTIVE = ("queued", "running")
#: Most hyperparameters one form may set, and the longest form field read.
MAX_HYPERPARAMETERS = 50
_FIELD_LIMIT = 4000
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_INT = re.compile(r"[+-]?[0-9]{1,18}")
#: The notices a redirect back to the project page may ask for (``?training=KEY``).
NOTICES = {"saved": "Fine-tuning settings saved.", "queued": "Fine-tune queued: a training worker will pick it up."}


# --- the panel's part of the project page ---------------------------------------------------


def panel(session: Session, who: Principal, project: AnnotationProject) -> dict[str, Any]:
    """The panel's context: the settings, the current or last job and the earlier ones, each
    job with its texts and charts ready to draw (the template decides nothing about numbers)."""
    view = service.training_view(session, who, project)
    settings = dict(view.get("settings") or {})
    jobs = [_job(project.full_name, j) for j in view.get("jobs") or []]
    accepted = _int(settings.get("accepted"))
    next_at = _int(settings.get("next_at"))
    return {
        "settings": settings,
        "hyperparameters_text": hyperparameters_text(settings.get("hyperparameters") or {}),
        "accepted": accepted,
        "next_at": next_at,
        "model_metric": number(settings.get("model_metric")) if _float(settings.get("model_metric")) is not None else "",
        "to_go": max(0, next_at - accepted) if next_at is not None and accepted is not None else None,
        "current": jobs[0] if jobs else None,
        "earlier": jobs[1:],
        "poll": jobs[0]["state"] in ACTIVE if jobs else False,
        "poll_url": f"/projects/{project.full_name}/-/training",
        "values": None,  # the settings form as sent, when it is shown again with an error
        "error": None,
        "notices": NOTICES,
    }


def _job(full_name: str, job: dict[str, Any]) -> dict[str, Any]:
    """A job's JSON (the API's shape) with what the panel draws from it."""
    history = [h for h in job.get("history") or [] if isinstance(h, dict)]
    metric = job.get("metric") if isinstance(job.get("metric"), str) else None
    progress = job.get("progress") if isinstance(job.get("progress"), dict) else None
    step, total = (_int(progress.get("step")), _int(progress.get("total"))) if progress else (None, None)
    names = metric_names(history, metric)
    return {
        **job,
        "history": history,
        "base_link": version_link(job.get("base")),
        "dataset_link": version_link(job.get("dataset")),
        "result_link": _result_link(job.get("target"), job.get("result_version")),
        "outcome": outcome(job),
        "before": number(job.get("base_metric")),
        "after": number(job.get("result_metric")),
        "step": step, "total": total,
        "percent": 100.0 * step / total if step is not None and total else None,
        "epoch": _int(progress.get("epoch")) if progress else None,
        "loss": number(progress.get("loss")) if progress else "",
        "loss_chart": loss_curve_svg(history),
        "metric_chart": metric_curve_svg(history, metric, _float(job.get("base_metric"))),
        "metric_names": names,
        "epochs": [_epoch_row(h, names) for h in history],
        "preview_url": f"/projects/{full_name}/-/training-jobs/{job['id']}/preview.png" if job.get("has_preview") else None,
        "when": when(job.get("finished_at") or job.get("started_at") or job.get("created_at")),
        "created": when(job.get("created_at")), "started": when(job.get("started_at")),
        "finished": when(job.get("finished_at")), "heartbeat": when(job.get("heartbeat_at")),
        "duration": duration(job.get("seconds")),
    }


def _epoch_row(entry: dict[str, Any], names: list[str]) -> dict[str, Any]:
    raw = entry.get("metrics")
    metrics: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return {"epoch": entry.get("epoch"), "loss": number(entry.get("loss")),
            "metrics": [number(metrics.get(n)) for n in names]}


def outcome(job: dict[str, Any]) -> str:
    """The result in words: promoted or kept, and why, with the two metrics compared
    ("kept the current model: 0.61 < 0.65"); the hub's message for a failed job."""
    state = job.get("state")
    if state == "failed":
        return f"failed: {job.get('message')}" if job.get("message") else "failed"
    if state != "done":
        return ""
    before, after, promoted = _float(job.get("base_metric")), _float(job.get("result_metric")), job.get("promoted")
    name = f"{job.get('metric')} " if job.get("metric") else ""
    if before is None or after is None:
        compared = ""
    elif promoted:
        compared = f": {name}{after:.4g} > {before:.4g}"
    else:
        compared = f": {name}{after:.4g} {'<' if after < before else '='} {before:.4g}"
    if promoted:
        return "promoted: the project's suggestions now come from the fine-tune" + compared
    if promoted is False:
        return "kept the current model" + compared
    return "not compared" + (f": {job.get('message')}" if job.get("message") else "")


def version_link(ref: Any) -> dict[str, str] | None:
    """``ns/name@version`` as a link to its version page (text as written)."""
    if not isinstance(ref, str) or not ref:
        return None
    name, _, version = ref.partition("@")
    return {"href": f"/{name}/v/{version}" if version else f"/{name}", "text": ref}


def _result_link(target: Any, version: Any) -> dict[str, str] | None:
    if not isinstance(version, str) or not version:
        return None
    if "@" in version:  # already a full reference
        return version_link(version)
    return version_link(f"{target}@{version}") if isinstance(target, str) and target else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def number(value: Any) -> str:
    """A metric or a loss as the panel prints it: four significant digits, "–" for none."""
    f = _float(value)
    return "–" if f is None else f"{f:.4g}"


def when(value: Any) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM`` (UTC, as the hub stores it)."""
    if isinstance(value, datetime):
        value = value.isoformat()
    if not isinstance(value, str) or len(value) < 16:
        return ""
    return value[:10] + " " + value[11:16]


def duration(seconds: Any) -> str:
    s = _float(seconds)
    if s is None:
        return ""
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


# --- hyperparameters as the form writes them ------------------------------------------------


def hyperparameters_text(values: dict[str, Any]) -> str:
    """``{"epochs": 8, "lr": 0.001}`` as the form's ``epochs=8`` lines."""
    return "\n".join(f"{k}={_value_text(v)}" for k, v in values.items())


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def parse_hyperparameters(text: str) -> dict[str, Any]:
    """``key=value`` pairs, one a line (or separated by commas), as JSON values: whole numbers
    as integers (a trainer's int bounds take integers only), other numbers as floats, ``true``
    and ``false``, anything else as text. The trainer's bounds are the hub's to check when a job
    is queued; this only refuses what is not a pair (``invalid_training``)."""
    out: dict[str, Any] = {}
    for raw in re.split(r"[\n,;]", text):
        line = raw.strip()
        if not line:
            continue
        name, eq, value = (part.strip() for part in line.partition("="))
        if not eq or not value:
            raise _invalid("hyperparameters", f"'{line[:80]}' is not name=value")
        if not _NAME.fullmatch(name):
            raise _invalid("hyperparameters", f"'{name[:80]}' is not a hyperparameter name (letters, digits, _ . -)")
        if name in out:
            raise _invalid("hyperparameters", f"'{name}' is set twice")
        out[name] = _parse_value(value)
        if len(out) > MAX_HYPERPARAMETERS:
            raise _invalid("hyperparameters", f"at most {MAX_HYPERPARAMETERS} hyperparameters")
    return out


def _parse_value(text: str) -> Any:
    if _INT.fullmatch(text):
        return int(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        number = float(text)
    except ValueError:
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" else text
    if not math.isfinite(number):
        raise _invalid("hyperparameters", f"'{text[:40]}' is not a finite number")
    return number


def parse_every(text: str) -> int | None:
    """The form's "every N accepted items": empty turns automatic fine-tunes off."""
    if not text:
        return None
    if not _INT.fullmatch(text):
        raise _invalid("every", "'every' is a whole number of accepted items, or empty to turn automatic fine-tunes off")
    return int(text)


def _invalid(field: str, message: str) -> HubError:
    return HubError("invalid_training", message, details={"problems": [{"field": field, "message": message}]})


# --- routes ---------------------------------------------------------------------------------


async def save_settings(request: Request) -> Response:
    """The settings form: ``every``, ``target``, ``trainer``, ``hyperparameters``. The CSRF
    token was checked before this view runs (:class:`web.security.CsrfMiddleware`)."""
    who = await web_principal(request)
    if who.user is None:
        return projects.sign_in_first(request)
    form = await request.form()
    values = {k: str(form.get(k) or "").strip()[:_FIELD_LIMIT] for k in ("every", "target", "trainer", "hyperparameters")}

    def work(session: Session) -> str:
        projects.refuse_on_mirror(request)
        project = projects.find(session, who, request)
        # Who may change them is checked before the form's content: a reader learns nothing
        # from a refused value.
        require_project_role(session, who, project, "manage")
        every = parse_every(values["every"])
        hyperparameters = parse_hyperparameters(values["hyperparameters"])
        service.update_settings(session, who, project, every=every, target=values["target"] or None,
                                trainer=values["trainer"] or None, hyperparameters=hyperparameters)
        return project.full_name

    try:
        full_name = await in_session(request, work, write=True)
    except HubError as exc:
        if exc.code == "project_not_found":
            return projects.not_found(request, exc)
        return await _panel_with_error(request, who, exc, values)
    return RedirectResponse(f"/projects/{full_name}?training=saved#training-h", status_code=303)


async def queue_now(request: Request) -> Response:
    """"Queue a fine-tune now" (owners): :func:`hub.services.training.queue_job`, which
    publishes a snapshot of the accepted items first, outside this request's unit of work."""
    who = await web_principal(request)
    if who.user is None:
        return projects.sign_in_first(request)

    def resolve(session: Session) -> str:
        projects.refuse_on_mirror(request)
        return projects.find(session, who, request).full_name

    try:
        full_name = await in_session(request, resolve)
        await run_sync(service.queue_job, ctx(request), who, full_name, reason="manual")
    except HubError as exc:
        if exc.code == "project_not_found":
            return projects.not_found(request, exc)
        return await _panel_with_error(request, who, exc, None)
    return RedirectResponse(f"/projects/{full_name}?training=queued#training-h", status_code=303)


async def _panel_with_error(request: Request, who: Principal, error: HubError,
                            values: dict[str, str] | None) -> Response:
    """The project page again, the hub's error in the panel beside the form (and the form
    as it was sent, so nothing typed is lost)."""
    try:
        context = await in_session(request, projects._project_context, who, request)
    except HubError as exc:
        return projects.not_found(request, exc)
    context["training"] = {**context["training"], "error": error, "values": values}
    return render(request, "project.html", status=projects._form_status(error), **context, notices=[], error=None)


async def training_json(request: Request) -> Response:
    """The training view (the API's ``GET .../training`` shape) for the page's poll."""
    who = await web_principal(request)

    def work(session: Session) -> dict[str, Any]:
        return service.training_view(session, who, projects.find(session, who, request))

    try:
        view = await in_session(request, work)
    except HubError as exc:
        error = projects.SIGNED_OUT if exc.code == "unauthenticated" else exc
        return json_response(error.body(), status=error.status)
    return json_response(view, headers={"cache-control": "no-store"})


async def preview(request: Request) -> Response:
    """A job's preview grid (PNG or JPEG), for readers of the job's project: the project in the path
    must be the job's (a job id under another project is 404, as is a private project's job to
    anyone who may not read it). Cached privately (a project may turn private) and revalidated
    by its sha256, which changes when a resumed job uploads a new grid."""
    who = await web_principal(request)
    job_id = request.path_params["job_id"]

    def work(session: Session) -> str | None:
        project = projects.find(session, who, request)
        job = service.job_for_reader(session, who, job_id)
        if job.project_id != project.id:
            raise HubError("job_not_found")
        return job.preview_sha256

    try:
        digest = await in_session(request, work)
        etag = f'"{digest}"' if digest else None
        headers = {"cache-control": "private, max-age=60"}
        if etag:
            headers["etag"] = etag
            if etag in (t.strip() for t in request.headers.get("if-none-match", "").split(",")):
                return Response(status_code=304, headers=headers)
        data = await run_sync(service.preview_bytes, ctx(request), who, job_id)
    except HubError as exc:
        return json_response(exc.body(), status=exc.status)
    return Response(data, media_type=_image_type(data), headers=headers)


def _image_type(data: bytes) -> str:
    """A preview is a PNG or a JPEG (the hub checked its header when it was stored)."""
    return "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"

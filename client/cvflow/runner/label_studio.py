"""Label Studio's ML backend protocol, for ``cvflow run PKG --label-studio URL`` (docs/label-studio.md).

Routes (on only when the runner is started with ``--label-studio``)::

    GET  /health    {"status": "UP", "model_class": ..., "model_version": "NS/NAME@VERSION"}
    POST /setup     Label Studio connects: its labelling config (``schema``), URL and token
    POST /predict   {"tasks": [...], "label_config": "<View>..."} -> {"results": [one per task]}
    POST /webhook   training events: acknowledged only (the hub's own loop fine-tunes)
    POST /train     the same, as older Label Studio versions send it

The served solver is the one whose manifest declares ``suggest``; its output becomes
suggestions through ``cvflow.annotate.outputs`` (the conversion ``cvflow annotate suggest``
uses), then Label Studio results: boxes as ``rectanglelabels`` in percent of the image size,
class scores as ``choices``. The control's ``from_name``/``to_name`` and its labels come from
the labelling config; a class is matched to a label by name, case-insensitively, and a class
the config lacks is left out. Images are read from the task's data: absolute URLs under an
``--allow-url`` prefix or the Label Studio URL, and ``/data/...`` paths resolved against that
URL, fetched with ``Authorization: Token ...`` (``LABEL_STUDIO_API_KEY``, else the token
Label Studio sent in ``/setup``) only when they lie under it.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from xml.etree import ElementTree

from cvflow.runner.errors import RunnerError, field_error
from cvflow.runner.images import ImagePolicy, fetch, url_allowed
from cvflow.runner.requests import parse_inputs, parse_json
from cvflow.runner.results import encode_result
from cvflow.safeparse import loads_toml
from cvflow.solver import Image

if TYPE_CHECKING:
    from cvflow.annotate.outputs import Mapped
    from cvflow.manifest.suggest import Suggest
    from cvflow.runner.loader import LoadedSolver
    from cvflow.runner.server import Runner

ROUTES: dict[str, tuple[str, ...]] = {"health": ("GET", "HEAD"), "setup": ("POST",), "predict": ("POST",),
                                      "webhook": ("POST",), "train": ("POST",)}
ControlKind = Literal["rectanglelabels", "choices"]
#: The control tag each ``suggest`` kind fills.
CONTROL_OF: dict[str, ControlKind] = {"boxes": "rectanglelabels", "scores": "choices"}
_TAGS: dict[str, ControlKind] = {"rectanglelabels": "rectanglelabels", "choices": "choices"}
_LABEL_TAGS = ("label", "choice")
_MAX_CONFIG = 1 << 20


@dataclass(frozen=True)
class LabelStudioSettings:
    """``--label-studio URL`` (``LABEL_STUDIO_URL``) and ``LABEL_STUDIO_API_KEY``."""

    url: str
    api_key: str = ""


@dataclass(frozen=True)
class Control:
    """One control tag of a labelling config that a solver can fill."""

    kind: ControlKind
    from_name: str
    to_name: str
    value: str  # the task data key of the image it labels ("$image" -> "image")
    labels: tuple[str, ...]


def _fromstring() -> Callable[[str], ElementTree.Element]:
    try:
        from defusedxml.ElementTree import fromstring
    except ImportError:  # a package's venv: the DTD is refused before parsing
        return ElementTree.fromstring
    return fromstring


def parse_config(xml: str) -> list[Control]:
    """The ``RectangleLabels`` and ``Choices`` controls of a labelling config, with their labels.

    Parsed with ``defusedxml`` where it is installed; otherwise with the standard library after
    refusing any DTD (a labelling config has none), which leaves no entity to expand.

    Raises:
        RunnerError: ``invalid_label_config`` (not XML, a DTD, or a control without ``name``/``toName``).
    """
    if len(xml) > _MAX_CONFIG:
        raise RunnerError("invalid_label_config", f"the labelling config is over {_MAX_CONFIG} characters")
    if "<!" in xml.replace("<!--", ""):
        raise RunnerError("invalid_label_config", "the labelling config holds a DTD or a CDATA section; refused")
    try:
        root = _fromstring()(xml)
    except Exception as exc:  # ParseError, defusedxml's refusals
        raise RunnerError("invalid_label_config", f"the labelling config is not XML: {exc}") from None
    values = {el.get("name"): (el.get("value") or "").lstrip("$") for el in root.iter() if el.get("value")}
    controls = []
    for el in root.iter():
        kind = _TAGS.get(el.tag.lower())
        if kind is None:
            continue
        name, to_name = el.get("name"), el.get("toName")
        if not name or not to_name:
            raise RunnerError("invalid_label_config", f"<{el.tag}> needs name and toName attributes")
        labels = tuple(v for child in el.iter() if child.tag.lower() in _LABEL_TAGS
                       for v in [child.get("value") or child.get("alias")] if v)
        controls.append(Control(kind, name, to_name.split(",")[0], values.get(to_name.split(",")[0], "image"),
                                labels))
    return controls


def pick_control(controls: list[Control], suggest: Suggest) -> Control:
    """The first control of the kind the solver fills.

    Raises:
        RunnerError: ``invalid_label_config`` when the config has none.
    """
    want = CONTROL_OF[suggest.kind]
    for control in controls:
        if control.kind == want:
            return control
    tag = "RectangleLabels" if want == "rectanglelabels" else "Choices"
    raise RunnerError("invalid_label_config", f"the labelling config has no <{tag}>, which this solver"
                      f" ({suggest.kind}) fills")


def _fold_case(output: Any, suggest: Suggest, labels: tuple[str, ...]) -> tuple[Any, Suggest]:
    """``output`` with each class that names a label case-insensitively spelt as the label is."""
    spelt = {label.lower(): label for label in labels}

    def label(name: object) -> object:
        return spelt.get(str(name).lower(), name) if isinstance(name, (str, int)) else name

    if suggest.fixed_class is not None:
        suggest = dataclasses.replace(suggest, fixed_class=str(label(suggest.fixed_class)))
    path = suggest.field.split(".")
    holder = output
    for key in path[:-1]:
        holder = holder.get(key) if isinstance(holder, Mapping) else None
    if not isinstance(holder, dict):
        return output, suggest  # to_suggestions says what is missing
    value = holder.get(path[-1])
    if isinstance(value, Mapping):
        value = {label(k): v for k, v in value.items()}
    elif isinstance(value, list):
        value = [{**e, suggest.class_field: label(e[suggest.class_field])}
                 if isinstance(e, Mapping) and suggest.class_field in e else e for e in value]
    holder[path[-1]] = value
    return output, suggest


def to_results(output: Any, suggest: Suggest, control: Control, width: int, height: int) -> list[dict[str, Any]]:
    """One solver output as Label Studio results for ``control``: boxes in percent of the image.

    Raises:
        SuggestOutputError: the output does not hold what the solver's ``suggest`` declares.
    """
    from cvflow.annotate.outputs import to_suggestions

    output, suggest = _fold_case(output, suggest, control.labels)
    mapped: Mapped = to_suggestions(output, suggest, control.labels, width, height)
    common = {"from_name": control.from_name, "to_name": control.to_name, "type": control.kind}
    if control.kind == "choices":
        if not mapped.suggestions:
            return []
        best = mapped.suggestions[0]  # a single-choice field takes the best class
        return [{**common, "value": {"choices": [best["class"]]}, "score": best["score"]}]
    results = []
    for s in mapped.suggestions:
        x, y, w, h = s["bbox"]
        results.append({**common, "original_width": width, "original_height": height, "image_rotation": 0,
                        "value": {"x": 100 * x / width, "y": 100 * y / height, "width": 100 * w / width,
                                  "height": 100 * h / height, "rotation": 0, "rectanglelabels": [s["class"]]},
                        "score": s["score"]})
    return results


class LabelStudioBackend:
    """The protocol's routes for one runner. ``/setup`` remembers Label Studio's token and config."""

    def __init__(self, runner: Runner, settings: LabelStudioSettings) -> None:
        self.runner = runner
        self.settings = settings
        self.model_version = f"{runner.info.name}@{runner.info.version}"
        self._token = ""
        self._config = ""
        self._lock = threading.Lock()
        self.solver_name, self.suggest = self._declaration()

    def _declaration(self) -> tuple[str, Suggest]:
        from cvflow.manifest.suggest import parse_suggest
        from cvflow.runner.loader import LoadError

        data = loads_toml((self.runner.info.package_dir / "cvflow.toml").read_text(encoding="utf-8"))
        for raw in data.get("solvers") or []:
            if raw.get("name") in self.runner.names and raw.get("suggest") is not None:
                suggest, problems = parse_suggest(raw["suggest"], f"solvers.{raw['name']}.suggest")
                if suggest is not None and not problems:
                    return str(raw["name"]), suggest
        raise LoadError(f"{self.runner.info.name}: no solver served here declares `suggest`, so none can answer"
                         " Label Studio (docs/solvers.md)")

    # -- routes -----------------------------------------------------------------------------

    def handle(self, method: str, route: str, body: bytes) -> bytes:
        if route == "health":
            return _dumps({"status": "UP" if self.runner.ready.is_set() else "LOADING", "model_class": "cvflow",
                           "model_version": self.model_version})
        request = _object(body)
        if route == "setup":
            return _dumps(self.setup(request))
        if route == "predict":
            return _dumps(self.predict(request))
        # webhook / train: acknowledged; fine-tuning is the hub's own loop (docs/label-studio.md)
        return _dumps({"status": "ok", "job_id": None, "action": request.get("action"),
                       "note": "acknowledged; this runner does not train"})

    def setup(self, request: Mapping[str, Any]) -> dict[str, Any]:
        config = request.get("schema")
        if isinstance(config, str) and config:
            pick_control(parse_config(config), self.suggest)
            with self._lock:
                self._config = config
        token = request.get("access_token")
        if isinstance(token, str):
            with self._lock:
                self._token = token
        return {"model_version": self.model_version}

    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        tasks = request.get("tasks")
        if not isinstance(tasks, list):
            raise field_error("invalid_field", "tasks", 'a /predict body is {"tasks": [...], "label_config": "..."}')
        config = request.get("label_config") or self._config
        if not isinstance(config, str) or not config:
            raise field_error("missing_field", "label_config", "no labelling config: send label_config, or /setup")
        control = pick_control(parse_config(config), self.suggest)
        solver = self.runner.solver(self.solver_name)
        return {"results": [self._task(solver, control, task, i) for i, task in enumerate(tasks)],
                "model_version": self.model_version}

    def _task(self, solver: LoadedSolver, control: Control, task: Any, index: int) -> dict[str, Any]:
        data = task.get("data") if isinstance(task, Mapping) else None
        where = f"tasks[{index}].data.{control.value}"
        url = data.get(control.value) if isinstance(data, Mapping) else None
        if not isinstance(url, str) or not url:
            raise field_error("missing_field", where, f"{where}: the task has no image URL")
        with solver.worker.arriving() as arrival:
            kwargs = parse_inputs(solver.schema, "application/octet-stream", self.fetch(url, where), "",
                                  self.runner.settings.images)
            output = json.loads(encode_result(self.runner.call(solver, kwargs, arrival), solver.name))
        image = next(v for v in kwargs.values() if isinstance(v, Image))
        from cvflow.annotate.outputs import SuggestOutputError

        try:
            result = to_results(output, self.suggest, control, image.width, image.height)
        except SuggestOutputError as exc:
            raise RunnerError("invalid_result", exc.message) from None
        return {"result": result, "score": max((r["score"] for r in result), default=0.0),
                "model_version": self.model_version}

    def fetch(self, url: str, where: str) -> bytes:
        """A task's image: ``/data/...`` resolved against Label Studio's URL; fetched under the
        runner's URL rules, with Label Studio's token only for Label Studio's own URLs.

        Raises:
            RunnerError: ``url_not_allowed``, ``url_fetch_failed``, ``image_too_large``.
        """
        home = (self.settings.url,)
        if url.startswith("/"):
            url = urllib.parse.urljoin(self.settings.url.rstrip("/") + "/", url.lstrip("/"))
        policy: ImagePolicy = self.runner.settings.images
        headers = {"Accept": "*/*"}  # Label Studio answers 406 to image/*
        token = self.settings.api_key or self._token
        if token and url_allowed(url, home):
            headers["Authorization"] = f"Token {token}"
        return fetch(url, where, policy, allowed=policy.allow_urls + home, headers=headers, auth_under=home,
                     refusal=f"{url[:200]} lies neither under Label Studio's URL ({self.settings.url})"
                             " nor under an --allow-url prefix")


def _object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    data = parse_json(body)
    if not isinstance(data, dict):
        raise RunnerError("invalid_json", "the body is not a JSON object")
    return data


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()

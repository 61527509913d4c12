"""The whole fine-tune of one base model version on one dataset version (``cvflow finetune``).

The steps, each cheap check before the next expensive one, so that a wrong request fails in
seconds rather than after a torch install::

    resolve the base (a model version) and the dataset (a dataset version) on the hub
    pick the trainer (by name, else the base's first for the dataset's task) -> no_trainer
    resolve the hyperparameters against its bounds                          -> invalid_hyperparameters
    pull the dataset and prepare it for the trainer                         -> class_mismatch, dataset_too_small
    install the base (its venv, as `cvflow install` builds it)
    run the trainer in that venv (cvflow.training.runner)                   -> trainer_failed
    build the new package: the base's files, the new weights, a manifest with [lineage]
    check it like `cvflow validate`, publish it (the next version again if a publish races)

The new package folder holds hard links to the base's cached files wherever the trainer did
not write a new one, so a fine-tune of a large package costs no copy. Both ``cvflow finetune``
and ``cvflow worker --train`` call :func:`finetune`; the worker's ``on_event`` turns the
trainer's events into heartbeats and checkpoint uploads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import tomli_w

from cvflow.errors import DatasetError, HubConflictError, HubNotFoundError, ManifestError, Problem, TrainingError
from cvflow.manifest import MANIFEST_FILENAME, Lineage, Manifest, Trainer
from cvflow.names import PackageName
from cvflow.publish import check_package_dir, package_url, publish_dir
from cvflow.pull import choose_version, parse_spec, pull_version
from cvflow.versions import Version

if TYPE_CHECKING:
    from cvflow.api import HubClient
    from cvflow.cache import Cache
    from cvflow.config import Config
    from cvflow.progress import Transfer

__all__ = ["FinetuneResult", "finetune", "next_version", "pick_trainer", "web_url"]

Event = dict[str, Any]
OnEvent = Callable[[Event], None]

#: Publishes that found their version taken (another worker won the race) before giving up.
MAX_PUBLISH_RACES = 8
#: Files of a cached snapshot that are the cache's own bookkeeping, never the package's.
_CACHE_FILES = (".cvflow-version.json", ".cvflow-stamps.json")


@dataclass
class FinetuneResult:
    """What a fine-tune made: the new version, its metrics against the base's, where it went."""

    name: str  #: the target package, ``namespace/name``
    version: str  #: the version built (and published, unless ``publish=False``)
    lineage: Lineage
    metric: str  #: the trainer's deciding metric (higher is better)
    folder: Path | None  #: the package folder, when it was kept (``out_dir``)
    published: bool = False
    url: str | None = None  #: the version's API URL on the hub, once published
    web_url: str | None = None  #: its page on the hub's website, once published
    log_tail: str = ""
    events: list[Event] = field(default_factory=list, repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.lineage.metrics)

    @property
    def base_metrics(self) -> dict[str, float]:
        return dict(self.lineage.base_metrics)

    @property
    def value(self) -> float | None:
        """The fine-tune's deciding metric."""
        return self.lineage.metrics.get(self.metric)

    @property
    def base_value(self) -> float | None:
        """The base's deciding metric, on the same validation split."""
        return self.lineage.base_metrics.get(self.metric)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "lineage": self.lineage.to_dict(), "metric": self.metric,
                "folder": None if self.folder is None else str(self.folder), "published": self.published,
                "url": self.url, "web_url": self.web_url}


def finetune(
    client: HubClient,
    cache: Cache,
    config: Config,
    base_spec: str,
    data_spec: str,
    target: str,
    *,
    trainer: str | None = None,
    hyperparameters: Mapping[str, object] | None = None,
    nproc_per_node: int = 1,
    publish: bool = True,
    out_dir: Path | None = None,
    work_dir: Path | None = None,
    on_event: OnEvent | None = None,
    progress: Transfer | None = None,
    private: bool | None = None,
    verbose: bool = False,
) -> FinetuneResult:
    """Fine-tune ``base_spec`` (``ns/name[@RANGE]``, a model) on ``data_spec`` (a dataset) into ``target``.

    ``work_dir`` holds the run (prepared data, the trainer's events and log, checkpoints): a
    checkpoint already at ``work_dir/checkpoint/checkpoint.safetensors`` is resumed from. Without
    one, a temporary folder under CVFLOW_HOME is used and removed at the end. ``out_dir`` keeps
    the new package folder (it must not exist, or be empty); ``publish=False`` needs it.
    ``on_event`` gets every trainer event (docs/training.md) and ``{"event": "stage", "stage",
    "message"}`` as the steps begin; ``progress`` shows the downloads.

    Raises:
        TrainingError: no_trainer, invalid_hyperparameters, class_mismatch, dataset_too_small,
            trainer_failed (the code says which).
        DatasetError: the data is not a dataset package.
        ValidationError, ManifestError: a bad name, or a new package that fails the checks.
        HubError: from the hub (not found, no permission to publish, invalid_lineage, ...).
        InstallError: the base's venv could not be built.
    """
    emit = on_event or (lambda event: None)
    target_name = str(PackageName.parse(target))
    if not publish and out_dir is None:
        raise ValueError("finetune(publish=False) needs out_dir: the package folder is what it leaves")
    if out_dir is not None:
        _check_out_dir(out_dir)
    given = dict(hyperparameters or {})

    base_name, base_version, base_doc = _resolve(client, base_spec)
    if (base_doc.get("kind") or "model") != "model":
        raise TrainingError(f"{base_name}@{base_version} is a dataset, not a model: the base must be a model"
                            " version that declares [[trainers]] (the dataset goes in --data)", code="no_trainer")
    data_name, data_version, data_doc = _resolve(client, data_spec)
    if (data_doc.get("kind") or "model") != "dataset":
        message = f"{data_name}@{data_version} is a model, not a dataset: --data takes a dataset package"
        raise DatasetError(message, [Problem("not_a_dataset", "", message)])
    task = str((data_doc.get("dataset") or {}).get("task") or "")
    base_manifest = _manifest_of(base_doc, f"{base_name}@{base_version}")
    chosen = pick_trainer(base_manifest, task, trainer, base=f"{base_name}@{base_version}")
    try:
        resolved = chosen.resolve(given)
    except ValueError as exc:
        raise TrainingError(f"{chosen.name}: {exc}", code="invalid_hyperparameters") from exc

    from cvflow.install import install  # the resolver and venv builder: only when a run really starts
    from cvflow.training.data import prepare
    from cvflow.training.runner import run_trainer

    own_work = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="finetune-", dir=_scratch(config))) if work_dir is None else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        emit({"event": "stage", "stage": "pull", "message": f"pulling {data_name}@{data_version}"})
        data_dir = pull_version(client, cache, data_name, data_version, progress=progress)
        emit({"event": "stage", "stage": "prepare", "message": f"preparing {data_name}@{data_version} for"
              f" {chosen.name} ({chosen.layout})"})
        prepared = prepare(Path(data_dir), chosen, work)
        emit({"event": "stage", "stage": "install", "message": f"installing {base_name}@{base_version}"})
        # The lock goes into the run's folder: a fine-tune never writes cvflow.lock into the caller's cwd.
        report = install(client, cache, config, f"{base_name}@{base_version}", lock_path=work / "cvflow.lock",
                         progress=progress)
        record = next(p for p in report.packages if p.name == base_name)
        snapshot = Path(record.snapshot)
        emit({"event": "stage", "stage": "train", "message": f"training {base_name}@{base_version} with"
              f" {chosen.name} on {data_name}@{data_version}", "hyperparameters": dict(resolved)})
        events: list[Event] = []

        def relay(event: Event) -> None:
            if event.get("event") != "progress":  # up to 5 a second: the result keeps the rest
                events.append(event)
            emit(event)

        outcome = run_trainer(record.python, snapshot, chosen, prepared, work, dict(resolved),
                              nproc_per_node=nproc_per_node, on_event=relay, verbose=verbose)
        missing = [w for w in chosen.weights if w not in outcome.outputs]
        if missing:
            raise TrainingError(f"the trainer {chosen.name} did not write {', '.join(missing)} (it declares them"
                                f" in [[trainers]] weights)\n{outcome.log_tail}".rstrip(), code="trainer_failed")
        lineage = Lineage(
            base=f"{base_name}@{base_version}", dataset=f"{data_name}@{data_version}", trainer=chosen.name,
            hyperparameters=dict(resolved), metrics={k: float(v) for k, v in outcome.metrics.items()},
            base_metrics={k: float(v) for k, v in outcome.base_metrics.items()}, device=str(outcome.device),
            seconds=round(float(outcome.seconds), 3))
        version = next_version(client, target_name, base_name=base_name, base_version=base_version)
        folder = out_dir if out_dir is not None else work / "package"
        if out_dir is None:
            shutil.rmtree(folder, ignore_errors=True)  # an earlier run's: never write through its links
        emit({"event": "stage", "stage": "build", "message": f"building {target_name}@{version} in {folder}"})
        build_package(snapshot, base_doc, folder, target_name, version, lineage, outcome.outputs)
        result = FinetuneResult(name=target_name, version=str(version), lineage=lineage, metric=chosen.metric,
                                folder=out_dir, log_tail=str(outcome.log_tail or ""), events=events)
        if publish:
            _publish(client, config, folder, result, version, private=private, progress=progress, emit=emit)
        return result
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def pick_trainer(manifest: Manifest, task: str, name: str | None, *, base: str) -> Trainer:
    """The trainer to run: ``name`` (which must train ``task``), else the first one for ``task``.

    Raises:
        TrainingError: ``no_trainer``, saying what the base declares.
    """
    declared = ", ".join(f"{t.name} ({t.task})" for t in manifest.trainers)
    if not manifest.trainers:
        raise TrainingError(f"{base} declares no trainer ([[trainers]] in its cvflow.toml): it cannot be fine-tuned",
                            code="no_trainer")
    if name is not None:
        chosen = manifest.trainer(name)
        if chosen is None:
            raise TrainingError(f"{base} has no trainer {name!r} (it has: {declared})", code="no_trainer")
        if chosen.task != task:
            raise TrainingError(f"the trainer {name!r} of {base} trains {chosen.task}, but the dataset is"
                                f" {task or 'of no task'}", code="no_trainer")
        return chosen
    for candidate in manifest.trainers:
        if candidate.task == task:
            return candidate
    raise TrainingError(f"{base} has no trainer for {task or 'this'} datasets (it has: {declared})", code="no_trainer")


def next_version(client: HubClient, target: str, *, base_name: str | None = None,
                 base_version: str | None = None, after: Version | None = None) -> Version:
    """The version a fine-tune into ``target`` gets: the next minor after the newest version the
    hub has of it (yanked versions and pre-releases count: a version number is never reused),
    ``1.0.0`` for a new package. When ``target`` is the base's own package the base counts
    too, so the fine-tune is never below it. ``after``: a version just found taken.
    """
    newest: Version | None = after
    try:
        entries = client.package(target).get("versions") or []
    except HubNotFoundError:
        entries = []
    for entry in entries:
        try:
            v = Version.parse(str(entry.get("version")))
        except ValueError:
            continue
        newest = v if newest is None or v > newest else newest
    if base_name == target and base_version is not None:
        base = Version.parse(base_version)
        newest = base if newest is None or base > newest else newest
    if newest is None:
        return Version(1, 0, 0)
    return Version(newest.major, newest.minor + 1, 0)


def web_url(hub: str, name: str, version: str) -> str:
    """A version's page on the hub's website."""
    return f"{hub.rstrip('/')}/{name}/v/{quote(version)}"


def build_package(snapshot: Path, base_doc: Mapping[str, Any], folder: Path, target: str, version: Version,
                  lineage: Lineage, outputs: Mapping[str, Path]) -> None:
    """Write the new package into ``folder``: the base's files (hard links into the cache where
    possible), each weight the trainer wrote replaced by its new file, and the new manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    replaced = set(outputs)
    for entry in base_doc.get("files") or []:
        rel = str(entry["path"])
        if rel in replaced or rel == MANIFEST_FILENAME or rel in _CACHE_FILES:
            continue
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(snapshot / rel, dest)
    for rel, source in outputs.items():
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        shutil.copyfile(source, dest)
    text = (snapshot / MANIFEST_FILENAME).read_bytes().decode("utf-8") if (snapshot / MANIFEST_FILENAME).is_file() \
        else _manifest_of(base_doc, lineage.base).to_toml()
    write_manifest(folder, new_manifest_text(text, target, version, lineage, replaced))


def new_manifest_text(base_text: str, target: str, version: Version, lineage: Lineage,
                      replaced: set[str]) -> str:
    """The base's ``cvflow.toml`` as the fine-tune's: renamed, the new version, ``[metrics]`` the
    validation metrics, ``[lineage]`` added, and each weight the trainer rewrote a file of the
    package (its ``url``, ``sha256`` and ``size`` described the base's file, not this one)."""
    data = tomllib.loads(base_text.removeprefix("\ufeff"))
    package = dict(data.get("package") or {})
    package["name"] = target
    package["version"] = str(version)
    data["package"] = package
    weights = []
    for weight in data.get("weights") or []:
        if isinstance(weight, dict) and weight.get("path") in replaced:
            weight = {k: v for k, v in weight.items() if k not in ("url", "sha256", "size")}
        weights.append(weight)
    if weights:
        data["weights"] = weights
    data["metrics"] = dict(lineage.metrics)
    if not data["metrics"]:
        del data["metrics"]
    data["lineage"] = lineage.to_dict()
    # [package] first, [lineage] last: the order a person reads them in.
    ordered = {"package": data.pop("package"), **{k: v for k, v in data.items() if k != "lineage"},
               "lineage": data["lineage"]}
    return tomli_w.dumps(ordered)


def write_manifest(folder: Path, text: str) -> None:
    path = folder / MANIFEST_FILENAME
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # never write through a hard link into the cache
    path.write_text(text, encoding="utf-8")


# -- steps


def _resolve(client: HubClient, spec: str) -> tuple[str, str, dict[str, Any]]:
    """``(name, version, version document)`` of what ``spec`` picks on the hub (yanked only when pinned)."""
    name, rng = parse_spec(spec)
    entries = list(client.package(name).get("versions") or [])
    version, _ = choose_version(name, rng, entries)
    return name, version, client.version(name, version)


def _manifest_of(doc: Mapping[str, Any], what: str) -> Manifest:
    try:
        return Manifest.from_dict(dict(doc.get("manifest") or {}))
    except ManifestError as exc:
        raise ManifestError(f"{what}: its manifest cannot be read by this client ({exc.message})",
                            exc.problems) from exc


def _publish(client: HubClient, config: Config, folder: Path, result: FinetuneResult, version: Version, *,
             private: bool | None, progress: Transfer | None, emit: OnEvent) -> None:
    check_package_dir(folder)  # the client's checks before any byte is sent (publish_dir repeats them)
    manifest_text = (folder / MANIFEST_FILENAME).read_text(encoding="utf-8")
    for _ in range(MAX_PUBLISH_RACES):
        emit({"event": "stage", "stage": "publish", "message": f"publishing {result.name}@{version}"})
        try:
            done = publish_dir(client, folder, state_dir=config.state_dir, private=private, progress=progress)
        except HubConflictError as exc:
            if exc.code != "version_exists":
                raise
            version = next_version(client, result.name, after=version)  # another worker won this number
            manifest_text = _with_version(manifest_text, version)
            write_manifest(folder, manifest_text)
            continue
        result.version = str(done["version"])
        result.published = True
        result.url = package_url(client.base_url, result.name, result.version)
        result.web_url = web_url(client.base_url, result.name, result.version)
        return
    raise HubConflictError(f"{result.name}: {MAX_PUBLISH_RACES} versions in a row were taken while publishing;"
                           " try again", code="version_exists", status=409)


def _with_version(text: str, version: Version) -> str:
    data = tomllib.loads(text)
    data["package"]["version"] = str(version)
    return tomli_w.dumps(data)


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that holds something: a fine-tune never mixes its files with others'."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(errno.EEXIST, "exists and is not an empty folder; give --out a new folder",
                              str(out_dir))


def _scratch(config: Config) -> Path:
    path = config.home / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        shutil.copyfile(source, dest)

"""What a fine-tune buys on the demo packages' shifted data: the base model against fine-tunes on 50, 100, 200 labels.

Two tables, one per demo package, each with a row for the shipped model (the base) and one per
fine-tune, every row measured on the same held-out images that no run trains or validates on:

* **Classification, demo/digits-lenet.** Shifted digits from ``digits_lenet/shifted.py`` (pen on
  paper, tilted, off centre): a pool of training images from the digits the base model was trained
  on (seed 1), of which the fine-tunes take the first 50, 100, 200 (nested: the 100 include the 50);
  a validation split of 50 from the held-out digits (seed 2) for the trainer; and 500 more of the
  held-out digits (seed 3) for the table. Metric: top-1 accuracy on the 500.
* **Detection, demo/digits-detector.** Canvases of the demo project's ``shifted`` style from
  ``digits_detector/data.py``: a training pool from the training digits (seed 100, nested as
  above), 40 validation canvases and 100 held-out ones, both from the held-out digits (seeds 2
  and 3). Metric: mAP@0.5 on the 100 held-out canvases, by pycocotools' COCOeval (one IoU
  threshold, 0.5, every class), from the solver's boxes at its lowest threshold (0.01).

Each fine-tune is what ``cvflow finetune`` and ``cvflow worker --train`` run: the labelled images
as a dataset package (``cvflow.datasets.write_package``), ``cvflow.training.data.prepare``, then
``cvflow.training.runner.run_trainer`` with the trainer's default hyperparameters in a venv with
the packages' requirements (torch CPU), built with ``cvflow.install.venv.build_venv``. The models
are scored by the packages' own solvers (``[[solvers]]`` classes, given the base or the new weight
file) in that venv, in a child process that writes its answers as JSON.

"Accepted unchanged" is the share of suggestions a simulated annotator keeps as they are:
for the classifier, it accepts the top-1 digit only when it is the true one, so the share is the
top-1 accuracy on the held-out set; for the detector, it is ``bench/annotate_loop.py``'s annotator
(a box matching a true box of its class at IoU >= 0.5 is accepted unchanged, any other is fixed or
rejected), over the boxes the solver suggests at its default threshold. Wall seconds are
``run_trainer``'s (the trainer's own clock, base evaluation and checkpoints included); CPU seconds
are the trainer process's user + system time (``getrusage(RUSAGE_CHILDREN)`` before and after).

    .venv/bin/python bench/finetune.py                                  # about 4 minutes on 2 CPUs (+1 for the venv)
    .venv/bin/python bench/finetune.py --home ~/.cache/cvflow-bench-finetune   # keep the torch venv
    .venv/bin/python bench/finetune.py --only classification --sizes 50,200 --epochs 10
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Quiet, report, verdict, workdir  # noqa: E402
from annotate_loop import match  # noqa: E402

from cvflow.datasets import Box, Dataset, Item, write_package  # noqa: E402
from cvflow.install.venv import build_venv, venv_python  # noqa: E402
from cvflow.manifest import parse_manifest  # noqa: E402
from cvflow.manifest.training import Trainer  # noqa: E402
from cvflow.training.data import prepare  # noqa: E402
from cvflow.training.runner import run_trainer  # noqa: E402

EXAMPLES = ROOT / "examples"
LENET = EXAMPLES / "digits-lenet"
DETECTOR = EXAMPLES / "digits-detector"
DIGITS = [str(d) for d in range(10)]
WEIGHT = "weights/model.safetensors"
#: The examples' requirements, exactly (each demo package's cvflow.toml lists these).
REQUIREMENTS = ["torch==2.13.0", "numpy>=1.24", "pillow>=10", "safetensors>=0.4"]
READY = ".cvflow-bench-ready"
IOU = 0.5
CLASSIFICATION_VAL, CLASSIFICATION_HELD_OUT = 50, 500
DETECTION_VAL, DETECTION_HELD_OUT = 40, 100
FIRST_GAIN_POINTS, FIRST_GAIN_MAP, LENET_200_SECONDS = 20.0, 0.2, 60.0

#: Run in the torch venv: the package's solver on the held-out images, answers as JSON.
SCORE = '''
import inspect, json, sys
from pathlib import Path
from PIL import Image as PILImage
from cvflow.solver import Context, Image

job = json.loads(Path(sys.argv[1]).read_text())
package = Path(job["package"])
sys.path.insert(0, str(package))
module, _, name = job["class"].partition(":")
cls = getattr(__import__(module, fromlist=[name]), name)
context = Context(package=job["name"], version=job["version"], solver=job["solver"], package_dir=package,
                  device="cpu", weights={"weights/model.safetensors": Path(job["weights"])})
model = cls(context)
images = [Image(PILImage.open(p).convert("RGB")) for p in job["images"]]
answers = []
for k in range(0, len(images), 16):
    answers += model.infer_batch([{"image": im, **job.get("call", {})} for im in images[k:k + 16]])
defaults = {k: p.default for k, p in inspect.signature(cls.infer).parameters.items()
            if p.default is not inspect.Parameter.empty}
Path(job["out"]).write_text(json.dumps({"answers": answers, "defaults": defaults}))
'''


@dataclass
class Row:
    label: str
    metric: float
    accepted: int
    suggestions: int
    val_metric: float | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    end_to_end_s: float | None = None
    weights: Path | None = None


def module(path: Path, name: str) -> ModuleType:
    """A package's module loaded from its file: the data generators need numpy and Pillow, not torch."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def trainer_of(package: Path) -> Trainer:
    [trainer] = parse_manifest((package / "cvflow.toml").read_text()).trainers
    return trainer


def torch_python(home: Path) -> Path:
    """The venv with the examples' requirements under ``home``, built on first use and then kept."""
    venv = home / "venvs" / "torch"
    marker = "\n".join(REQUIREMENTS) + "\n"
    ready = venv / READY
    if not (venv_python(venv).is_file() and ready.is_file() and ready.read_text() == marker):
        print(f"building the torch venv in {venv} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        build_venv(venv, [], REQUIREMENTS, offline=False, label="bench torch venv")
        ready.write_text(marker)
        print(f"... built in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return venv_python(venv)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def solve(python: Path, package: Path, weights: Path, images: Sequence[Path], tmp: Path,
          call: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The package's solver (with ``weights``) on ``images``, in the torch venv: (answers, infer's defaults)."""
    job, out = tmp / "score-job.json", tmp / "score-out.json"
    manifest = parse_manifest((package / "cvflow.toml").read_text())
    solver = manifest.solvers[0]  # each demo package has one: classify, detect
    job.write_text(json.dumps({"package": str(package), "class": solver.class_path, "name": str(manifest.name),
                               "version": str(manifest.version), "solver": solver.name, "weights": str(weights), "images": [str(p) for p in images],
                               "out": str(out), "call": call or {}}))
    script = tmp / "score.py"
    script.write_text(SCORE)
    done = subprocess.run([str(python), str(script), str(job)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"scoring {weights} failed:\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    return list(result["answers"]), dict(result["defaults"])


def finetune(python: Path, package: Path, dataset: Path, work: Path,
             hyperparameters: dict[str, object], label: str) -> Row:
    """One fine-tune as ``cvflow finetune`` runs it: a row without its held-out scores yet, and the new weights."""
    trainer = trainer_of(package)
    start = time.perf_counter()
    data = prepare(dataset, trainer, work)
    cpu = children_cpu()
    outcome = run_trainer(python, package, trainer, data, work, hyperparameters)
    cpu = children_cpu() - cpu
    row = Row(label, 0.0, 0, 0, val_metric=outcome.metrics[trainer.metric], wall_s=outcome.seconds, cpu_s=cpu,
              end_to_end_s=time.perf_counter() - start)
    row.weights = outcome.outputs[WEIGHT]
    return row


def gain(row: Row, base: Row, detection: bool) -> str:
    if row is base:
        return "-"
    delta = row.metric - base.metric
    return f"{delta:+.3f}" if detection else f"{delta * 100:+.1f} pts"


def table(name: str, title: str, rows: list[Row], detection: bool, notes: list[str]) -> None:
    metric = "mAP@0.5 (held-out)" if detection else "accuracy (held-out)"
    base = rows[0]
    out = []
    for row in rows:
        share = f"{row.accepted / row.suggestions:.1%} ({row.accepted}/{row.suggestions})" if row.suggestions else "-"
        out.append([row.label, f"{row.metric:.3f}", gain(row, base, detection), share,
                    "-" if row.val_metric is None else f"{row.val_metric:.3f}",
                    "-" if row.wall_s is None else f"{row.wall_s:.1f}",
                    "-" if row.cpu_s is None else f"{row.cpu_s:.1f}",
                    "-" if row.end_to_end_s is None else f"{row.end_to_end_s:.1f}"])
    report(name, title, ["model", metric, "gain over base", "accepted unchanged", "val metric (trainer)",
                         "fine-tune wall s", "fine-tune CPU s", "end to end s"], out, notes)


def hyper_text(args: argparse.Namespace, package: Path) -> str:
    defaults = trainer_of(package).resolve({})
    if args.epochs:
        rest = ", ".join(f"{k} {v}" for k, v in defaults.items() if k != "epochs")
        return f"with --epochs {args.epochs} (the defaults otherwise: {rest})"
    return "with its default hyperparameters (" + ", ".join(f"{k} {v}" for k, v in defaults.items()) + ")"


def first_target(rows: list[Row], detection: bool) -> str:
    base, first = rows[0], next((r for r in rows if r.label == "50 labels"), None)
    what = (f"mAP@0.5 by >= {FIRST_GAIN_MAP}" if detection else f"accuracy by >= {FIRST_GAIN_POINTS:.0f} points")
    if first is None:
        return f"Target: first fine-tune (50) raises {what}: not measured (50 not in --sizes)."
    delta = first.metric - base.metric
    ok = delta >= FIRST_GAIN_MAP if detection else delta * 100 >= FIRST_GAIN_POINTS
    shown = f"{delta:+.3f}" if detection else f"{delta * 100:+.1f} points"
    return f"**Target: first fine-tune (50) raises {what}: {verdict(ok)}** ({shown})."


# --- classification


def sweep(args: argparse.Namespace, python: Path, tmp: Path, package: Path, task: str, name: str,
          train: list[Item], val: list[Item], score: Callable[[Path, str], Row], metric: str) -> list[Row]:
    """The base row, then a fine-tune on the first N training items for each size, each scored."""
    rows = [score(package / WEIGHT, "base (shipped 1.0.0)")]
    print(f"{task} base: {metric} {rows[0].metric:.3f}", file=sys.stderr, flush=True)
    hyper = {"epochs": args.epochs} if args.epochs else {}
    for size in args.sizes:
        dataset = tmp / f"{package.name}-data-{size}"
        write_package(Dataset(task, DIGITS, {"train": train[:size], "val": val}), dataset,
                      name=name, version=f"1.0.{size}")
        row = finetune(python, package, dataset, tmp / f"{package.name}-work-{size}", hyper, f"{size} labels")
        assert row.weights is not None
        scored = score(row.weights, row.label)
        row.metric, row.accepted, row.suggestions = scored.metric, scored.accepted, scored.suggestions
        rows.append(row)
        print(f"{task} {size}: {metric} {row.metric:.3f}, {row.wall_s:.1f} s ({row.cpu_s:.1f} s CPU)",
              file=sys.stderr, flush=True)
    return rows


def classification(args: argparse.Namespace, python: Path, tmp: Path, quiet: Quiet) -> None:
    shifted = module(LENET / "digits_lenet" / "shifted.py", "_bench_lenet_shifted")
    split = shifted.digit_split()
    pictures = tmp / "lenet-pictures"
    pictures.mkdir()

    def draw(kind: str, digits: str, seed: int, count: int) -> list[Item]:
        items = []
        for i, (image, label) in enumerate(shifted.shifted(*split[digits], seed=seed, count=count)):
            path = pictures / f"{kind}-{i:04d}.png"
            path.write_bytes(shifted.png(image))
            items.append(Item(path.name, path, shifted.SIZE, shifted.SIZE, label=int(label)))
        return items

    train = draw("train", "train", 1, max(args.sizes))
    val = draw("val", "test", 2, CLASSIFICATION_VAL)
    held = draw("test", "test", 3, CLASSIFICATION_HELD_OUT)
    truth = [int(i.label) for i in held if i.label is not None]

    def score(weights: Path, label: str) -> Row:
        answers, _ = solve(python, LENET, weights, [i.source for i in held], tmp, {"top_k": 1})
        right = sum(int(a["digit"]) == t for a, t in zip(answers, truth, strict=True))
        return Row(label, right / len(truth), right, len(truth))

    rows = sweep(args, python, tmp, LENET, "classification", "bench/digits-shifted", train, val, score, "accuracy")

    last = next((r for r in rows if r.label == "200 labels"), None)
    speed = (f"**Target: 200-label digits-lenet fine-tune <= {LENET_200_SECONDS:.0f} s: "
             f"{verdict(last.wall_s is not None and last.wall_s <= LENET_200_SECONDS)}** ({last.wall_s:.1f} s wall)."
             if last is not None and last.wall_s is not None else
             "Target: 200-label digits-lenet fine-tune <= 60 s: not measured (200 not in --sizes).")
    epochs = hyper_text(args, LENET)
    notes = [first_target(rows, False), speed,
             f"demo/digits-lenet's `finetune` {epochs}, train sets nested (the first N"
             f" of {max(args.sizes)} shifted digits of the training digits, seed 1), {CLASSIFICATION_VAL} validation"
             f" images (held-out digits, seed 2) for the trainer's own metric, and {CLASSIFICATION_HELD_OUT} held-out"
             " images (held-out digits, seed 3) that no run sees, for the table.",
             "Accepted unchanged: an annotator who accepts the top-1 digit only when it is the truth, so it is the"
             " top-1 accuracy on the held-out set. Wall s: run_trainer's outcome (the trainer process's clock from"
             " its start, torch's import, base evaluation and checkpoints included); CPU s: that process's user +"
             " system time; end to end: prepare + run_trainer as this process saw them.", quiet.note()]
    table("finetune_classification", "Fine-tuning demo/digits-lenet on shifted digits", rows, False, notes)


# --- detection


def detection(args: argparse.Namespace, python: Path, tmp: Path, quiet: Quiet) -> None:
    data = module(DETECTOR / "digits_detector" / "data.py", "_bench_detector_data")
    pictures = tmp / "detector-pictures"
    pictures.mkdir()

    def draw(kind: str, seed: int, count: int, digits: str) -> tuple[list[Item], list[Any]]:
        samples = data.canvases(data.SHIFTED, seed, count, digits=digits)
        items = []
        for i, sample in enumerate(samples):
            path = pictures / f"{kind}-{i:04d}.png"
            path.write_bytes(sample.png())
            height, width = sample.image.shape
            items.append(Item(path.name, path, width, height,
                              boxes=[Box(b.label, b.x, b.y, b.w, b.h) for b in sample.boxes]))
        return items, samples

    train, _ = draw("train", 100, max(args.sizes), "train")
    val, _ = draw("val", 2, DETECTION_VAL, "test")
    held, held_samples = draw("test", 3, DETECTION_HELD_OUT, "test")
    truth_doc = data.coco(held_samples, [i.file_name for i in held])
    truth = [[(DIGITS[b.label], b.xywh()) for b in s.boxes] for s in held_samples]

    def score(weights: Path, label: str) -> Row:
        answers, defaults = solve(python, DETECTOR, weights, [i.source for i in held], tmp, {"threshold": 0.01})
        detections = [{"image_id": n + 1, "category_id": DIGITS.index(box["class"]) + 1, "bbox": box["bbox"],
                       "score": box["score"]} for n, answer in enumerate(answers) for box in answer["boxes"]]
        threshold = float(defaults["threshold"])
        accepted = suggestions = 0
        for answer, true_boxes in zip(answers, truth, strict=True):
            shown = sorted((b for b in answer["boxes"] if b["score"] >= threshold), key=lambda b: -b["score"])
            right, _ = match(shown, true_boxes)
            accepted, suggestions = accepted + len(right), suggestions + len(shown)
        return Row(label, map50(truth_doc, detections), accepted, suggestions)

    rows = sweep(args, python, tmp, DETECTOR, "detection", "bench/digits-canvases", train, val, score, "mAP@0.5")

    epochs = hyper_text(args, DETECTOR)
    notes = [first_target(rows, True),
             f"demo/digits-detector's `finetune` {epochs}, train sets nested (the first N"
             f" of {max(args.sizes)} 'shifted' canvases of the training digits, seed 100), {DETECTION_VAL} validation"
             f" canvases (held-out digits, seed 2) for the trainer's own mAP@0.5, and {DETECTION_HELD_OUT} held-out"
             f" canvases (held-out digits, seed 3, {len(truth_doc['annotations'])} digits) that no run sees.",
             "mAP@0.5: pycocotools COCOeval (bbox, iouThrs [0.5], all areas, 100 detections per image) over the"
             " solver's boxes at threshold 0.01. Accepted unchanged: bench/annotate_loop.py's annotator over the"
             " boxes the solver suggests at its default threshold (a box matching a true box of its class at"
             f" IoU >= {IOU} is kept unchanged; the others are fixed or rejected), accepted / suggestions.",
             quiet.note()]
    table("finetune_detection", "Fine-tuning demo/digits-detector on the demo project's shifted style", rows, True,
          notes)


def map50(truth: dict[str, Any], detections: list[dict[str, Any]]) -> float:
    """COCO mAP at IoU 0.5 alone (the precision array averaged over classes and recall points)."""
    import numpy as np
    from pycocotools.coco import COCO  # type: ignore[import-untyped]
    from pycocotools.cocoeval import COCOeval  # type: ignore[import-untyped]

    if not detections:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = truth
        gt.createIndex()
        found = gt.loadRes(detections)
        evaluation = COCOeval(gt, found, "bbox")
        evaluation.params.iouThrs = np.array([IOU])
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("classification", "detection"), help="one task [default: both]")
    parser.add_argument("--sizes", default="50,100,200", help="training set sizes, nested [default: %(default)s]")
    parser.add_argument("--epochs", type=int, help="override the trainers' default epochs")
    parser.add_argument("--home", type=Path, help="where the torch venv is built and kept [default: a temporary"
                        " folder, removed]")
    parser.add_argument("--dir", help="where the temporary files go [default: the system temp dir]")
    args = parser.parse_args()
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error("--sizes takes numbers separated by commas, e.g. 50,100,200")
    if not args.sizes or min(args.sizes) < 3:
        parser.error("--sizes: each training set needs at least 3 images")

    with workdir("finetune", args.dir) as tmp:
        python = torch_python(args.home.resolve() if args.home else tmp / "home")
        quiet = Quiet()
        if args.only in (None, "classification"):
            classification(args, python, tmp, quiet)
        if args.only in (None, "detection"):
            detection(args, python, tmp, quiet)


if __name__ == "__main__":
    main()

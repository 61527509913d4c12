"""Precision, recall and mAP at IoU 0.5 of the detector on samples with known boxes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from digits_detector.data import Box, Sample
from digits_detector.model import CLASSES, Detection, DigitDetector, decode


def iou(a: Detection | Box, b: Detection | Box) -> float:
    ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    return inter / (a.w * a.h + b.w * b.h - inter) if inter else 0.0


def detect(model: DigitDetector, samples: Sequence[Sample], *, threshold: float,
           batch_size: int = 64) -> list[list[Detection]]:
    """The model's boxes for each sample, in order (images of one size go through together)."""
    from digits_detector.train import grey_tensor

    model.eval()
    device = next(model.parameters()).device
    found: dict[int, list[Detection]] = {}
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(samples):
        by_shape.setdefault(s.image.shape, []).append(i)
    with torch.inference_mode():
        for members in by_shape.values():
            for k in range(0, len(members), batch_size):
                batch = [samples[i] for i in members[k:k + batch_size]]
                sizes = [(s.image.shape[1], s.image.shape[0]) for s in batch]
                output = model(grey_tensor([s.image for s in batch]).to(device)).cpu()
                found.update(zip(members[k:k + batch_size], decode(output, threshold=threshold, sizes=sizes),
                                 strict=True))
    return [found[i] for i in range(len(samples))]


def _match(found: list[Detection], truth: list[Box], iou_min: float) -> list[bool]:
    """Greedy, best score first: whether each detection (in score order) hits an unclaimed box of its class."""
    claimed = [False] * len(truth)
    hits = []
    for d in sorted(found, key=lambda d: -d.score):
        best, best_iou = -1, iou_min
        for j, t in enumerate(truth):
            if not claimed[j] and t.label == d.label and (overlap := iou(d, t)) >= best_iou:
                best, best_iou = j, overlap
        if best >= 0:
            claimed[best] = True
        hits.append(best >= 0)
    return hits


def evaluate(model: DigitDetector, samples: Sequence[Sample], *, threshold: float = 0.3,
             iou_min: float = 0.5) -> dict[str, float]:
    """``precision`` and ``recall`` of the boxes scoring at least ``threshold`` (what the solver
    returns), and ``map50``: COCO-style AP (101-point) per class at IoU ``iou_min``, averaged."""
    found = detect(model, samples, threshold=0.01)
    truth = [s.boxes for s in samples]
    kept = [[d for d in f if d.score >= threshold] for f in found]
    hits = sum(sum(_match(f, t, iou_min)) for f, t in zip(kept, truth, strict=True))
    n_found, n_truth = sum(map(len, kept)), sum(map(len, truth))
    aps = []
    for c in range(CLASSES):
        scored: list[tuple[float, bool]] = []
        positives = 0
        for f, t in zip(found, truth, strict=True):
            mine, theirs = [d for d in f if d.label == c], [b for b in t if b.label == c]
            positives += len(theirs)
            scored += zip((d.score for d in sorted(mine, key=lambda d: -d.score)), _match(mine, theirs, iou_min),
                          strict=True)
        if positives:
            aps.append(_average_precision(scored, positives))
    return {"precision": round(hits / max(n_found, 1), 4), "recall": round(hits / max(n_truth, 1), 4),
            "map50": round(float(np.mean(aps)), 4), "images": len(samples), "objects": n_truth}


def _average_precision(scored: list[tuple[float, bool]], positives: int) -> float:
    scored.sort(key=lambda s: -s[0])
    tp = np.cumsum([hit for _, hit in scored], dtype=np.float64)
    precision = tp / np.arange(1, len(scored) + 1) if scored else np.zeros(0)
    recall = tp / positives if scored else np.zeros(0)
    precision = np.maximum.accumulate(precision[::-1])[::-1] if scored else precision
    points = np.linspace(0, 1, 101)
    at = np.searchsorted(recall, points, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in at]))

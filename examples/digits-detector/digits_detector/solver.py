"""The ``detect`` solver: every digit in an image, as boxes an annotation project can take as suggestions."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import numpy as np
import torch

from cvflow.solver import Context, Image, Input
from digits_detector.data import CLASSES
from digits_detector.model import DigitDetector, decode, pad_to_stride

#: One digit: its class ("0".."9"), COCO box ``[x, y, w, h]`` in image pixels, and score.
Found = TypedDict("Found", {"class": str, "bbox": list[float], "score": float})


class Answer(TypedDict):
    boxes: list[Found]
    width: int
    height: int


class Detector:
    def __init__(self, context: Context) -> None:
        self.device = torch.device(context.device)
        self.model = DigitDetector()
        self.model.load_state_dict(context.load_weights("weights/model.safetensors", device="cpu"))
        self.model.to(self.device).eval()

    def infer(self, image: Image,
              threshold: Annotated[float, Input(ge=0.01, le=1.0, description="the lowest score to list")] = 0.3,
              ) -> Answer:
        return self.infer_batch([{"image": image, "threshold": threshold}])[0]

    def infer_batch(self, calls: list[dict[str, Any]]) -> list[Answer]:
        """One forward pass per image size in the batch."""
        answers: dict[int, Answer] = {}
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, call in enumerate(calls):
            by_size.setdefault((call["image"].width, call["image"].height), []).append(i)
        for (width, height), members in by_size.items():
            grey = np.stack([calls[i]["image"].to_numpy("L") for i in members]).astype(np.float32) / 255.0
            batch = pad_to_stride(torch.from_numpy(grey).unsqueeze(1)).to(self.device)
            with torch.inference_mode():
                output = self.model(batch).cpu()
            lowest = min(calls[i]["threshold"] for i in members)
            found = decode(output, threshold=lowest, sizes=[(width, height)] * len(members))
            for i, detections in zip(members, found, strict=True):
                boxes: list[Found] = [
                    {"class": CLASSES[d.label], "bbox": [round(d.x, 2), round(d.y, 2), round(d.w, 2), round(d.h, 2)],
                     "score": round(d.score, 4)}
                    for d in detections if d.score >= calls[i]["threshold"]]
                answers[i] = Answer(boxes=boxes, width=width, height=height)
        return [answers[i] for i in range(len(calls))]

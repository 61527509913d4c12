"""The ``classify`` solver: one digit per image, batched when requests arrive together."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import numpy as np
from PIL import Image as PILImage

from cvflow.solver import Context, Image, Input
from digits_svm.model import SIDE, SupportVectorMachine


class Guess(TypedDict):
    digit: int
    probability: float


class Answer(TypedDict):
    digit: int
    probability: float
    top: list[Guess]


def to_input(image: Image) -> np.ndarray:
    """Grey, 8x8 (box filter: each cell the mean of its pixels, as the digits were made), ink high
    in [0, 1], flattened row-major to 64 values. Mostly light border: dark ink on light paper."""
    grey = image.to_pil("L")
    pixels = np.asarray(grey, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    small = np.asarray(grey.resize((SIDE, SIDE), PILImage.Resampling.BOX), dtype=np.float32) / 255.0
    return (1.0 - small if border.mean() > 127 else small).reshape(-1)


class DigitClassifier:
    def __init__(self, context: Context) -> None:
        self.model = SupportVectorMachine.load(context.weight("weights/model.safetensors"))

    def infer(self, image: Image,
              top_k: Annotated[int, Input(ge=1, le=10, description="how many guesses to list")] = 3) -> Answer:
        return self.infer_batch([{"image": image, "top_k": top_k}])[0]

    def infer_batch(self, calls: list[dict[str, Any]]) -> list[Answer]:
        """One kernel computation for every call of the batch."""
        probabilities = self.model(np.stack([to_input(c["image"]) for c in calls]))
        answers: list[Answer] = []
        for call, p in zip(calls, probabilities, strict=True):
            order = np.argsort(p)[::-1][: call["top_k"]]
            top = [Guess(digit=int(d), probability=round(float(p[d]), 6)) for d in order]
            answers.append(Answer(digit=top[0]["digit"], probability=top[0]["probability"], top=top))
        return answers

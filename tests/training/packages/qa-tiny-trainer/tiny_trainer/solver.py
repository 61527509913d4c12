"""The solver: the colour of one image, with the package's weights (or a fine-tune's)."""

from __future__ import annotations

from typing import Any

import torch

from cvflow.solver import Context, Image
from tiny_trainer.model import CLASSES, TinyNet, to_tensor


class Classify:
    def __init__(self, context: Context) -> None:
        self.model = TinyNet()
        self.model.load_state_dict(context.load_weights("weights/model.safetensors", device="cpu"))
        self.model.eval()

    def infer(self, image: Image) -> dict[str, Any]:
        with torch.no_grad():
            probabilities = torch.softmax(self.model(to_tensor(image.to_pil("RGB"))[None]), dim=1)[0]
        best = int(probabilities.argmax())
        return {"label": CLASSES[best], "probability": float(probabilities[best])}

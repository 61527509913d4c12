"""Pixelate or blur every face that demo/face-utility finds."""

from __future__ import annotations

import base64
import enum
import io
from typing import Annotated, Literal, TypedDict

import cv2
import numpy as np
from face_utility.detector import Face, detect_faces, load_cascade  # from the dependency's snapshot
from PIL import Image as PILImage

from cvflow.solver import Context, Image, Input


class Method(enum.Enum):
    PIXELATE = "pixelate"
    BLUR = "blur"


class Anonymized(TypedDict):
    faces: list[Face]
    image: str  # a data: URL


def hide(pixels: np.ndarray, face: Face, method: Method, strength: int) -> None:
    b = face["box"]
    region = pixels[b["y"]: b["y"] + b["height"], b["x"]: b["x"] + b["width"]]
    if method is Method.PIXELATE:
        h, w = region.shape[:2]
        cells = cv2.resize(region, (max(1, w // strength), max(1, h // strength)), interpolation=cv2.INTER_AREA)
        region[:] = cv2.resize(cells, (w, h), interpolation=cv2.INTER_NEAREST)
    else:
        k = 2 * strength + 1
        region[:] = cv2.GaussianBlur(region, (k, k), 0)


class Anonymizer:
    def __init__(self, context: Context) -> None:
        self.cascade = load_cascade("default")

    def infer(
        self,
        image: Image,
        method: Method = Method.PIXELATE,
        strength: Annotated[int, Input(ge=2, le=64, description="cell size (pixelate) or blur radius")] = 12,
        format: Literal["png", "jpeg"] = "png",
    ) -> Anonymized:
        pixels = np.array(image.to_numpy("RGB"))  # a writable copy
        faces = detect_faces(self.cascade, cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY))
        for face in faces:
            hide(pixels, face, method, strength)
        out = io.BytesIO()
        PILImage.fromarray(pixels).save(out, format="PNG" if format == "png" else "JPEG", quality=90)
        encoded = base64.b64encode(out.getvalue()).decode()
        return Anonymized(faces=faces, image=f"data:image/{format};base64,{encoded}")

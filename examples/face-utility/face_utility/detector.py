"""Viola-Jones face detection with the frontal-face Haar cascade that ``opencv-python-headless`` 4.x ships."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypedDict

import cv2
import numpy as np

from cvflow.solver import Context, Image, Input

CASCADES = {
    "default": "haarcascade_frontalface_default.xml",
    "alt": "haarcascade_frontalface_alt.xml",
    "alt2": "haarcascade_frontalface_alt2.xml",
}


class Box(TypedDict):
    x: int
    y: int
    width: int
    height: int


class Face(TypedDict):
    box: Box
    score: float


class Detection(TypedDict):
    width: int
    height: int
    faces: list[Face]


def load_cascade(which: str = "default") -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / CASCADES[which]
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load its cascade {path}; is opencv-python-headless < 5 installed?")
    return cascade


def detect_faces(cascade: cv2.CascadeClassifier, grey: np.ndarray, *, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: int = 30) -> list[Face]:
    """Faces in a grey ``uint8`` image, best score first. The score is the cascade's last-stage
    weight (``detectMultiScale3``'s level weight): higher is surer, and it has no fixed scale."""
    rects, _levels, weights = cascade.detectMultiScale3(
        cv2.equalizeHist(grey), scaleFactor=scale_factor, minNeighbors=min_neighbors,
        minSize=(min_size, min_size), outputRejectLevels=True)
    faces = [Face(box=Box(x=int(x), y=int(y), width=int(w), height=int(h)), score=round(float(s), 4))
             for (x, y, w, h), s in zip(rects, np.ravel(weights), strict=True)]
    return sorted(faces, key=lambda f: f["score"], reverse=True)


class FaceDetector:
    def __init__(self, context: Context) -> None:
        self.cascades = {"default": load_cascade("default")}  # the others load on first use

    def infer(
        self,
        image: Image,
        cascade: Literal["default", "alt", "alt2"] = "default",
        scale_factor: Annotated[float, Input(gt=1.0, le=2.0, description="image pyramid step")] = 1.1,
        min_neighbors: Annotated[int, Input(ge=0, le=50, description="overlapping hits a face needs")] = 5,
        min_size: Annotated[int, Input(ge=8, le=4096, description="smallest face side, pixels")] = 30,
    ) -> Detection:
        if cascade not in self.cascades:
            self.cascades[cascade] = load_cascade(cascade)
        grey = image.to_numpy("L")
        faces = detect_faces(self.cascades[cascade], grey, scale_factor=scale_factor,
                             min_neighbors=min_neighbors, min_size=min_size)
        return Detection(width=image.width, height=image.height, faces=faces)

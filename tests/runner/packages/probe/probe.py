"""Solvers for the runner's tests: typed inputs of every kind, failures on demand, batches."""

from __future__ import annotations

import enum
import os
import threading
import time
from typing import Annotated, Any, Literal

from cvflow.solver import Context, Image, Input, InputError


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Inspect:
    def __init__(self, context: Context) -> None:
        self.context = context

    def infer(
        self,
        image: Image,
        extra: list[Image] | None = None,
        count: Annotated[int, Input(ge=0, le=10, description="a bounded integer")] = 1,
        scale: float = 1.0,
        label: Annotated[str, Input(max_length=8)] = "x",
        mode: Literal["fast", "exact"] = "fast",
        color: Color = Color.RED,
        flag: bool = False,
    ) -> dict[str, Any]:
        return {
            "size": [image.width, image.height], "format": image.format,
            "mode": image.to_pil(None).mode, "corner": image.to_pil("RGB").getpixel((0, 0)),
            "extra": [[i.width, i.height] for i in extra or []],
            "count": count, "scale": scale, "label": label, "choice": mode, "color": color.value, "flag": flag,
            "settings": dict(self.context.settings), "env": os.environ.get("PROBE_ENV"),
            "device": self.context.device, "package": self.context.package, "solver": self.context.solver,
            "cwd": os.getcwd(), "package_dir": str(self.context.package_dir),
        }


class Fail:
    def infer(self, how: Literal["raise", "input", "nan", "object", "ok"] = "raise") -> dict[str, Any]:
        if how == "raise":
            raise RuntimeError("kaboom: the solver failed on purpose")
        if how == "input":
            raise InputError("how: refused on purpose", field="how")
        if how == "nan":
            return {"x": float("nan")}
        if how == "object":
            return {"x": object()}
        return {"ok": True}


class Batched:
    """Slow enough that calls queue behind a running batch; a negative n fails its batch."""

    def __init__(self, context: Context) -> None:
        self.lock = threading.Lock()
        self.running = 0

    def infer(self, n: int) -> dict[str, Any]:
        return self.infer_batch([{"n": n}])[0]

    def infer_batch(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with self.lock:
            self.running += 1
            overlap = self.running
        try:
            time.sleep(0.2)
            if any(c["n"] < 0 for c in calls):
                raise ValueError(f"n must not be negative (batch of {len(calls)})")
            return [{"n": c["n"], "batch": len(calls), "overlap": overlap} for c in calls]
        finally:
            with self.lock:
                self.running -= 1

"""Checkpoints as safetensors, never pickles: a checkpoint travels between workers through the hub.

A checkpoint is one file, ``checkpoint.safetensors``: the tensors, and the JSON ``state`` in the
file's metadata (``cvflow_state``). :func:`flatten` turns a model's and an optimizer's
``state_dict`` into flat tensors plus JSON, and :func:`restore` puts them back, so a trainer
keeps everything it needs to resume without pickle. Imported only inside a package's venv, where
torch and safetensors are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CHECKPOINT_FILE = "checkpoint.safetensors"
_STATE_KEY = "cvflow_state"


def write_checkpoint(folder: Path, tensors: Mapping[str, Any], state: Mapping[str, Any]) -> Path:
    """Write ``folder/checkpoint.safetensors`` aside and rename it into place; its path."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    tmp = folder / f".{CHECKPOINT_FILE}.tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata={_STATE_KEY: json.dumps(dict(state))})
    os.replace(tmp, path)
    return path


def read_checkpoint(folder: Path, *, device: str = "cpu") -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(tensors, state)`` from ``folder/checkpoint.safetensors``, or None if there is none."""
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return None
    from safetensors import safe_open

    tensors: dict[str, Any] = {}
    with safe_open(str(path), framework="pt", device=device) as f:
        metadata = f.metadata() or {}
        for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            tensors[key] = f.get_tensor(key)
    state = json.loads(metadata.get(_STATE_KEY, "{}"))
    return tensors, state if isinstance(state, dict) else {}


def flatten(model: Any, optimizer: Any | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's and an optimizer's state as ``(tensors, json_state)`` for :func:`write_checkpoint`."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {}
    if optimizer is not None:
        opt = optimizer.state_dict()
        meta["param_groups"] = opt["param_groups"]
        scalars: dict[str, dict[str, Any]] = {}
        for index, entry in opt["state"].items():
            for name, value in entry.items():
                if hasattr(value, "detach"):
                    tensors[f"optim.{index}.{name}"] = value
                else:
                    scalars.setdefault(str(index), {})[name] = value
        meta["scalars"] = scalars
    return tensors, meta


def restore(tensors: Mapping[str, Any], meta: Mapping[str, Any], model: Any, optimizer: Any | None = None) -> None:
    """Put :func:`flatten`'s output back into ``model`` and ``optimizer``."""
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is None or "param_groups" not in meta:
        return
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in dict(meta.get("scalars", {})).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})

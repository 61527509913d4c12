"""Fixtures for the training tests, and for any test that runs a trainer in a real venv.

``torch_python`` is the python of ONE virtual environment per test session with the
requirements every demo package and qa/tiny-trainer pin (torch's CPU wheel comes from the local
wheel folder, never from the network), independent of CVFLOW_HOME. Tests outside
tests/training use it with ``from tests.training.conftest import torch_python, torch_venv``:
the venv is cached in this module, so a second import of the fixtures still builds it once.
``CVFLOW_TEST_TORCH_VENV=/some/dir`` keeps it between sessions (a developer's repeated runs).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cvflow.install.venv import build_venv, venv_python

#: The demo packages' and qa/tiny-trainer's requirements, exactly: one venv serves them all.
TORCH_REQUIREMENTS = ["torch==2.13.0", "numpy>=1.24", "pillow>=10", "safetensors>=0.4"]
PACKAGES = Path(__file__).resolve().parent / "packages"
TINY_TRAINER = PACKAGES / "qa-tiny-trainer"
_READY = ".cvflow-test-ready"
_built: list[Path] = []


def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CVFLOW_HOME for every fine-tune test of the session (cvflow finetune, the worker, the
    loop): the packages' torch venv is built once there."""
    home = tmp_path_factory.getbasetemp() / "cvflow-training-home"
    home.mkdir(exist_ok=True)
    return home


def build_torch_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's torch venv, built on the first call."""
    if _built:
        return _built[0]
    kept = os.environ.get("CVFLOW_TEST_TORCH_VENV")
    venv = Path(kept) if kept else tmp_path_factory.mktemp("torch-venv") / "venv"
    marker = "\n".join(TORCH_REQUIREMENTS) + "\n"
    ready = venv / _READY
    if not (venv_python(venv).is_file() and ready.is_file() and ready.read_text() == marker):
        shutil.rmtree(venv, ignore_errors=True)
        build_venv(venv, [], TORCH_REQUIREMENTS, offline=False, label="test torch venv")
        ready.write_text(marker)
    _built.append(venv)
    return venv


@pytest.fixture(scope="session")
def torch_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with torch (CPU), numpy, Pillow and safetensors."""
    return build_torch_venv(tmp_path_factory)


@pytest.fixture(scope="session")
def torch_python(torch_venv: Path) -> Path:
    """The torch venv's python: what a package's trainer runs with."""
    return venv_python(torch_venv)

"""``cvpm.solver.Solver``: the base class of 2019 solvers.

The runner constructs the subclass with no arguments, as the 2019 runtime did, and serves its
``infer(image_file, config)`` (``cvflow.runner.cvpm_compat.adapter``). ``set_ready`` records a flag;
readiness is the runner's (``/readyz``: every solver constructed). The ``toml_file`` given to
``__init__`` (a ``pretrained.toml``) is recorded, not read: its models were downloaded by
``cvflow install`` into the package's ``weights/`` folder.
"""

from __future__ import annotations

import json
from typing import Any

from .bundle import Bundle


class Solver:
    def __init__(self, toml_file: str | None = None) -> None:
        self._isReady = False
        self.bundle: Any = None
        self._enable_train = False
        self.toml_file = toml_file

    @property
    def enable_train(self) -> bool:
        return self._enable_train

    @property
    def is_ready(self) -> bool:
        return self._isReady

    @property
    def help_message(self) -> str:
        members = self.bundle.members(self.bundle) if self.bundle is not None else {}
        return json.dumps(members)

    def set_ready(self) -> None:
        self._isReady = True

    def ready(self) -> None:
        """The older spelling of ``set_ready``."""
        self.set_ready()

    def set_bundle(self, bundle: Any) -> None:
        if isinstance(bundle, type) and issubclass(bundle, Bundle):
            self.bundle = bundle
            bundle.add_solver(bundle, self)

    def infer(self, image_file: Any, config: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement infer(image_file, config)")

    def train(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("training a 2019 CVPM solver is not supported by cvflow; see docs/training.md"
                                  " for the trainer contract")

    def start(self, port: int | None = None) -> None:
        raise NotImplementedError("a 2019 solver is served by the cvflow runner: cvflow run NAMESPACE/PACKAGE")

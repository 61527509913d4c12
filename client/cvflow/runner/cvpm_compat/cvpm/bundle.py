"""``cvpm.bundle.Bundle``: the base class of a 2019 package's ``bundle.py``, a class of constants
(``PRETRAINED_TOML``, model file locations, ``ENABLE_TRAIN``) and the solvers that use it."""

from __future__ import annotations

from typing import Any, ClassVar


class Bundle:
    SOLVERS: ClassVar[list[Any]] = []
    ENABLE_TRAIN: ClassVar[bool] = False

    # Called on the class, as 2019 solvers' base class called it: Bundle.add_solver(self=cls, solver=s).
    def add_solver(self: Any, solver: Any) -> None:
        solvers = self.__dict__.get("SOLVERS") if isinstance(self, type) else None
        if solvers is None:  # a subclass without its own list: do not append to the base class's
            solvers = []
            self.SOLVERS = solvers
        if solver not in solvers:
            solvers.append(solver)

    def members(self: Any) -> dict[str, Any]:
        """The bundle's public upper-case constants (what the 2019 runtime showed as a solver's help)."""
        cls = self if isinstance(self, type) else type(self)
        return {k: v for k, v in vars(cls).items()
                if k.isupper() and k != "SOLVERS" and isinstance(v, str | int | float | bool)}

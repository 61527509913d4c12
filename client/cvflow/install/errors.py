"""What an install raises besides the resolver's, the lock's and the hub's errors."""

from __future__ import annotations

from cvflow.errors import CVFlowError


class InstallError(CVFlowError):
    """A virtual environment or a package's Python requirements could not be installed."""

    code = "install_failed"


class DatasetNotInstallableError(CVFlowError):
    """A dataset package (``kind = "dataset"``) asked to be installed or run: it holds no code."""

    code = "dataset_not_installable"

    def __init__(self, spec: str) -> None:
        super().__init__(f"{spec} is a dataset, not a model: nothing in it is installed or run; use "
                         f"`cvflow pull {spec}` and `cvflow dataset export FORMAT DIR OUT` (docs/datasets.md)")
        self.spec = spec


class NotInstalledError(CVFlowError, LookupError):
    """``uninstall`` of something that is not installed."""

    code = "not_installed"

"""What an install raises besides the resolver's, the lock's and the hub's errors."""

from __future__ import annotations

from cvflow.errors import CVFlowError


class InstallError(CVFlowError):
    """A virtual environment or a package's Python requirements could not be installed."""

    code = "install_failed"


class NotInstalledError(CVFlowError, LookupError):
    """``uninstall`` of something that is not installed."""

    code = "not_installed"

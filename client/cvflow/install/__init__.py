"""Install packages: resolve, lock, pull, and give each package version its own venv.

``install`` resolves a package and its package dependencies (or reads ``cvflow.lock``
with ``locked=True``), writes the lock (unless told not to), pulls every version into the
shared cache, then builds one virtual environment per package version at
``CVFLOW_HOME/venvs/<namespace>/<name>/<version>``:

* ``uv venv`` + ``uv pip install --link-mode hardlink`` with the client's own uv (a
  dependency), from one wheel cache (``CVFLOW_HOME/cache/uv``, or ``UV_CACHE_DIR``) and
  with the user's pip configuration passed on; ``python -m venv`` + pip only when no uv
  binary runs;
* the Python ``requirements`` of the package *and* of its package dependencies (their
  code is importable in it too, so it must be able to run);
* a ``.pth`` file that puts the package's cached snapshot, then its dependencies'
  snapshots, on ``sys.path``; the files are not copied;
* a link that makes this client's ``cvflow`` package (only it, not the client's own
  dependencies) importable, since solvers are written against ``cvflow.solver``. A
  ``cvflow`` the package's requirements install wins over the link.

A venv is built in a temporary sibling directory and renamed into place, so a failed
install leaves what was installed before untouched. Installs are recorded in
``CVFLOW_HOME/state/installed.json`` (replaced atomically); concurrent installs on one
machine take turns on ``state/install.lock``.

One module per step:

| module | what it holds |
| --- | --- |
| ``plan`` | ``install``: resolve or read the lock, pull, build in dependency order |
| ``lock`` | installing against ``cvflow.lock``: roots, wholeness, file digests |
| ``venv`` | building one venv aside and swapping it into place; finding uv |
| ``pipconfig`` | pip's configuration files and ``PIP_*`` variables, as uv's options |
| ``hook`` | the import hook that makes ``cvflow`` importable in a package venv |
| ``before`` | a legacy CVPM package's ``before_install`` script, run only with the user's consent |
| ``state`` | ``installed.json``: list, record, uninstall |
| ``records`` | ``InstalledPackage``, ``InstallReport``, ``parse_spec`` |
| ``errors`` | ``InstallError``, ``NotInstalledError``, ``DatasetNotInstallableError`` |

Importing this package does not import the resolver or the HTTP client: ``cvflow ps``
lists installed packages without them.
"""

from __future__ import annotations

from cvflow.install.errors import DatasetNotInstallableError, InstallError, NotInstalledError
from cvflow.install.plan import install
from cvflow.install.records import InstalledPackage, InstallReport, parse_spec
from cvflow.install.state import installed_versions, list_installed, uninstall
from cvflow.install.venv import build_venv, venv_python

__all__ = [
    "DatasetNotInstallableError",
    "InstallError",
    "InstallReport",
    "InstalledPackage",
    "NotInstalledError",
    "build_venv",
    "install",
    "installed_versions",
    "list_installed",
    "parse_spec",
    "uninstall",
    "venv_python",
]

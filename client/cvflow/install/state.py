"""``CVFLOW_HOME/state/installed.json``: what is installed. Replaced atomically; installs and
uninstalls on one machine take turns on ``state/install.lock``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from cvflow.install.errors import InstallError, NotInstalledError
from cvflow.install.records import InstalledPackage
from cvflow.locks import file_lock
from cvflow.names import PackageName
from cvflow.versions import Version

if TYPE_CHECKING:
    from cvflow.config import Config


STATE_FORMAT = 1


def state_file(config: Config) -> Path:
    return config.state_dir / "installed.json"


def state_lock(config: Config) -> contextlib.AbstractContextManager[None]:
    return file_lock(config.state_dir / "install.lock")


def read_state(config: Config) -> dict[tuple[str, str], InstalledPackage]:
    try:
        data = json.loads(state_file(config).read_text())
    except FileNotFoundError:
        return {}
    except (NotADirectoryError, PermissionError):  # CVFLOW_HOME itself is unusable: cvflow.cli says so
        raise
    except (OSError, ValueError) as exc:
        raise InstallError(f"{state_file(config)} is unreadable ({exc}); move it aside to start afresh") from exc
    fields = set(InstalledPackage.__dataclass_fields__)
    out = {}
    for item in data.get("packages", []):
        record = InstalledPackage(**{k: v for k, v in item.items() if k in fields})
        out[(record.name, record.version)] = record
    return out


def write_state(config: Config, records: Mapping[tuple[str, str], InstalledPackage]) -> None:
    ordered = sorted(records.values(), key=lambda r: (r.name, Version.parse(r.version).key))
    body = json.dumps({"version": STATE_FORMAT, "packages": [asdict(r) for r in ordered]}, indent=2, sort_keys=True)
    path = state_file(config)
    fd, tmp = tempfile.mkstemp(prefix=".installed.", suffix=".tmp", dir=config.state_dir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_installed(config: Config) -> list[InstalledPackage]:
    """Every installed package version, by name then version.

    Raises:
        InstallError: the state file is unreadable.
    """
    return sorted(read_state(config).values(), key=lambda r: (r.name, Version.parse(r.version).key))


def installed_versions(config: Config) -> set[tuple[str, str]]:
    """``(name, version)`` of every cached version an installed venv uses: what ``cache prune`` must keep."""
    out = set()
    for record in read_state(config).values():
        out.add((record.name, record.version))
        for used in record.uses:
            name, _, version = used.partition("@")
            out.add((name, version))
    return out


def uninstall(config: Config, spec: str) -> list[InstalledPackage]:
    """Remove ``namespace/name`` (every installed version) or ``namespace/name@VERSION``:
    its venv and its record. The cache keeps the files. Returns what was removed.

    Raises:
        NotInstalledError: nothing installed matches.
        InvalidNameError, InvalidVersionError: ``spec`` is malformed.
    """
    name, _, text = spec.strip().partition("@")
    PackageName.parse(name)
    version = str(Version.parse(text.strip())) if text else None
    with state_lock(config):
        records = read_state(config)
        gone = [r for r in records.values() if r.name == name and version in (None, r.version)]
        if not gone:
            raise NotInstalledError(f"{spec} is not installed")
        for r in gone:
            del records[(r.name, r.version)]
        write_state(config, records)  # the record goes first: a half-removed venv is never listed
        for r in gone:
            shutil.rmtree(r.venv, ignore_errors=True)
            with contextlib.suppress(OSError):  # tidy empty <ns>/<name> folders
                Path(r.venv).parent.rmdir()
                Path(r.venv).parent.parent.rmdir()
    return gone

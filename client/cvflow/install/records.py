"""What an install records (one installed package version) and reports, and the spec it takes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cvflow.install.venv import venv_python
from cvflow.names import PackageName
from cvflow.versions import VersionRange


@dataclass(frozen=True)
class InstalledPackage:
    """One installed package version, as recorded in ``installed.json``."""

    name: str
    version: str
    venv: str
    snapshot: str
    dependencies: dict[str, str] = field(default_factory=dict)  # name -> exact version installed
    requirements: list[str] = field(default_factory=list)  # the pip requirements put in the venv
    uses: list[str] = field(default_factory=list)  # "name@version" of every snapshot on its sys.path, itself first
    installed_at: str = ""

    @property
    def python(self) -> Path:
        return venv_python(Path(self.venv))


@dataclass
class InstallReport:
    """What ``install`` did: every package version of the install, and which venvs it built."""

    requested: dict[str, str]
    lock_path: Path | None  # None: no lock was written (not in a package folder, and none asked for)
    packages: list[InstalledPackage]
    built: list[str] = field(default_factory=list)  # "name@version" whose venv was (re)built
    locked: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "lock": str(self.lock_path) if self.lock_path else None,
                "locked": self.locked, "built": self.built, "packages": [asdict(p) for p in self.packages]}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"ns/name@^1.2"`` -> ``("ns/name", "^1.2")``; no ``@`` gives ``None``.

    Raises:
        InvalidNameError, InvalidRangeError: the name or the range is malformed.
    """
    name, at, text = spec.strip().partition("@")
    PackageName.parse(name)
    if at:
        VersionRange.parse(text)
    return name, (text.strip() if at else None)

"""Closed sets are types: a misspelt error code, scope, role, namespace kind, copy path,
change action, job reason or state, endpoint access mode or solver input kind is a type
error under the project's mypy configuration (the one ``scripts/test`` runs), not a string
that only fails at run time.

Each line marked ``# error`` must be reported, and nothing else may be: a line left
unreported means its type was widened back to ``str``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parents[1]

SNIPPET = textwrap.dedent('''
    from typing import get_args

    from cvflow.runner.errors import RunnerError, field_error
    from cvflow.runner.schema import ParamKind
    from hub.api.access import Access
    from hub.errors import CODES, HubError, from_validation
    from hub.models import ChangeAction, HubPath, JobReason, JobState, NamespaceKind, OrgRole, PackageRoleName
    from hub.security import ScopeName
    from hub.services.blobs import hub_holder

    HubError("not_found")
    HubError("not_fuond")  # error
    from_validation(ValueError(), "invalid_manifset")  # error
    CODES["version_exist"]  # error
    RunnerError("busy", "later")
    RunnerError("bussy", "later")  # error
    field_error("invalid_fields", "image", "bad")  # error
    kind: NamespaceKind = "org"
    kind = "organisation"  # error
    org_role: OrgRole = "owner"
    org_role = "maintainer"  # error
    package_role: PackageRoleName = "maintainer"
    package_role = "member"  # error
    hub_holder("mirror")
    hub_holder("proxy")  # error
    scope: ScopeName = "publish"
    scope = "write"  # error
    Access("publish:pkg")
    Access("publish:package")  # error
    param: ParamKind = "images"
    param = "video"  # error
    action: ChangeAction = "delete"
    action = "deleted"  # error
    reason: JobReason = "webhook"
    reason = "push"  # error
    state: JobState = "done"
    state = "finished"  # error
    assert get_args(ScopeName)
''')


def test_misspelt_members_of_closed_sets_are_type_errors(tmp_path: Path) -> None:
    source = tmp_path / "closed_sets.py"
    source.write_text(SNIPPET)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "--hide-error-context", "--no-pretty", str(source)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    reported = {int(m.group(1)) for m in re.finditer(r"closed_sets\.py:(\d+): error:", result.stdout)}
    expected = {n for n, line in enumerate(SNIPPET.splitlines(), 1) if line.endswith("# error")}
    assert len(expected) == 15
    assert reported == expected, result.stdout + result.stderr

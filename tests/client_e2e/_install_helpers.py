"""Helpers for the install CLI tests: publish small packages, look inside the venvs ``cvflow install`` built."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.client_e2e._publish_helpers import run_cli
from tests.helpers import publish


def publish_ok(client: httpx.Client, name: str, version: str, *, files: Mapping[str, bytes] | None = None,
               deps: Mapping[str, str] | None = None, extra: str = "") -> None:
    r = publish(client, name, version, files=dict(files or {"solver.py": b"class Detector: pass\n"}),
                dependencies=dict(deps or {}), extra=extra)
    assert r.status_code == 201, r.text


def yank(client: httpx.Client, name: str, version: str) -> None:
    r = client.post(f"/api/v1/packages/{name}/versions/{version}/yank", json={"reason": "broken"})
    assert r.status_code == 200, r.text


def install_json(env: Mapping[str, str | None], *args: str) -> dict[str, Any]:
    """``cvflow install ARGS --json``, which must succeed; its report."""
    result = run_cli(env, "install", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def fails(env: Mapping[str, str | None], *args: str) -> str:
    """``cvflow ARGS``, which must fail with exit 1 and one error line on stderr; that line."""
    result = run_cli(env, *args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


def versions(report: Mapping[str, Any]) -> dict[str, str]:
    return {p["name"]: p["version"] for p in report["packages"]}


def python_in(venv: str | Path, code: str) -> str:
    """Run ``code`` with the venv's own python; its stdout (stripped). The venv must work."""
    python = Path(venv) / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    done = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def build_wheel(folder: Path, dist: str, version: str, modules: Mapping[str, bytes]) -> Path:
    """A pure-Python wheel of ``modules`` (``{"pkg/__init__.py": b"..."}``), made by hand: no build tools, no network."""
    stem = f"{dist.replace('-', '_')}-{version}"
    info = f"{stem}.dist-info"
    files = {**modules, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: cvflow-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b'=').decode()},{len(b)}"
              for p, b in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel

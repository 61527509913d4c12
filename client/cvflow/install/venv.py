"""One virtual environment per package version: built aside, requirements installed by uv or pip,
the package's snapshots put on its ``sys.path``, then swapped into place.

Venvs with the same requirements share their installed files: each venv records what it was
built with (``cvflow-requirements.json``: the interpreter and the requirement list), and a new
venv whose record matches an existing one's under the same venvs folder is made by hard-linking
that venv's ``site-packages`` (and copying its console scripts) instead of installing again.
A fine-tuned version, or any package with the same pins as one installed before (every torch
demo package), then costs seconds and almost no disk. Installers replace files rather than
write into them, so a later ``pip install`` in one venv does not change the other.

Requirements are installed by uv (the ``uv`` distribution is a dependency of the client; its
binary is found with ``uv.find_uv_bin()``, else on ``PATH``), with ``--link-mode hardlink``
from one wheel cache shared by every venv: ``UV_CACHE_DIR`` when set, else
``CVFLOW_HOME/cache/uv``. A second venv with torch and other requirements then adds little
disk: torch's files are hard links into the cache (uv copies instead when the cache and the
venvs lie on different file systems). The user's pip configuration is handed to uv
(``cvflow.install.pipconfig``). Only when no uv binary can be run does the install fall back
to ``python -m venv`` and pip, with one warning line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from cvflow.install.errors import InstallError
from cvflow.install.hook import write_link

if TYPE_CHECKING:
    from cvflow.progress import Transfer


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def site_packages(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Lib" / "site-packages"
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise InstallError(f"the new virtual environment at {venv} has no site-packages")
    return found[0]


PTH_NAME = "_cvflow_package.pth"


def read_pth(venv: Path) -> list[str] | None:
    try:
        return (site_packages(venv) / PTH_NAME).read_text().splitlines()
    except (OSError, InstallError):
        return None


RECORD_NAME = "cvflow-requirements.json"


def _record(requirements: list[str]) -> dict[str, object]:
    return {"python": sys.executable, "version": list(sys.version_info[:3]), "requirements": list(requirements)}


def find_donor(venvs_dir: Path, requirements: list[str], *, exclude: Path) -> Path | None:
    """A built venv under ``venvs_dir`` (``<namespace>/<name>/<version>``) with exactly these requirements."""
    wanted = _record(requirements)
    for record in sorted(venvs_dir.glob(f"*/*/*/{RECORD_NAME}")):
        venv = record.parent
        if venv == exclude or venv.name.startswith("."):
            continue
        try:
            if json.loads(record.read_text()) == wanted and read_pth(venv) is not None:
                return venv
        except (OSError, ValueError):
            continue
    return None


def _clone_installed(donor: Path, tmp: Path) -> None:
    """Hard-link the donor's installed files into the new venv (copy across file systems)."""
    src_sp, dst_sp = site_packages(donor), site_packages(tmp)
    skip = {PTH_NAME, "_cvflow_link.py", "_cvflow_link.pth", "__pycache__"}
    for root, dirs, files in os.walk(src_sp):
        rel = Path(root).relative_to(src_sp)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in skip]
        (dst_sp / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            if rel == Path(".") and name in skip:
                continue
            src, dst = Path(root) / name, dst_sp / rel / name
            if dst.exists():
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    scripts = "Scripts" if os.name == "nt" else "bin"
    old, new = str(donor).encode(), str(tmp).encode()
    for src in (donor / scripts).iterdir():
        dst = tmp / scripts / src.name
        if dst.exists() or dst.is_symlink() or src.is_symlink() or not src.is_file():
            continue
        data = src.read_bytes()
        dst.write_bytes(data.replace(old, new))
        shutil.copymode(src, dst)


@cache
def find_uv() -> str | None:
    """The uv binary to install with: the ``uv`` distribution's, else one on ``PATH``; None if none runs."""
    candidates = []
    try:
        import uv

        candidates.append(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    on_path = shutil.which("uv")
    if on_path:
        candidates.append(on_path)
    for binary in candidates:
        try:
            done = subprocess.run([binary, "--version"], capture_output=True, stdin=subprocess.DEVNULL,
                                  timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return binary
    return None


def uv_cache_dir(home_cache: Path | None) -> Path | None:
    """The wheel cache uv installs from: ``UV_CACHE_DIR`` when set, else ``home_cache`` (``CVFLOW_HOME/cache/uv``)."""
    chosen = os.environ.get("UV_CACHE_DIR")
    return Path(chosen) if chosen else home_cache


def build_venv(target: Path, paths: list[str], requirements: list[str], *, offline: bool, label: str,
               share_from: Path | None = None, cache_dir: Path | None = None,
               progress: Transfer | None = None, steps: Callable[[str], None] | None = None,
               verbose: bool = False) -> None:
    """Build a venv with ``requirements`` and ``paths`` on its ``sys.path``, then put it at ``target``.

    With ``share_from`` (the venvs folder), a venv there built with the same requirements and
    interpreter lends its installed files by hard links instead of a fresh install. uv caches
    wheels in ``cache_dir`` (``UV_CACHE_DIR`` wins; None: uv's own default). Each step is
    handed to ``steps``; with ``verbose`` the installer's own output is too, line by line as it
    comes. A fall-back to pip is said on ``progress``.

    Raises:
        InstallError: creating the venv or installing a requirement failed; ``target`` is untouched.
    """
    from cvflow.progress import SILENT

    log = steps or (lambda message: None)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        uv = find_uv()
        if uv is None:
            (progress or SILENT).log("warning: the uv binary cannot be found or run (reinstall the client:"
                                     " pip install cvflow); installing with pip, which is slower and keeps"
                                     " no shared wheel cache")
        cache = uv_cache_dir(cache_dir)
        log(f"{label}: creating the venv")
        if uv:
            _run([uv, "venv", "--quiet", "--python", sys.executable, str(tmp)], f"{label}: uv venv",
                 env=_uv_env(cache))
        else:
            _run([sys.executable, "-m", "venv", "--without-pip", str(tmp)], f"{label}: python -m venv")
        donor = None if share_from is None or not requirements else find_donor(share_from, requirements,
                                                                                exclude=target)
        if donor is not None:
            log(f"{label}: linking the installed files of {donor} (same requirements)")
            _clone_installed(donor, tmp)
        elif requirements:
            started = time.monotonic()
            how = "uv" if uv else "pip"
            log(f"{label}: installing {len(requirements)} requirement{'s' * (len(requirements) != 1)}"
                f" with {how}: {', '.join(requirements)}")
            _pip_install(uv, tmp, requirements, offline=offline, label=label, cache=cache,
                         log=log if verbose else None)
            log(f"{label}: installed in {time.monotonic() - started:.1f} s")
        (tmp / RECORD_NAME).write_text(json.dumps(_record(requirements)))
        (site_packages(tmp) / PTH_NAME).write_text("".join(p + "\n" for p in paths))
        write_link(site_packages(tmp))
        _retarget(tmp, target)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _uv_env(cache: Path | None) -> dict[str, str]:
    return {"UV_CACHE_DIR": str(cache)} if cache is not None else {}


def _pip_install(uv: str | None, venv: Path, requirements: list[str], *, offline: bool, label: str,
                 cache: Path | None = None, log: Callable[[str], None] | None = None) -> None:
    python = str(venv_python(venv))
    env: dict[str, str] = {}
    if uv:
        from cvflow.install.pipconfig import uv_options

        pip_options = uv_options()
        cmd = [uv, "pip", "install", "--python", python, "--link-mode", "hardlink", *pip_options.args]
        cmd += [] if log else ["--quiet"]
        cmd += ["--offline", "--no-index"] if offline else []
        env = {**pip_options.env, **_uv_env(cache)}
    else:
        if _has_pip():  # drive the venv from our own pip: no copy of pip in every venv
            cmd = [sys.executable, "-m", "pip", "--python", python]
        else:
            _run([python, "-m", "ensurepip", "--default-pip"], f"{label}: ensurepip")
            cmd = [python, "-m", "pip"]
        cmd += ["install", "--no-input", "--disable-pip-version-check"]
        cmd += [] if log else ["--quiet"]
        cmd += ["--no-index"] if offline else []
    try:
        _run([*cmd, "--", *requirements], f"{label}: installing {', '.join(requirements)}", env=env, stream=log)
    except InstallError as exc:
        if offline:
            raise InstallError(f"{exc.message}. Offline, Python requirements come only from a local wheel folder"
                               " (pip's find-links, PIP_FIND_LINKS or UV_FIND_LINKS) or the installer's cache;"
                               " install once while online or provide them there") from None
        raise


def _has_pip() -> bool:
    """Whether our own interpreter has a pip that can drive another environment (``--python``: pip 22.3+)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(x) for x in version("pip").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (22, 3)


_ERROR_STARTS = ("error", "cause", "\u00d7", "\u2570\u2500\u25b6", "because")  # pip's and uv's error lines


def _run(cmd: list[str], what: str, *, env: dict[str, str] | None = None,
         stream: Callable[[str], None] | None = None) -> None:
    """Run an installer; with ``stream``, hand it each line of the installer's output as it comes."""
    full_env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **(env or {})}
    full_env.pop("VIRTUAL_ENV", None)  # else uv and pip may pick the caller's venv instead of ours
    full_env.pop("PYTHONPATH", None)
    try:
        if stream is None:
            done = subprocess.run(cmd, capture_output=True, text=True, env=full_env, stdin=subprocess.DEVNULL,
                                  check=False)
            code, output = done.returncode, done.stderr + "\n" + done.stdout
        else:
            code, output = _streamed(cmd, full_env, stream)
    except OSError as exc:
        raise InstallError(f"{what}: cannot run {cmd[0]}: {exc.strerror or exc}") from exc
    if code != 0:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.lower().startswith(_ERROR_STARTS)] or lines[-3:]
        raise InstallError(f"{what} failed: {' '.join(errors)[:600] or f'exit status {code}'}")


def _streamed(cmd: list[str], env: dict[str, str], stream: Callable[[str], None]) -> tuple[int, str]:
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          env=env, text=True, errors="replace", bufsize=1) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip():
                stream("  " + line.rstrip())
        return proc.wait(), "".join(lines)


def _retarget(tmp: Path, target: Path) -> None:
    """Rewrite the temporary prefix to the final one in scripts and activation files.

    Venvs are not relocatable: activate scripts and the shebangs of installed commands
    hold the absolute path they were built at.
    """
    old, new = str(tmp).encode(), str(target).encode()
    scripts = tmp / ("Scripts" if os.name == "nt" else "bin")
    for path in [*scripts.iterdir(), tmp / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
            continue
        data = path.read_bytes()
        if old in data:
            path.write_bytes(data.replace(old, new))


def _swap_into_place(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    backup = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(backup, ignore_errors=True)
    os.rename(target, backup)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)

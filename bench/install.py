"""Disk and time of torch package venvs: the client's installer (uv, one wheel cache hard-linked
into every venv) side by side with `python -m venv` + `pip install` of the same requirements.

Three requirement sets that all pin torch==2.13.0 but differ in their other requirements (so the
client's sharing of venvs with *identical* requirements does not hide the result) are installed
one after the other, each into a new venv, by both ways:

* cvflow: ``cvflow.install.build_venv``, what ``cvflow install`` runs for each package version
  (uv ``--link-mode hardlink``, its cache in the same temporary folder, the user's pip
  configuration passed on to uv), with the venvs folder to share from;
* pip: ``python -m venv`` then that venv's ``pip install``, with its own ``PIP_CACHE_DIR``.

Disk added by a venv counts the bytes of inodes that did not exist before it (in the venvs and
in the installer's cache), each once: a hard link into the cache costs nothing, a copy costs its
size. Warm install: one more venv of the first set with every cache warm (for the client without
the identical-requirements sharing, so uv really installs). Targets: the second and third torch
package add < 50 MB each, and a warm install takes < 5 s. Needs torch 2.13.0's CPU wheel where
pip finds it (this machine's pip.conf has ``find-links = /opt/wheels``) and the other wheels
from the configured index; about 2.5 minutes on two idle CPUs.

    .venv/bin/python bench/install.py [--dir PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Quiet, report, verdict, workdir  # noqa: E402

from cvflow.install import build_venv, venv_python  # noqa: E402
from cvflow.install.venv import find_uv  # noqa: E402

TORCH = "torch==2.13.0"
SETS = [[TORCH, "numpy>=1.24"], [TORCH, "pillow>=10"], [TORCH, "safetensors>=0.4", "numpy>=1.24"]]
DISK_TARGET_MB = 50
WARM_TARGET_S = 5.0
MB = 1_000_000


def inodes(*roots: Path) -> dict[tuple[int, int], int]:
    """Every regular file's (device, inode) under ``roots`` and its size."""
    out: dict[tuple[int, int], int] = {}
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                try:
                    st = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                if not os.path.islink(os.path.join(folder, name)):
                    out[(st.st_dev, st.st_ino)] = st.st_size
    return out


def added(before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]) -> int:
    return sum(size for key, size in after.items() if key not in before)


def timed(step: Callable[[], None]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def cvflow_way(base: Path) -> tuple[list[int], float]:
    venvs, cache = base / "venvs", base / "uv-cache"
    os.environ.pop("UV_CACHE_DIR", None)
    sizes = []
    for i, reqs in enumerate(SETS):
        before = inodes(venvs, cache)
        build_venv(venvs / "bench" / f"torch-{i}" / "1.0.0", [], reqs, offline=False, label=f"set {i}",
                   share_from=venvs, cache_dir=cache)
        sizes.append(added(before, inodes(venvs, cache)))
        print(f"cvflow: set {i} added {sizes[-1] / MB:.1f} MB", file=sys.stderr, flush=True)
    warm = timed(lambda: build_venv(venvs / "bench" / "warm" / "1.0.0", [], SETS[0], offline=False,
                                    label="warm", share_from=None, cache_dir=cache))
    return sizes, warm


def pip_way(base: Path) -> tuple[list[int], float]:
    venvs, cache = base / "venvs", base / "pip-cache"
    env = {**os.environ, "PIP_CACHE_DIR": str(cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    env.pop("VIRTUAL_ENV", None)

    def install(venv: Path, reqs: list[str]) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
        subprocess.run([str(venv_python(venv)), "-m", "pip", "install", "--quiet", *reqs], check=True, env=env)

    sizes = []
    for i, reqs in enumerate(SETS):
        before = inodes(venvs, cache)
        install(venvs / f"torch-{i}", reqs)
        sizes.append(added(before, inodes(venvs, cache)))
        print(f"pip: set {i} added {sizes[-1] / MB:.1f} MB", file=sys.stderr, flush=True)
    warm = timed(lambda: install(venvs / "warm", SETS[0]))
    return sizes, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", help="Where the temporary venvs and caches go (one file system) [default: TMPDIR].")
    args = parser.parse_args()
    if find_uv() is None:
        sys.exit("no uv binary: install the client (pip install -e client), which depends on uv")
    quiet = Quiet()
    with workdir("install", args.dir) as base:
        ours = cvflow_way(base / "cvflow")
        peer = pip_way(base / "pip")
    rows = []
    for label, (sizes, warm) in (("cvflow (uv, shared hard-linked wheel cache)", ours),
                                 ("python -m venv + pip install (pip's warm cache)", peer)):
        later_ok = all(s < DISK_TARGET_MB * MB for s in sizes[1:])
        judged = f"disk {verdict(later_ok)}, time {verdict(warm < WARM_TARGET_S)}"
        rows.append([label, *(f"{s / MB:.1f} MB" for s in sizes), f"{warm:.1f} s",
                     judged if label.startswith("cvflow") else "(the peer)"])
    report("install", "Torch package venvs: disk added and warm install time",
           ["installer", "1st torch package", "2nd", "3rd", "warm install", f"2nd/3rd < {DISK_TARGET_MB} MB,"
            f" warm < {WARM_TARGET_S:g} s"], rows,
           notes=[f"Requirement sets: {'; '.join(', '.join(s) for s in SETS)}. Disk counts new inodes only"
                  " (venvs and the installer's cache); the 1st package's figure includes filling the cache.",
                  "The targets apply to cvflow; the pip row is the peer.", quiet.note()])


if __name__ == "__main__":
    main()

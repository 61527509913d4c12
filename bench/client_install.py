"""`cvflow install` of a package with four pure-Python requirements, side by side with
`python -m venv X && X/bin/pip install -r reqs.txt` of the same requirements.

The package is published once with `cvflow publish` to `cvflow-hub serve` on loopback; its
solver imports all four requirements. Each way of installing runs twice in a row against its
own empty cache (PIP_CACHE_DIR, and UV_CACHE_DIR for `cvflow install`, whose installer is
uv): cold (wheels come from PyPI), then warm (from the cache the cold run filled). Every run starts from a fresh CVFLOW_HOME or venv folder. Rounds repeat
that with new caches; each row keeps its best round. Target: `cvflow install` <= 0.5x the time
of venv + pip, cold and warm. A third way (`venv --without-pip` + this venv's pip with `--python`, what the client falls
back to when uv cannot run) shows pip's own share.
Needs PyPI (or the index pip is configured with).

    .venv/bin/python bench/client_install.py [--rounds 2] [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Procs, Quiet, free_port, hub_uvicorn_argv, prepare_hub, report, verdict, workdir  # noqa: E402
from client_pull import cvflow_run  # noqa: E402

TARGET = 0.5
ROUNDS = 2
NAME = "bench/four-reqs"
REQUIREMENTS = ["six>=1.16", "idna>=3.4", "packaging>=23", "attrs>=23.1"]
MODULES = ["six", "idna", "packaging", "attrs"]
SOLVER = "".join(f"import {m}\n" for m in MODULES) + "\n\nclass Detector:\n    def infer(self, image):\n        return []\n"
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def manifest_text() -> str:
    reqs = ", ".join(f'"{r}"' for r in REQUIREMENTS)
    return (f'[package]\nname = "{NAME}"\nversion = "1.0.0"\ndescription = "four pure-Python requirements"\n'
            f'task = "detection"\nrequirements = [{reqs}]\n\n[[solvers]]\nname = "detect"\nclass = "solver:Detector"\n')


def run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                          timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")


def imports(python: Path, code: str) -> None:
    """The venv's own python must run ``code`` (isolated: no PYTHONPATH, no user site)."""
    run([str(python), "-I", "-c", code], {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds over all rows; each keeps its best")
    parser.add_argument("--dir", help="where the hub, caches and venvs go (default: the system temp dir)")
    args = parser.parse_args()
    quiet = Quiet()

    with workdir("client-install", args.dir) as tmp, Procs(tmp) as procs:
        setup = prepare_hub(tmp / "hub")
        port = free_port()
        hub = f"http://127.0.0.1:{port}"
        procs.serve("hub", hub_uvicorn_argv(setup, port), hub + "/api/v1/openapi.json")
        pkg = tmp / "package"
        pkg.mkdir()
        (pkg / "cvflow.toml").write_text(manifest_text())
        (pkg / "solver.py").write_text(SOLVER)
        cvflow_run(tmp / "publisher", hub, "publish", str(pkg), "-q", token=setup.token)
        reqs = tmp / "reqs.txt"
        reqs.write_text("\n".join(REQUIREMENTS) + "\n")
        check = "; ".join(f"import {m}" for m in MODULES)

        def cvflow_install(target: Path, cache: Path) -> None:
            out = cvflow_run(target, hub, "install", NAME, "--json", "--lock-file", str(target / "cvflow.lock"),
                             extra_env={"PIP_CACHE_DIR": str(cache), "UV_CACHE_DIR": str(cache / "uv"), **PIP_ENV})
            venv = Path(json.loads(out.stdout)["packages"][0]["venv"])
            imports(venv / "bin" / "python", "import solver")  # the package's solver imports all four

        def venv_pip(target: Path, cache: Path) -> None:
            env = {"PIP_CACHE_DIR": str(cache), **PIP_ENV}
            run([sys.executable, "-m", "venv", str(target)], env)
            run([str(target / "bin" / "pip"), "install", "-q", "-r", str(reqs)], env)
            imports(target / "bin" / "python", check)

        def bare_pip(target: Path, cache: Path) -> None:
            env = {"PIP_CACHE_DIR": str(cache), **PIP_ENV}
            run([sys.executable, "-m", "venv", "--without-pip", str(target)], env)
            run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "-q", "-r",
                 str(reqs)], env)
            imports(target / "bin" / "python", check)

        ways: dict[str, Callable[[Path, Path], None]] = {"cvflow": cvflow_install, "venv-pip": venv_pip,
                                                         "bare-pip": bare_pip}
        best: dict[tuple[str, str], float] = {}
        for n in range(args.rounds):
            print(f"round {n + 1} of {args.rounds}...", flush=True)
            for key, way in ways.items():
                cache = tmp / f"pip-cache-{key}-{n}"
                for state in ("cold", "warm"):
                    target = tmp / f"{key}-{state}-{n}"
                    start = time.perf_counter()
                    way(target, cache)
                    seconds = time.perf_counter() - start
                    best[(key, state)] = min(best.get((key, state), seconds), seconds)
                    shutil.rmtree(target, ignore_errors=True)
                shutil.rmtree(cache, ignore_errors=True)

    rows = []
    for state in ("cold", "warm"):
        base = best[("venv-pip", state)]
        for key, label, target in (
            ("venv-pip", "`python -m venv X && X/bin/pip install -r reqs.txt` (the peer)", False),
            ("cvflow", "**`cvflow install`** (fresh CVFLOW_HOME)", True),
            ("bare-pip", "`python -m venv --without-pip X` + `pip --python X/bin/python install -r`", False),
        ):
            ratio = best[(key, state)] / base
            rows.append([state, label, f"{best[(key, state)]:.2f}", f"{ratio:.2f}",
                         f"<= {TARGET}x" if target else "", verdict(ratio <= TARGET) if target else ""])
    pip_version = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                                 text=True).stdout.split(" from ")[0]
    bundled = subprocess.run([sys.executable, "-c", "import ensurepip; print(ensurepip.version())"],
                             capture_output=True, text=True).stdout.strip()
    installer = "uv (a dependency of the client), hard-linking from its cache"
    notes = [
        f"Requirements: {', '.join(f'`{r}`' for r in REQUIREMENTS)} (wheels from the configured index). "
        f"`cvflow install` resolves `{NAME}` on `cvflow-hub serve` (loopback), pulls it, writes `cvflow.lock`, "
        f"and builds the venv with {installer}; its time includes the `cvflow` process start. "
        f"The peer's pip is the one `ensurepip` puts in every new venv (pip {bundled}); the third row drives this "
        f"venv's {pip_version} with `--python`.",
        "",
        f"Cold: an empty cache (PIP_CACHE_DIR; for cvflow, UV_CACHE_DIR); warm: the cache the cold run just filled. Every way gets its own cache, "
        f"and PIP_DISABLE_PIP_VERSION_CHECK=1 (cvflow sets it itself). {args.rounds} rounds, best kept. After "
        "each run the venv's own python (`-I`) must import all four (for cvflow: the package's solver, which "
        "imports them). Cold times include PyPI's latency, so they move with the network.",
        "",
        quiet.note(),
    ]
    report("client_install", "`cvflow install` vs venv + pip (seconds)",
           ["pip cache", "how", "best s", "vs venv + pip", "target", "result"], rows, notes)


if __name__ == "__main__":
    main()

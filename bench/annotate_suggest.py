"""`cvflow annotate suggest` (the suggestion worker) against direct calls to the same runner.

A copy of examples/face-utility (OpenCV's Haar cascade, renamed ``bench/face-utility``) is
published with `cvflow publish` to `cvflow-hub serve` on loopback, installed into a CVFLOW_HOME
and started once with `cvflow run`; both rows call that one runner. The images are the
astronaut (the package's sample) shifted, mirrored and speckled into ``--images`` distinct
512x512 JPEGs, pushed to a project with `cvflow annotate push`.

| row | what it does |
| --- | --- |
| direct | this process posts every image's bytes to the runner (``image/jpeg`` body, as the worker does), ``--concurrency`` requests in flight, in groups of ``--batch``: the runner alone, the peer |
| worker | `cvflow annotate suggest PROJECT --batch B --concurrency C` in a child process, which finds the runner running and uses it: claims, fetches each image from the hub, calls the runner, maps the output, posts the suggestions. Items/s over its suggesting time (from its summary); end to end (with the process's start-up) too. **Target: >= 0.7x direct.** |

CPU seconds per item count every process: the caller (this process, or the worker), the runner
and, for the worker, the hub. Each round pushes the images to a new project, so every row does
the same work in every round; each row keeps its best round.

    .venv/bin/python bench/annotate_suggest.py [--images 64] [--batch 16] [--concurrency 4] [--rounds 2]

Needs opencv-python-headless (the package's requirement) from PyPI or uv's cache the first time.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Procs, Quiet, free_port, hub_uvicorn_argv, prepare_hub, report, tree_cpu, verdict, workdir  # noqa: E402
from client_pull import cvflow_run  # noqa: E402

TARGET = 0.7
EXAMPLE = ROOT / "examples" / "face-utility"
NAME = "bench/face-utility"


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 512x512 JPEGs: the astronaut shifted, mirrored and speckled."""
    base = np.asarray(Image.open(EXAMPLE / "samples" / "astronaut.jpg").convert("RGB"))
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        shifted = np.roll(base, (int(rng.integers(-40, 40)), int(rng.integers(-40, 40))), axis=(0, 1))
        if i % 2:
            shifted = shifted[:, ::-1]
        speckled = np.clip(shifted.astype(np.int16) + rng.integers(-6, 7, shifted.shape), 0, 255).astype(np.uint8)
        path = folder / f"astronaut-{i:04d}.jpg"
        Image.fromarray(speckled).save(path, quality=90)
        paths.append(path)
    return paths


def package_copy(target: Path) -> Path:
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = target / "cvflow.toml"
    manifest.write_text(manifest.read_text().replace('name = "demo/face-utility"', f'name = "{NAME}"', 1))
    return target


def direct(url: str, images: list[bytes], batch: int, concurrency: int) -> tuple[float, float, int]:
    """Post every image to the runner, ``concurrency`` at a time, ``batch`` per group: (seconds,
    this process's CPU seconds, faces found)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    faces = 0
    with httpx.Client(timeout=300, trust_env=False, limits=limits) as http, \
            cf.ThreadPoolExecutor(concurrency) as pool:
        def call(data: bytes) -> int:
            response = http.post(url, content=data, headers={"content-type": "image/jpeg"})
            response.raise_for_status()
            return len(response.json()["faces"])

        cpu0, start = time.process_time(), time.perf_counter()
        for i in range(0, len(images), batch):
            faces += sum(pool.map(call, images[i : i + batch]))
        return time.perf_counter() - start, time.process_time() - cpu0, faces


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images per round")
    parser.add_argument("--batch", type=int, default=16, help="items per claim, and per group of direct calls")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight to the runner")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each row keeps its best")
    parser.add_argument("--dir", help="where the hub, home and images go (default: the system temp dir)")
    args = parser.parse_args()
    quiet = Quiet()

    with workdir("annotate-suggest", args.dir) as tmp, Procs(tmp) as procs:
        setup = prepare_hub(tmp / "hub")
        port = free_port()
        hub_url = f"http://127.0.0.1:{port}"
        hub = procs.serve("hub", hub_uvicorn_argv(setup, port), hub_url + "/api/v1/openapi.json")
        home = tmp / "home"

        def cvflow(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
            return cvflow_run(home, hub_url, *argv, token=setup.token, timeout=timeout)

        cvflow("publish", str(package_copy(tmp / "package")))
        photos = make_images(tmp / "photos", args.images)
        data = [p.read_bytes() for p in photos]
        record = json.loads(cvflow("run", f"{NAME}:detect", "--json").stdout)
        runner = int(record["pid"])
        url = f"{record['url']}/solvers/detect/infer"
        direct(url, data[: args.batch], args.batch, args.concurrency)  # warm-up: first calls load lazily

        direct_rows, worker_rows = [], []
        for n in range(args.rounds):
            r0 = tree_cpu(runner)
            seconds, cpu, faces = direct(url, data, args.batch, args.concurrency)
            direct_rows.append({"seconds": seconds, "cpu": cpu + tree_cpu(runner) - r0, "faces": faces})

            project = f"bench/faces-{n}"
            cvflow("annotate", "create", project, "--task", "detection", "--classes", "face",
                   "--suggest", NAME, "--solver", "detect")
            cvflow("annotate", "push", project, str(tmp / "photos"))
            r0, h0, c0 = tree_cpu(runner), tree_cpu(hub.pid), children_cpu()
            start = time.perf_counter()
            done = cvflow("annotate", "suggest", project, "--batch", str(args.batch),
                          "--concurrency", str(args.concurrency), "--json")
            wall = time.perf_counter() - start
            summary = json.loads(done.stdout)
            if summary["items"] != args.images or "using the runner" not in done.stderr:
                sys.exit(f"the worker did not suggest every item with the running runner:\n{done.stderr[-2000:]}")
            cpu = children_cpu() - c0 + tree_cpu(runner) - r0 + tree_cpu(hub.pid) - h0
            worker_rows.append({"seconds": summary["suggest_seconds"], "wall": wall, "cpu": cpu,
                                "suggestions": summary["suggestions"]})
        cvflow("stop", "--all")

    d = min(direct_rows, key=lambda r: r["seconds"])
    w = min(worker_rows, key=lambda r: r["seconds"])
    rate_d, rate_w = args.images / d["seconds"], args.images / w["seconds"]
    ratio = rate_w / rate_d
    rows = [
        ["direct calls to the runner", f"{rate_d:.1f}", f"{d['seconds']:.2f}", f"{d['cpu'] / args.images * 1000:.1f}",
         f"{d['faces']} faces"],
        ["`cvflow annotate suggest`", f"{rate_w:.1f}", f"{w['seconds']:.2f}", f"{w['cpu'] / args.images * 1000:.1f}",
         f"{ratio:.2f}x direct (target >= {TARGET}): **{verdict(ratio >= TARGET)}**; {w['suggestions']} suggestions"],
        ["... end to end (process start-up included)", f"{args.images / w['wall']:.1f}", f"{w['wall']:.2f}", "", ""],
    ]
    notes = [
        f"{args.images} distinct 512x512 JPEGs (the astronaut shifted, mirrored and speckled), batch {args.batch},"
        f" {args.concurrency} requests in flight to one runner of {NAME} (OpenCV Haar cascade); best of"
        f" {args.rounds} rounds. CPU ms per item: the caller, the runner and (worker) the hub together.",
        quiet.note(),
    ]
    report("annotate_suggest", "Suggestion worker vs direct calls to the runner",
           ["row", "items/s", "seconds", "CPU ms/item", "note"], rows, notes)


if __name__ == "__main__":
    main()

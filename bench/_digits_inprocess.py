"""The in-process side of ``runner_digits.py``; runs with the package venv's Python.

    VENV/bin/python -I bench/_digits_inprocess.py CVFLOW_DIR PACKAGE_DIR IMAGES_JSON SECONDS

Loads the solver exactly as the runner does (``cvflow.runner.loader``), then calls it
directly: each call decodes the PNG into a ``cvflow.solver.Image`` and runs ``infer``,
which is what a program that imports the solver would do. Prints one JSON object.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import statistics
import sys
import threading
import time
from pathlib import Path


def _install_cvflow(cvflow_dir: Path) -> None:
    spec = importlib.util.spec_from_file_location("_boot", cvflow_dir / "runner" / "_boot.py")
    assert spec is not None and spec.loader is not None
    boot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(boot)
    boot.install_cvflow()


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000}


def main() -> None:
    cvflow_dir, package_dir = Path(sys.argv[1]), Path(sys.argv[2])
    images_json, seconds = sys.argv[3], float(sys.argv[4])
    _install_cvflow(cvflow_dir)
    from cvflow.runner.loader import load_solver, read_package
    from cvflow.solver import Image

    solver = load_solver(read_package(package_dir), "classify", device="cpu", settings={}).instance
    images = [base64.b64decode(s) for s in json.loads(Path(images_json).read_text())]

    def call(data: bytes) -> None:
        solver.infer(image=Image.from_bytes(data), top_k=3)

    for data in images[:200]:  # warm-up
        call(data)
    out = {}

    # Concurrency 1: one caller, one call after another.
    cpu = time.process_time()
    latencies, n, end = [], 0, time.perf_counter() + seconds
    while (start := time.perf_counter()) < end:
        call(images[n % len(images)])
        latencies.append(time.perf_counter() - start)
        n += 1
    out["c1"] = {"rps": n / seconds, "cpu_ms": (time.process_time() - cpu) * 1000 / n, **_percentiles(latencies)}

    # Concurrency 16: sixteen threads calling the same solver object.
    lock, all_latencies = threading.Lock(), []
    end = time.perf_counter() + seconds

    def worker(offset: int) -> None:
        mine, i = [], offset
        while (start := time.perf_counter()) < end:
            call(images[i % len(images)])
            mine.append(time.perf_counter() - start)
            i += 16
        with lock:
            all_latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    t0, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["c16"] = {"rps": len(all_latencies) / (time.perf_counter() - t0),
                  "cpu_ms": (time.process_time() - cpu) * 1000 / len(all_latencies), **_percentiles(all_latencies)}

    # Batches of 16 through infer_batch: the ceiling batching can reach.
    cpu = time.process_time()
    latencies, n, end = [], 0, time.perf_counter() + seconds
    while (start := time.perf_counter()) < end:
        batch = [{"image": Image.from_bytes(images[(n + k) % len(images)]), "top_k": 3} for k in range(16)]
        solver.infer_batch(batch)
        latencies.append(time.perf_counter() - start)
        n += 16
    out["batch16"] = {"rps": n / seconds, "cpu_ms": (time.process_time() - cpu) * 1000 / n, **_percentiles(latencies)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

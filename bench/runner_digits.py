"""demo/digits-lenet over REST (``cvflow run``'s runner) against calling its solver in-process.

Both sides get CPU 1 and one torch thread (``OMP_NUM_THREADS=1``); wrk runs on CPU 0 and
posts the 360 held-out digits as 32x32 PNGs in multipart bodies, as ``curl -F`` does. The
in-process side decodes the same PNG bytes into a ``cvflow.solver.Image`` and calls
``infer`` (one caller, then sixteen threads), and also ``infer_batch`` on 16 images at a
time, the ceiling that batching can reach. Before timing, every held-out digit goes through
REST once and the accuracy must be >= 0.95.

The same digits also go over KServe v2 (``/v2/models/classify/infer``): first through
tritonclient itself (binary tensors, then JSON), whose accuracy must equal REST's, then wrk
posts the bodies tritonclient builds, beside the native multipart route at 1 and 16 connections.

Targets: REST throughput at 16 connections (with batching) >= 1.0x in-process with 16
threads; REST p50 at 1 connection no more than 3 ms above in-process p50 at 1 caller.

Every row also gives CPU milliseconds per request (the runner process's user and system time
over the measured seconds, or the in-process side's ``time.process_time``), which moves less
than requests/s when the machine is busy, and the runner rows the mean batch the solver ran.

    .venv/bin/python bench/runner_digits.py [--seconds 5] [--rounds 2] [--venv PATH]

The package venv (torch 2.13.0 CPU, about a minute to build) is kept in
``bench/results/.venv-digits-lenet`` and reused.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import struct
import subprocess
import sys
import tomllib
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH, RESULTS, ROOT, Quiet, cpus, report, tool, verdict, workdir  # noqa: E402

import cvflow  # noqa: E402
from cvflow.config import Config  # noqa: E402
from cvflow.install import InstalledPackage, build_venv, venv_python  # noqa: E402
from cvflow.runtime import supervisor  # noqa: E402
from cvflow.runtime.state import RunnerRecord  # noqa: E402

EXAMPLE = ROOT / "examples" / "digits-lenet"
THROUGHPUT_TARGET = 1.0
OVERHEAD_TARGET_MS = 3.0
BOUNDARY = "cvflowbenchboundary"


def png(pixels: list[int], scale: int = 4) -> bytes:
    """An 8x8 digit (0..16 ink) as a dark-on-light grey PNG, each pixel a ``scale``-square block."""
    side = 8 * scale
    rows = b""
    for y in range(side):
        row = bytes(255 - round(pixels[(y // scale) * 8 + x // scale] * 255 / 16) for x in range(side))
        rows += b"\x00" + row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def multipart(image: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"digit.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def ensure_venv(venv: Path) -> None:
    python = venv_python(venv)
    if python.exists() and subprocess.run([str(python), "-c", "import torch, PIL, safetensors, numpy"],
                                          capture_output=True).returncode == 0:
        return
    requirements = tomllib.loads((EXAMPLE / "cvflow.toml").read_text())["package"]["requirements"]
    print(f"building {venv} with {', '.join(requirements)} (about a minute)", file=sys.stderr, flush=True)
    build_venv(venv, [str(EXAMPLE)], requirements, offline=False, label="digits-lenet")


def pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto ``cpu`` (threads it starts later inherit it)."""
    if cpu >= (os.cpu_count() or 1):
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except OSError:
            pass


def lua_script(path: Path, bodies: list[bytes], route: str = "/solvers/classify/infer",
               headers: list[dict[str, str]] | None = None) -> None:
    """A wrk script posting ``bodies`` in turn to ``route``, each with its headers (multipart by default)."""
    def quote(data: bytes) -> str:
        return '"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in data) + '"'

    def table(h: dict[str, str]) -> str:
        return "{" + ", ".join(f"[{quote(k.encode())}] = {quote(v.encode())}" for k, v in h.items()) + "}"

    each = headers or [{"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}] * len(bodies)
    path.write_text(
        "local bodies = {\n" + ",\n".join(quote(b) for b in bodies) + "\n}\n"
        "local headers = {\n" + ",\n".join(table(h) for h in each) + "\n}\n"
        "local i = 0\n"
        "request = function()\n  i = i % #bodies + 1\n"
        f'  return wrk.format("POST", "{route}", headers[i], bodies[i])\nend\n')


def kserve_bodies(images: list[bytes], *, binary: bool) -> tuple[list[bytes], list[dict[str, str]]]:
    """The bodies tritonclient posts for one digit each (its own encoder): the binary tensor
    extension (its default), or JSON with the PNG as base64 and the result asked as JSON."""
    import numpy as np
    import tritonclient.http as triton

    bodies, headers = [], []
    for image in images:
        given = triton.InferInput("image", [1], "BYTES")
        given.set_data_from_numpy(np.array([image if binary else base64.b64encode(image)], dtype=np.object_),
                                  binary_data=binary)
        outputs = None if binary else [triton.InferRequestedOutput("result", binary_data=False)]
        body, json_size = triton.InferenceServerClient.generate_request_body([given], outputs=outputs)
        bodies.append(body)
        headers.append({"Content-Type": "application/octet-stream" if binary else "application/json",
                        **({"Inference-Header-Content-Length": str(json_size)} if json_size is not None else {})})
    return bodies, headers


def check_kserve(record: RunnerRecord, images: list[bytes], labels: list[int], *, binary: bool) -> float:
    """The accuracy through tritonclient itself (binary tensors or JSON), on every held-out digit."""
    import numpy as np
    import tritonclient.http as triton

    client = triton.InferenceServerClient(f"127.0.0.1:{record.port}", network_timeout=30)
    right = 0
    for image, label in zip(images, labels, strict=True):
        given = triton.InferInput("image", [1], "BYTES")
        given.set_data_from_numpy(np.array([image if binary else base64.b64encode(image)], dtype=np.object_),
                                  binary_data=binary)
        outputs = [triton.InferRequestedOutput("result", binary_data=binary)]
        answer = client.infer("classify", [given], outputs=outputs).as_numpy("result")
        right += json.loads(answer[0])["digit"] == label
    client.close()
    return right / len(images)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid``, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_post(url: str, script: Path, connections: int, seconds: int,
             record: RunnerRecord | None = None) -> dict[str, float]:
    """wrk's rate and latency; with ``record``, also the runner's CPU ms per request and the mean
    batch its solver ran, both over the measured seconds only (not the warm-up)."""
    argv = [*cpus(0), tool("wrk"), "-t1", f"-c{connections}", "--latency", "--timeout", "5s", "-s", str(script)]
    subprocess.run([*argv, "-d1s", url], check=True, capture_output=True)  # warm-up
    if record is not None:
        stats, cpu = runner_stats(record), cpu_seconds(record.pid)
    out = subprocess.run([*argv, f"-d{seconds}s", url], check=True, capture_output=True, text=True).stdout
    extra: dict[str, float] = {}
    if record is not None:
        cpu = cpu_seconds(record.pid) - cpu
        done = runner_stats(record)
        sizes = {int(k): v - stats["batch_sizes"].get(k, 0)  # type: ignore[attr-defined]
                 for k, v in done["batch_sizes"].items()}  # type: ignore[attr-defined]
        calls = sum(k * v for k, v in sizes.items())
        extra = {"cpu_ms": cpu * 1000 / max(1, calls), "mean_batch": calls / max(1, sum(sizes.values()))}

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        assert m, out
        return float(m[1]) * _UNITS[m[2]]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise RuntimeError(f"{bad[1]} requests failed:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    return {"rps": rps, "p50_ms": ms("50"), "p99_ms": ms("99"), **extra}


def check_accuracy(record: RunnerRecord, images: list[bytes], labels: list[int]) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", record.port, timeout=30)
    right = 0
    for image, label in zip(images, labels, strict=True):
        conn.request("POST", "/solvers/classify/infer", body=multipart(image),
                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        response = conn.getresponse()
        body = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {body}")
        right += body["digit"] == label
    conn.close()
    return right / len(images)


def runner_stats(record: RunnerRecord) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", record.port, timeout=10)
    conn.request("GET", "/")
    stats = json.loads(conn.getresponse().read())["solvers"][0]["stats"]
    conn.close()
    return stats  # type: ignore[no-any-return]


def best(rounds: list[dict[str, float]]) -> dict[str, float]:
    return max(rounds, key=lambda r: r["rps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="duration of each measurement and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each row keeps its best")
    parser.add_argument("--venv", type=Path, default=RESULTS / ".venv-digits-lenet")
    args = parser.parse_args()

    quiet = Quiet()
    ensure_venv(args.venv)
    holdout = json.loads((EXAMPLE / "eval" / "holdout.json").read_text())
    images = [png(p) for p in holdout["images"]]
    python = venv_python(args.venv)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cvflow_dir = Path(cvflow.__file__).resolve().parent
    manifest = tomllib.loads((EXAMPLE / "cvflow.toml").read_text())["package"]

    with workdir("runner-digits") as wd:
        images_json = wd / "images.json"
        images_json.write_text(json.dumps([base64.b64encode(i).decode() for i in images]))
        script = wd / "post.lua"
        lua_script(script, [multipart(i) for i in images])
        v2 = "/v2/models/classify/infer"
        v2_binary, v2_json = wd / "v2-binary.lua", wd / "v2-json.lua"
        for lua, binary in ((v2_binary, True), (v2_json, False)):
            bodies, headers = kserve_bodies(images, binary=binary)
            lua_script(lua, bodies, v2, headers)

        inproc = []
        for _ in range(args.rounds):
            done = subprocess.run([*cpus(1), str(python), "-I", str(BENCH / "_digits_inprocess.py"), str(cvflow_dir),
                                   str(EXAMPLE), str(images_json), str(args.seconds)],
                                  capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                sys.exit(f"the in-process run failed:\n{done.stderr}")
            inproc.append(json.loads(done.stdout.strip().splitlines()[-1]))

        config = Config(home=wd / "home", hub="http://127.0.0.1:9", token=None)
        installed = InstalledPackage(name=manifest["name"], version=manifest["version"], venv=str(args.venv),
                                     snapshot=str(EXAMPLE))
        record = supervisor.start(config, installed, ["classify"],
                                  supervisor.RunOptions(env={"OMP_NUM_THREADS": "1"}, ready_timeout=180))
        try:
            pin(record.pid, 1)
            accuracy = check_accuracy(record, images, holdout["labels"])
            if accuracy < 0.95:
                sys.exit(f"accuracy through REST is {accuracy:.4f}, below 0.95")
            url = record.url
            rest1 = [wrk_post(url, script, 1, args.seconds, record) for _ in range(args.rounds)]
            rest16 = [wrk_post(url, script, 16, args.seconds, record) for _ in range(args.rounds)]
            for binary in (True, False):
                v2_accuracy = check_kserve(record, images, holdout["labels"], binary=binary)
                if v2_accuracy != accuracy:
                    sys.exit(f"accuracy through KServe v2 (binary={binary}) is {v2_accuracy:.4f}, not {accuracy:.4f}")
            kserve1 = [wrk_post(url, v2_binary, 1, args.seconds, record) for _ in range(args.rounds)]
            kserve16 = [wrk_post(url, v2_binary, 16, args.seconds, record) for _ in range(args.rounds)]
            kserve16_json = [wrk_post(url, v2_json, 16, args.seconds, record) for _ in range(args.rounds)]
        finally:
            supervisor.stop(config, record)

    c1 = best([r["c1"] for r in inproc])
    c16 = best([r["c16"] for r in inproc])
    b16 = best([r["batch16"] for r in inproc])
    r1, r16 = best(rest1), best(rest16)
    k1, k16, k16_json = best(kserve1), best(kserve16), best(kserve16_json)
    ratio = r16["rps"] / c16["rps"]
    overhead = r1["p50_ms"] - c1["p50_ms"]

    def row(name: str, r: dict[str, float], note: str = "") -> list[object]:
        batch = f"{r['mean_batch']:.1f}" if "mean_batch" in r else ""
        return [name, f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['cpu_ms']:.3f}", batch, note]

    rows = [
        row("in-process, 1 caller", c1),
        row("in-process, 16 threads", c16),
        row("in-process, `infer_batch` of 16", b16, "the ceiling (p50/p99 per batch, CPU per image)"),
        row("REST, 1 connection", r1, f"p50 overhead {overhead:+.2f} ms (target ≤ {OVERHEAD_TARGET_MS:g}):"
            f" **{verdict(overhead <= OVERHEAD_TARGET_MS)}**"),
        row("REST, 16 connections, batched", r16, f"{ratio:.2f}× in-process 16 threads (target ≥ {THROUGHPUT_TARGET}):"
            f" **{verdict(ratio >= THROUGHPUT_TARGET)}**; CPU per request"
            f" {r16['cpu_ms'] / c16['cpu_ms']:.2f}× in-process 16 threads'"),
        row("KServe v2, binary tensors, 1 connection", k1, f"p50 {k1['p50_ms'] - r1['p50_ms']:+.2f} ms vs REST"),
        row("KServe v2, binary tensors, 16 connections", k16, f"{k16['rps'] / r16['rps']:.2f}× REST multipart"),
        row("KServe v2, JSON (base64), 16 connections", k16_json, f"{k16_json['rps'] / r16['rps']:.2f}× REST multipart"),
    ]
    notes = [
        f"Accuracy through REST on the 360 held-out digits: {accuracy:.4f}. Runner and in-process calls on CPU 1"
        f" with OMP_NUM_THREADS=1; wrk -t1 on CPU 0, {args.seconds} s after a 1 s warm-up, best of {args.rounds}"
        " rounds. Each call decodes a 32x32 PNG (multipart over REST) and returns the top 3 guesses.",
        "CPU ms/req: the runner process's CPU time (all threads) over a row's measured seconds per request"
        " answered, or the in-process side's per call; mean batch: the calls per `infer_batch` the runner ran"
        " in those seconds (the solver's manifest allows 32, waiting at most 2 ms for a batch to fill).",
        "KServe v2 rows: wrk posts the bodies tritonclient builds (`generate_request_body`): the binary tensor"
        " extension, its default, with the PNG as it is and the result as binary data; or JSON with the PNG as"
        f" base64. Through tritonclient itself, both give the REST accuracy ({accuracy:.4f}).",
        quiet.note(),
    ]
    report("runner_digits", "demo/digits-lenet: REST runner vs in-process",
           ["row", "requests/s", "p50 ms", "p99 ms", "CPU ms/req", "mean batch", "note"], rows, notes)


if __name__ == "__main__":
    main()

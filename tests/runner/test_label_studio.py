"""The runner as a Label Studio ML backend (``--label-studio``), against a real Label Studio.

The session fixture installs ``label-studio`` 1.23 (with its ``label-studio-sdk``) into its own
venv with uv, through the session's shared uv cache and pip's index configuration, and starts it
on a loopback port with SQLite in a temporary data directory. A second small venv (numpy,
Pillow, safetensors) runs demo/digits-logreg (a classifier: ``choices``) and a tiny detection
package written here (``rectanglelabels``) under ``python -I .../_boot.py``, the way ``cvflow
run`` starts a runner, so the Label Studio routes are tested in a package venv that has none of
the client's libraries. Measured on this machine (2 loaded cores, warm uv cache): about 75 s in
all, of which about 10 s install Label Studio, about 45 s are its first start (migrations), and
5-7 s each test.

Label Studio 1.23 refuses loopback ML backends (and the webhook it adds for one) unless
``ML_BLOCK_LOCAL_IP=false`` and ``SSRF_PROTECTION_ENABLED=false``; the test sets both, as
docs/label-studio.md tells users running both on one machine to do. It also turns off Label
Studio's version check and analytics: nothing is fetched from the internet.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cvflow.install.pipconfig import uv_options
from tests.runner._images import EXAMPLES, ROOT, digit_png, holdout

pytestmark = pytest.mark.slow

DRIVE = Path(__file__).resolve().parent / "label_studio" / "drive.py"
BOOT = ROOT / "client" / "cvflow" / "runner" / "_boot.py"
CHOICES = """<View>
  <Image name="img" value="$image"/>
  <Choices name="digit" toName="img">
    {choices}
  </Choices>
</View>"""


def _uv_venv(path: Path, *requirements: str) -> Path:
    from uv import find_uv_bin

    options = uv_options()
    env = {**os.environ, **options.env}
    uv = find_uv_bin()
    if not (path / "bin" / "python").exists():
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(path)], check=True, env=env)
    args = list(options.args)
    if "--index-strategy" not in args:  # pip looks at every index, as uv's unsafe-best-match does
        args += ["--index-strategy", "unsafe-best-match"]
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(path / "bin" / "python"), *args,
                    *requirements], check=True, env=env)
    return path / "bin" / "python"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: the process exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer in {seconds} s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """A running Label Studio: its URL, an API token of its user, and its venv's Python."""
    root = tmp_path_factory.mktemp("label-studio")
    python = _uv_venv(root / "venv", "label-studio==1.23.*")
    token = secrets.token_hex(20)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(root / "data"), "ML_BLOCK_LOCAL_IP": "false",
           "SSRF_PROTECTION_ENABLED": "false", "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",
           "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
           "LABEL_STUDIO_HOST": url, "HOST": url, "DJANGO_DB": "sqlite", "NO_PROXY": "127.0.0.1,localhost"}
    log = root / "label-studio.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(python.parent / "label-studio"), "start", "--no-browser", "--port", str(port),
                                 "--internal-host", "127.0.0.1", "--username", "cvflow@example.com",
                                 "--password", "cvflow-test-password", "--user-token", token,
                                 "--enable-legacy-api-token"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        _wait(f"{url}/health", proc, log, 240)
        yield url, token, python
    finally:
        _stop(proc)


INK_PACKAGE = {
    "cvflow.toml": """[package]
name = "qa/ink-box"
version = "1.0.0"
[[solvers]]
name = "detect"
class = "ink_box:InkBox"
suggest = { kind = "boxes", bbox = "xyxy" }
""",
    # One box around the dark pixels, of class "ink" (the config's label is "Ink"), and a box of a
    # class the config lacks.
    "ink_box.py": """from cvflow.solver import Image


class InkBox:
    def infer(self, image: Image) -> dict:
        grey = image.to_numpy("L")
        ys, xs = (grey < 128).nonzero()
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        return {"boxes": [{"class": "ink", "bbox": box, "score": 0.875},
                          {"class": "paper", "bbox": [0, 0, 4, 4], "score": 0.5}]}
""",
}


def _serve(python: Path, package: Path, ls_url: str, token: str, root: Path) -> Iterator[str]:
    """The runner of ``package`` started as ``cvflow run`` starts it, with ``--label-studio``."""
    status, log = root / f"{package.name}.status.json", root / f"{package.name}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["LABEL_STUDIO_API_KEY"] = token
    with log.open("wb") as out:
        proc = subprocess.Popen([str(python), "-I", "-u", str(BOOT), str(package), "--port", "0",
                                 "--status-file", str(status), "--label-studio", ls_url],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while not status.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        if not status.exists():
            pytest.fail(f"the runner did not start:\n{log.read_text()[-4000:]}")
        url = f"http://127.0.0.1:{json.loads(status.read_text())['port']}"
        _wait(f"{url}/readyz", proc, log, 60)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def runner_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package-like venv: numpy, Pillow and safetensors, none of the client's libraries."""
    return _uv_venv(tmp_path_factory.mktemp("runner-venv") / "venv", "numpy>=1.24", "pillow>=10", "safetensors>=0.4")


@pytest.fixture(scope="session")
def digits_runner(tmp_path_factory: pytest.TempPathFactory, runner_python: Path,
                  label_studio: tuple[str, str, Path]) -> Iterator[str]:
    """demo/digits-logreg served with ``--label-studio``."""
    ls_url, token, _ = label_studio
    yield from _serve(runner_python, EXAMPLES / "digits-logreg", ls_url, token, tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def ink_runner(tmp_path_factory: pytest.TempPathFactory, runner_python: Path,
               label_studio: tuple[str, str, Path]) -> Iterator[str]:
    """A detection solver (qa/ink-box) served with ``--label-studio``."""
    ls_url, token, _ = label_studio
    root = tmp_path_factory.mktemp("ink")
    package = root / "ink-box"
    package.mkdir()
    for name, text in INK_PACKAGE.items():
        (package / name).write_text(text)
    yield from _serve(runner_python, package, ls_url, token, root)


def _drive(label_studio: tuple[str, str, Path], runner: str, images: dict[str, bytes], config: str,
           where: Path) -> dict[str, Any]:
    """What Label Studio stored once the runner was connected and asked to predict ``images``."""
    ls_url, token, python = label_studio
    for name, png in images.items():
        (where / name).write_bytes(png)
    (where / "config.xml").write_text(config)
    done = subprocess.run([str(python), str(DRIVE), ls_url, token, runner, str(where), str(where / "config.xml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    stored: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(stored["predictions"]) == sorted(images), stored
    return stored


def test_label_studio_stores_the_classifiers_choices(label_studio: tuple[str, str, Path], digits_runner: str,
                                                     tmp_path: Path) -> None:
    images, labels = holdout()
    pngs = {f"digit{i}.png": digit_png(images[i]) for i in range(4)}
    # The second image's digit is left out of the config: for it, the best class the config has.
    left_out = labels[1]
    choices = "\n    ".join(f'<Choice value="{d}"/>' for d in range(10) if d != left_out)
    stored = _drive(label_studio, digits_runner, pngs, CHOICES.format(choices=choices), tmp_path)
    assert stored["backend"]["model_version"] == "demo/digits-logreg@1.0.0", stored
    for name, png in pngs.items():
        direct = httpx.post(f"{digits_runner}/solvers/classify/infer", content=png,
                            headers={"content-type": "image/png"}, trust_env=False).json()
        best = next(t for t in direct["top"] if t["digit"] != left_out)
        [p] = stored["predictions"][name]
        assert p["model_version"] == "demo/digits-logreg@1.0.0"
        assert p["result"] == [{"from_name": "digit", "to_name": "img", "type": "choices",
                                "value": {"choices": [str(best["digit"])]},
                                "score": round(best["probability"], 4)}], (name, p)
        assert p["score"] == pytest.approx(round(best["probability"], 4))
    chosen = [stored["predictions"][f"digit{i}.png"][0]["result"][0]["value"]["choices"][0] for i in range(4)]
    assert chosen[1] != str(left_out)
    assert [chosen[0], *chosen[2:]] == [str(labels[0]), *map(str, labels[2:4])]  # the solver reads these right


def test_label_studio_stores_the_detectors_rectangles(label_studio: tuple[str, str, Path], ink_runner: str,
                                                      tmp_path: Path) -> None:
    images, _ = holdout()
    png = digit_png(images[0])  # 32 x 32
    config = ('<View><Image name="photo" value="$image"/><RectangleLabels name="box" toName="photo">'
              '<Label value="Ink"/><Label value="Shadow"/></RectangleLabels></View>')
    stored = _drive(label_studio, ink_runner, {"seven.png": png}, config, tmp_path)
    [p] = stored["predictions"]["seven.png"]
    direct = httpx.post(f"{ink_runner}/solvers/detect/infer", content=png, headers={"content-type": "image/png"},
                        trust_env=False).json()
    x0, y0, x1, y1 = direct["boxes"][0]["bbox"]
    assert p["model_version"] == "qa/ink-box@1.0.0"
    [result] = p["result"]  # "paper" is not a label of the config
    assert (result["from_name"], result["to_name"], result["type"]) == ("box", "photo", "rectanglelabels")
    assert result["value"]["rectanglelabels"] == ["Ink"]
    assert (result["original_width"], result["original_height"]) == (32, 32)
    got = [result["value"][k] for k in ("x", "y", "width", "height")]
    assert got == pytest.approx([100 * x0 / 32, 100 * y0 / 32, 100 * (x1 - x0) / 32, 100 * (y1 - y0) / 32])
    assert result["score"] == 0.875 and p["score"] == 0.875

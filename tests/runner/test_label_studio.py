"""The runner as a Label Studio ML backend (``--label-studio``), against a real Label Studio.

The session fixture installs ``label-studio`` 1.23 (with its ``label-studio-sdk``) into its own
venv with uv, through the session's shared uv cache and pip's index configuration, and starts it
on a loopback port with SQLite in a temporary data directory. A second small venv (numpy,
Pillow, safetensors) runs demo/digits-logreg under ``python -I .../_boot.py``, the way
``cvflow run`` starts a runner, so the Label Studio routes are tested in a package venv that has
none of the client's libraries. Measured on this machine with a warm uv cache: about 10 s to
install Label Studio, about 40 s for its first start (migrations), a few seconds for the rest.

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
    # pip's first-match-wins across its indexes is uv's unsafe-best-match
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(path / "bin" / "python"), *options.args,
                    "--index-strategy", "unsafe-best-match", *requirements], check=True, env=env)
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


@pytest.fixture(scope="session")
def digits_runner(tmp_path_factory: pytest.TempPathFactory,
                  label_studio: tuple[str, str, Path]) -> Iterator[str]:
    """demo/digits-logreg served with ``--label-studio`` from a package-like venv."""
    ls_url, token, _ = label_studio
    root = tmp_path_factory.mktemp("digits-runner")
    python = _uv_venv(root / "venv", "numpy>=1.24", "pillow>=10", "safetensors>=0.4")
    status, log = root / "status.json", root / "runner.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["LABEL_STUDIO_API_KEY"] = token
    with log.open("wb") as out:
        proc = subprocess.Popen([str(python), "-I", "-u", str(BOOT), str(EXAMPLES / "digits-logreg"),
                                 "--port", "0", "--status-file", str(status), "--label-studio", ls_url],
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


def test_label_studio_stores_the_runners_predictions(label_studio: tuple[str, str, Path], digits_runner: str,
                                                      tmp_path: Path) -> None:
    ls_url, token, python = label_studio
    images, labels = holdout()
    pngs = {}
    for i in range(4):
        name = f"digit{i}.png"
        pngs[name] = digit_png(images[i])
        (tmp_path / name).write_bytes(pngs[name])
    config = tmp_path / "config.xml"
    # Capitalised label values: a class is matched to a label by name, case-insensitively;
    # "9" is left out of the config, so a 9 the solver sees is never a prediction.
    config.write_text(CHOICES.format(choices="\n    ".join(f'<Choice value="{d}"/>' for d in range(9))))
    done = subprocess.run([str(python), str(DRIVE), ls_url, token, digits_runner, str(tmp_path), str(config)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    stored = json.loads(done.stdout.strip().splitlines()[-1])
    assert stored["backend"]["model_version"] == "demo/digits-logreg@1.0.0", stored
    assert sorted(stored["predictions"]) == sorted(pngs), stored
    for name, png in pngs.items():
        direct = httpx.post(f"{digits_runner}/solvers/classify/infer", content=png,
                            headers={"content-type": "image/png"}, trust_env=False).json()
        best = direct["top"][0]
        predictions = stored["predictions"][name]
        if best["digit"] == 9:
            assert predictions == [] or predictions[0]["result"] == [], (name, predictions)
            continue
        assert len(predictions) == 1, (name, predictions)
        p = predictions[0]
        assert p["model_version"] == "demo/digits-logreg@1.0.0"
        assert p["result"] == [{"from_name": "digit", "to_name": "img", "type": "choices",
                                "value": {"choices": [str(best["digit"])]},
                                "score": round(best["probability"], 4)}], (name, p)
        assert p["score"] == pytest.approx(round(best["probability"], 4))
    assert labels[:4]  # the held-out labels exist; the solver's own answer is what LS must store

"""2019 CVPM solvers under the runner: the ``cvpm`` shim, the ``infer(image_file, config)`` adapter,
and the contract of every other solver left as it was.

The runner runs in this process over a real socket (as tests/runner/test_protocol.py does), so
the shim's finder and the ``cvpm`` modules are removed again after the module."""

from __future__ import annotations

import base64
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cvflow.runner import cvpm_compat
from cvflow.runner.cvpm_compat.adapter import CvpmCall, is_cvpm_solver, json_safe
from cvflow.runner.loader import LoadError
from cvflow.runner.server import Runner, RunnerSettings
from cvflow.solver import Image
from tests.runner._images import grey_png, png

MANIFEST = """\
[package]
name = "qa/colour-2019"
version = "0.1.0"

[[solvers]]
name = "mean"
class = "colour_2019_for_compat_tests.solver:MeanColourSolver"

[tool.cvpm]
name = "Colour_2019"
"""

# Written as 2019 solvers were: a cvpm Solver subclass with a Bundle, set_ready, load_image_file,
# and infer(image_file, config) returning numpy values inside a dict.
SOLVER = '''\
import os

import numpy as np
from cvpm.bundle import Bundle
from cvpm.solver import Solver
from cvpm.utility import load_image_file


class ColourBundle(Bundle):
    SOLVERS = []
    ENABLE_TRAIN = False


class MeanColourSolver(Solver):
    def __init__(self, toml_file=None):
        super().__init__(toml_file)
        self.set_bundle(ColourBundle)
        self.set_ready()

    def infer(self, image_file, config):
        if config.get("fail"):
            raise RuntimeError("failed on " + image_file)
        image = load_image_file(image_file)
        channel = "rgb".index(config.get("channel", "r"))
        return {"shape": image.shape, "mean": np.float32(image[..., channel].mean()),
                "file": image_file, "existed": os.path.exists(image_file), "config": config,
                "ready": self.is_ready, "bundle": [type(s).__name__ for s in ColourBundle.SOLVERS]}
'''


def _serve(folder: Path) -> Runner:
    runner = Runner(RunnerSettings(package_dir=folder, access_log=False))
    server = runner.bind()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return runner


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("colour-2019")
    (folder / "cvflow.toml").write_text(MANIFEST)
    (folder / "colour_2019_for_compat_tests").mkdir()
    (folder / "colour_2019_for_compat_tests" / "__init__.py").write_text("")
    (folder / "colour_2019_for_compat_tests" / "solver.py").write_text(SOLVER)
    runner = _serve(folder)
    try:
        runner.load()
        yield f"http://127.0.0.1:{runner.port}"
    finally:
        runner.close(grace=1)
        if cvpm_compat.CvpmShimFinder in sys.meta_path:
            sys.meta_path.remove(cvpm_compat.CvpmShimFinder)
        for name in [n for n in sys.modules if n == "cvpm" or n.startswith(("cvpm.", "colour_2019_for_compat"))]:
            del sys.modules[name]


RED = png(4, 3, b"\xff\x00\x00", color=True)


def test_a_2019_solver_answers_multipart_json_and_raw_bodies(base: str) -> None:
    r = httpx.post(base + "/solvers/mean/infer", files={"image": ("red.png", RED, "image/png")},
                   data={"channel": "r", "note": "a b"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["shape"] == [3, 4, 3] and out["mean"] == 255.0  # RGB, as load_image_file gave it in 2019
    assert out["config"] == {"channel": "r", "note": "a b"}  # the other form fields, as text
    assert out["existed"] and out["file"].endswith(".png") and not Path(out["file"]).exists()  # deleted after
    assert out["ready"] is True and out["bundle"] == ["MeanColourSolver"]

    grey = grey_png([[10, 20], [30, 40]])  # grey in, RGB out: the green channel is the grey value
    r = httpx.post(base + "/solvers/mean/infer", json={"image": base64.b64encode(grey).decode(), "channel": "g",
                                                       "n": 3, "opts": {"a": [1]}})
    assert r.status_code == 200, r.text
    assert r.json()["mean"] == 25.0 and r.json()["config"] == {"channel": "g", "n": 3, "opts": {"a": [1]}}

    r = httpx.post(base + "/solvers/mean/infer?channel=b", content=RED, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["mean"] == 0.0 and r.json()["config"] == {"channel": "b"}


def test_a_2019_solver_gets_the_runners_errors_and_its_file_is_deleted_when_it_raises(base: str) -> None:
    r = httpx.post(base + "/solvers/mean/infer", files={"image": ("red.png", RED, "image/png")}, data={"fail": "1"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "solver_error"
    path = r.json()["error"]["message"].rsplit(" ", 1)[1]
    assert "cvflow-cvpm-" in path and not Path(path).exists()

    r = httpx.post(base + "/solvers/mean/infer", data={"channel": "r"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "missing_field"
    r = httpx.post(base + "/solvers/mean/infer", files={"image": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "not_an_image"
    r = httpx.post(base + "/solvers/mean/infer", files={"image": ("red.png", RED, "image/png"),
                                                       "channel": ("c.txt", b"r", "text/plain")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_field"  # a config field is text


def test_a_2019_solver_is_in_the_openapi_document(base: str) -> None:
    op = httpx.get(base + "/openapi.json").json()["paths"]["/solvers/mean/infer"]["post"]
    content = op["requestBody"]["content"]
    form = content["multipart/form-data"]["schema"]
    assert form["required"] == ["image"] and form["properties"]["image"]["format"] == "binary"
    assert form["additionalProperties"] == {"type": "string"}
    assert content["application/json"]["schema"]["additionalProperties"] == {}
    assert "image/*" in content and "2019 CVPM solver" in op["description"]
    assert httpx.get(base + "/docs").status_code == 200


def test_an_untyped_infer_outside_a_legacy_package_is_refused_as_before(tmp_path: Path) -> None:
    (tmp_path / "cvflow.toml").write_text(MANIFEST.replace('\n[tool.cvpm]\nname = "Colour_2019"\n', "").replace(
        "colour_2019_for_compat_tests.solver", "untyped_for_compat_tests"))
    (tmp_path / "untyped_for_compat_tests.py").write_text(
        "class MeanColourSolver:\n    def infer(self, image_file, config):\n        return {}\n")
    runner = Runner(RunnerSettings(package_dir=tmp_path, access_log=False))
    assert not runner.info.legacy
    with pytest.raises(LoadError, match="parameter image_file has no type hint"):
        runner.load()


class _Typed:
    def infer(self, image: Image, config: str) -> dict[str, Any]:
        return {}


class _Untyped:
    def infer(self, image_file, config):  # type: ignore[no-untyped-def]
        return {}


class _Three:
    def infer(self, image_file, config, extra):  # type: ignore[no-untyped-def]
        return {}


class _Keywords:
    def infer(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return {}


def test_the_2019_shape_is_told_by_infer_alone() -> None:
    assert is_cvpm_solver(_Untyped)
    assert not is_cvpm_solver(_Typed) and not is_cvpm_solver(_Three) and not is_cvpm_solver(_Keywords)
    assert not is_cvpm_solver(type("NoInfer", (), {}))


def test_the_temporary_file_is_private_and_deleted_even_when_infer_raises() -> None:
    seen: list[tuple[str, int, bytes]] = []

    def infer(path: str, config: dict[str, Any]) -> Any:
        import os
        import stat
        seen.append((path, stat.S_IMODE(os.stat(path).st_mode), Path(path).read_bytes()))
        raise ValueError("no")

    image = Image.from_bytes(RED, filename="../../up load.PNG")
    with pytest.raises(ValueError, match="no"):
        CvpmCall(infer)(image, {"a": "1"})
    [(path, mode, data)] = seen
    assert mode == 0o600 and data == RED and path.endswith(".png") and not Path(path).exists()


def test_results_are_made_json_safe() -> None:
    value = {"a": np.arange(3), "b": (np.int64(2), np.float32(0.5)), np.int64(7): {np.bool_(True)},
             "c": b"text", "d": [np.zeros((1, 2), dtype=np.uint8)], 1.5: None}
    assert json_safe(value) == {"a": [0, 1, 2], "b": [2, 0.5], 7: [True], "c": "text", "d": [[[0, 0]]], 1.5: None}


def test_the_utility_reads_and_writes_images(tmp_path: Path) -> None:
    cvpm_compat.install_finder()
    try:
        from cvpm.utility import load_image_file, save_image  # type: ignore[import-not-found]

        (tmp_path / "g.png").write_bytes(grey_png([[1, 2, 3]]))
        rgb = load_image_file(str(tmp_path / "g.png"))
        assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8 and rgb[0, 2].tolist() == [3, 3, 3]
        assert load_image_file(str(tmp_path / "g.png"), mode="L").shape == (1, 3)
        assert save_image(rgb, tmp_path / "out.png") == str(tmp_path / "out.png")
        assert load_image_file(str(tmp_path / "out.png")).tolist() == rgb.tolist()
        assert save_image(str(tmp_path / "out.png"), str(tmp_path / "out.png")) == str(tmp_path / "out.png")
    finally:
        sys.meta_path.remove(cvpm_compat.CvpmShimFinder)
        for name in [n for n in sys.modules if n == "cvpm" or n.startswith("cvpm.")]:
            del sys.modules[name]


def test_a_real_cvpm_wins_over_the_shim(tmp_path: Path) -> None:
    (tmp_path / "cvpm").mkdir()
    (tmp_path / "cvpm" / "__init__.py").write_text("REAL = True\n")
    sys.path.insert(0, str(tmp_path))
    cvpm_compat.install_finder()
    try:
        import cvpm  # type: ignore[import-not-found]

        assert getattr(cvpm, "REAL", False) and not hasattr(cvpm, "CVFLOW_SHIM")
    finally:
        sys.path.remove(str(tmp_path))
        sys.meta_path.remove(cvpm_compat.CvpmShimFinder)
        sys.modules.pop("cvpm", None)

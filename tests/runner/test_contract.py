"""What packages rely on: the example packages follow the contract, the runner imports nothing but
the standard library, and ``cvflow.solver`` refuses pickles unless allowed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cvflow.manifest import check_files_against_manifest, load_package_dir
from cvflow.package import scan_package_files
from cvflow.runner.loader import LoadError, load_solver, read_package
from cvflow.solver import Context, PickleNotAllowedError, WeightsError, load_weights
from tests.runner._images import EXAMPLES

CLIENT = Path(__file__).resolve().parents[2] / "client" / "cvflow"
EXAMPLE_NAMES = ["digits-lenet", "digits-logreg", "digits-mlp", "digits-knn", "digits-svm", "digits-detector",
                 "edge-sobel", "face-utility", "face-privacy"]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_each_example_validates_and_pins_what_it_needs(name):
    directory = EXAMPLES / name
    entries, problems = scan_package_files(directory)
    assert problems == []
    manifest = load_package_dir(directory)
    assert check_files_against_manifest(manifest, entries) == []
    assert manifest.solvers and all(s.class_path for s in manifest.solvers)
    for requirement in manifest.requirements:
        if requirement.startswith("torch"):
            assert requirement == "torch==2.13.0"  # a looser pin pulls a CUDA build of several GB
    assert "pillow>=10" in manifest.requirements or manifest.dependencies  # the runner decodes images with Pillow
    assert read_package(directory).solvers[0].name == manifest.solvers[0].name


def test_digits_ships_its_weights_metrics_and_held_out_split():
    manifest = tomllib.loads((EXAMPLES / "digits-lenet" / "cvflow.toml").read_text())
    assert manifest["metrics"]["accuracy"] >= 0.95 and manifest["metrics"]["latency_ms"] > 0
    assert manifest["weights"] == [{"path": "weights/model.safetensors", "format": "safetensors"}]
    assert (EXAMPLES / "digits-lenet" / "weights" / "model.safetensors").stat().st_size < 200_000
    privacy = tomllib.loads((EXAMPLES / "face-privacy" / "cvflow.toml").read_text())
    assert privacy["dependencies"] == {"demo/face-utility": "^1.0"}


def test_the_runner_imports_only_the_standard_library():
    code = f"""
import importlib.util, sys
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("_boot", {str(CLIENT / "runner" / "_boot.py")!r})
boot = importlib.util.module_from_spec(spec); spec.loader.exec_module(boot); boot.install_cvflow()
import cvflow.runner.__main__, cvflow.runner.server, cvflow.solver
roots = {{m.split(".")[0] for m in set(sys.modules) - before}}
print(" ".join(sorted(r for r in roots if r not in sys.stdlib_module_names and r not in ("cvflow", "_boot"))))
"""
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""  # no httpx, click, packaging, tomli_w...: a package venv has none of them


def test_pickles_are_refused_unless_the_manifest_allows_them(tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"\x80\x04K\x01.")  # a pickle; never unpickled here
    with pytest.raises(PickleNotAllowedError, match="allow_pickle = true"):
        load_weights(weights, allow_pickle=False)
    context = Context(package="a/b", version="1.0.0", solver="s", package_dir=tmp_path,
                      weights={"model.pt": weights}, weight_formats={"model.pt": "pickle"})
    with pytest.raises(PickleNotAllowedError):
        context.load_weights("model.pt")
    assert context.weight() == weights
    with pytest.raises(WeightsError, match="no weight 'other.bin' in its manifest"):
        context.weight("other.bin")
    with pytest.raises(WeightsError, match="cannot load 'onnx' weights"):
        load_weights(tmp_path / "m.onnx", allow_pickle=False, format="onnx")


def test_declared_inputs_must_match_what_infer_takes(tmp_path):
    (tmp_path / "probe_solver.py").write_text(
        "class Probe:\n"  # no image input: this venv (the hub's) has no Pillow
        "    def infer(self, text: str, top_k: int = 3) -> dict:\n"
        "        return {}\n")
    manifest = ('[package]\nname = "qa/io"\nversion = "1.0.0"\ndescription = "d"\n'
                '[[solvers]]\nname = "probe"\nclass = "probe_solver:Probe"\n')
    (tmp_path / "cvflow.toml").write_text(manifest + 'inputs = { text = "string: a caption", top_k = "integer" }\n')
    info = read_package(tmp_path)
    assert info.solvers[0].inputs == (("text", "string"), ("top_k", "integer"))
    loaded = load_solver(info, "probe", device="cpu", settings={})
    assert [p.name for p in loaded.schema.params] == ["text", "top_k"]

    (tmp_path / "cvflow.toml").write_text(manifest + 'inputs = { text = "image", threshold = "number" }\n')
    with pytest.raises(LoadError) as caught:
        load_solver(read_package(tmp_path), "probe", device="cpu", settings={})
    message = str(caught.value)
    assert "text: manifest says image, infer() takes string" in message
    assert "threshold: manifest says number, infer() takes nothing" in message
    assert "top_k: manifest says nothing, infer() takes integer" in message


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_each_example_declares_its_solvers_inputs_and_outputs(name):
    for solver in load_package_dir(EXAMPLES / name).solvers:
        assert solver.inputs and solver.outputs, (name, solver.name)

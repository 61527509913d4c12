"""Label Studio's side of the runner, without Label Studio: the labelling config's controls, a
solver's output as Label Studio results, the routes' answers to bad input over a real socket,
and ``cvflow run --label-studio`` reaching the runner."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cvflow.manifest.suggest import Suggest
from cvflow.runner.errors import RunnerError
from cvflow.runner.label_studio import LabelStudioSettings, parse_config, pick_control, to_results
from cvflow.runner.server import Runner, RunnerSettings

BOXES = """<View>
  <Image name="img" value="$photo"/>
  <RectangleLabels name="label" toName="img">
    <Label value="Car"/><Label value="Person" background="red"/>
  </RectangleLabels>
</View>"""
CHOICES = '<View><Image name="i" value="$image"/><Choices name="c" toName="i"><Choice value="Cat"/>' \
          '<Choice value="Dog"/></Choices></View>'


def test_config_controls_labels_and_image_key() -> None:
    [control] = parse_config(BOXES)
    assert (control.kind, control.from_name, control.to_name, control.value, control.labels) == (
        "rectanglelabels", "label", "img", "photo", ("Car", "Person"))
    assert pick_control(parse_config(CHOICES), Suggest("scores", "scores")).labels == ("Cat", "Dog")


@pytest.mark.parametrize("xml", [
    "<View><Choices",  # not XML
    '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaa">]><View>&a;</View>',  # entities: refused
    '<View><Choices toName="i"/></View>',  # no name
])
def test_bad_configs_are_invalid_label_config(xml: str) -> None:
    with pytest.raises(RunnerError) as caught:
        parse_config(xml)
    assert (caught.value.code, caught.value.status) == ("invalid_label_config", 422)


def test_a_config_without_the_solvers_control_is_refused() -> None:
    with pytest.raises(RunnerError, match="no <RectangleLabels>"):
        pick_control(parse_config(CHOICES), Suggest("boxes", "boxes"))


def test_boxes_become_rectanglelabels_in_percent_matched_case_insensitively() -> None:
    control = parse_config(BOXES)[0]
    output = {"boxes": [{"class": "car", "bbox": [20, 10, 40, 30], "score": 0.9},
                        {"class": "PERSON", "bbox": [0, 0, 200, 100], "score": 0.5},  # clipped to the image
                        {"class": "tree", "bbox": [1, 1, 5, 5], "score": 0.99}]}  # not in the config: left out
    results = to_results(output, Suggest("boxes", "boxes"), control, 200, 100)
    assert [r["value"]["rectanglelabels"] for r in results] == [["Car"], ["Person"]]
    first = results[0]
    assert (first["from_name"], first["to_name"], first["type"], first["score"]) == ("label", "img",
                                                                                     "rectanglelabels", 0.9)
    assert first["value"] == {"x": 10.0, "y": 10.0, "width": 20.0, "height": 30.0, "rotation": 0,
                              "rectanglelabels": ["Car"]}
    assert (first["original_width"], first["original_height"]) == (200, 100)
    assert results[1]["value"]["width"] == 100.0


def test_scores_become_one_choice_the_best_known_class() -> None:
    control = parse_config(CHOICES)[0]
    results = to_results({"scores": {"dog": 0.7, "bird": 0.9, "cat": 0.2}}, Suggest("scores", "scores"), control,
                         10, 10)
    assert results == [{"from_name": "c", "to_name": "i", "type": "choices", "value": {"choices": ["Dog"]},
                        "score": 0.7}]
    assert to_results({"scores": {"bird": 1.0}}, Suggest("scores", "scores"), control, 10, 10) == []


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """demo/digits-logreg's manifest with a stand-in solver class (the test venv lacks its libraries)."""
    pkg = tmp_path_factory.mktemp("pkg")
    (pkg / "cvflow.toml").write_text('[package]\nname = "qa/ls"\nversion = "1.0.0"\n[[solvers]]\nname = "classify"\n'
                                     'class = "ls_solver:S"\nsuggest = { kind = "scores" }\n')
    (pkg / "ls_solver.py").write_text("from cvflow.solver import Image\n\nclass S:\n"
                                      "    def infer(self, image: Image) -> dict:\n"
                                      "        return {'scores': {'cat': 0.75}}\n")
    r = Runner(RunnerSettings(package_dir=Path(pkg), access_log=False,
                              label_studio=LabelStudioSettings("http://127.0.0.1:1")))
    server = r.bind()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    r.load()
    yield f"http://127.0.0.1:{r.port}"
    r.close()


def test_routes_answer_label_studio_and_refuse_bad_input(runner: str) -> None:
    with httpx.Client(base_url=runner, trust_env=False) as http:
        assert http.get("/health").json() == {"status": "UP", "model_class": "cvflow", "model_version": "qa/ls@1.0.0"}
        assert http.post("/setup", json={"schema": CHOICES, "access_token": "t"}).json() == {
            "model_version": "qa/ls@1.0.0"}
        bad = http.post("/setup", json={"schema": BOXES})
        assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_label_config")
        outside = http.post("/predict", json={"tasks": [{"data": {"image": "http://10.0.0.1/x.png"}}],
                                              "label_config": CHOICES})
        assert (outside.status_code, outside.json()["error"]["code"]) == (403, "url_not_allowed")
        missing = http.post("/predict", json={"tasks": [{"data": {}}], "label_config": CHOICES})
        assert (missing.status_code, missing.json()["error"]["code"]) == (422, "missing_field")
        down = http.post("/predict", json={"tasks": [{"data": {"image": "/data/upload/1/x.png"}}]})
        assert (down.status_code, down.json()["error"]["code"]) == (400, "url_fetch_failed")  # nothing on port 1
        assert http.post("/predict", content=b"[").json()["error"]["code"] == "invalid_json"
        assert http.get("/predict").status_code == 405
        hook = http.post("/webhook", json={"action": "ANNOTATION_CREATED"})
        assert hook.status_code == 200 and json.loads(hook.content)["action"] == "ANNOTATION_CREATED"


def test_cvflow_run_passes_label_studio_to_the_runner(env: dict[str, str | None]) -> None:
    """``cvflow run --label-studio`` reaches the runner: qa/probe declares no ``suggest``, so its
    runner refuses to start, and says why."""
    from tests.client_e2e._publish_helpers import run_cli

    result = run_cli(env, "run", "qa/probe:inspect", "--name", "ls-probe", "--label-studio", "http://127.0.0.1:1")
    assert result.exit_code == 1, result.output
    assert "no solver served here declares `suggest`" in result.stderr, result.stderr
    bad = run_cli(env, "run", "qa/probe:inspect", "--label-studio", "ftp://example.com")
    assert bad.exit_code == 2 and "is not an http(s) URL" in bad.output, bad.output

"""A solver's ``suggest`` declaration (cvflow.manifest.suggest) and the mapping of its output to
suggestions (cvflow.annotate.outputs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvflow.annotate.outputs import MAX_SUGGESTIONS, SuggestOutputError, to_suggestions
from cvflow.errors import ManifestError
from cvflow.manifest import Manifest, Suggest, load_package_dir, parse_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def manifest_with(suggest: str) -> str:
    return ('[package]\nname = "demo/x"\nversion = "1.0.0"\ndescription = "x"\n\n'
            f'[[solvers]]\nname = "detect"\nclass = "x:Detector"\nsuggest = {suggest}\n')


def problems(suggest: str) -> list[tuple[str, str]]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(manifest_with(suggest))
    return [(p.code, p.field) for p in info.value.problems]


# -- the declaration ------------------------------------------------------------------------------


def test_defaults_follow_the_kind() -> None:
    boxes = parse_manifest(manifest_with('{ kind = "boxes" }')).solvers[0].suggest
    assert boxes == Suggest(kind="boxes", field="boxes", fixed_class=None, class_field="class", score_field="score",
                            box_field="bbox", bbox="xywh")
    scores = parse_manifest(manifest_with('{ kind = "scores" }')).solvers[0].suggest
    assert scores is not None and (scores.kind, scores.field) == ("scores", "scores")
    assert parse_manifest(manifest_with('{ kind = "boxes" }').replace("suggest = { kind = \"boxes\" }\n", "")
                          ).solvers[0].suggest is None


def test_every_key_is_read_and_survives_the_round_trips() -> None:
    text = manifest_with('{ kind = "boxes", field = "out.faces", class = "face", class_field = "label",'
                         ' box_field = "box", bbox = "xyxy", score_field = "confidence" }')
    manifest = parse_manifest(text)
    suggest = manifest.solvers[0].suggest
    assert suggest == Suggest("boxes", "out.faces", "face", "label", "confidence", "box", "xyxy")
    assert manifest.to_dict()["solvers"][0]["suggest"] == {
        "kind": "boxes", "field": "out.faces", "class": "face", "class_field": "label",
        "score_field": "confidence", "box_field": "box", "bbox": "xyxy"}
    assert Manifest.from_dict(manifest.to_dict()).solvers[0].suggest == suggest
    assert parse_manifest(manifest.to_toml()).solvers[0].suggest == suggest


@pytest.mark.parametrize(("suggest", "expected"), [
    ('"boxes"', [("invalid_field", "solvers[0].suggest")]),
    ("{ field = \"boxes\" }", [("missing_field", "solvers[0].suggest.kind")]),
    ('{ kind = "masks" }', [("invalid_field", "solvers[0].suggest.kind")]),
    ('{ kind = "boxes", bbox = "cxcywh" }', [("invalid_field", "solvers[0].suggest.bbox")]),
    ('{ kind = "boxes", field = "a..b" }', [("invalid_field", "solvers[0].suggest.field")]),
    ('{ kind = "boxes", field = 3 }', [("invalid_field", "solvers[0].suggest.field")]),
    ('{ kind = "boxes", class = "a/b" }', [("invalid_field", "solvers[0].suggest.class")]),
    ('{ kind = "boxes", class_field = "" }', [("invalid_field", "solvers[0].suggest.class_field")]),
    ('{ kind = "boxes", boxfield = "box" }', [("unknown_key", "solvers[0].suggest.boxfield")]),
    ('{ kind = "scores", box_field = "box", bbox = "xyxy" }',
     [("invalid_field", "solvers[0].suggest.box_field"), ("invalid_field", "solvers[0].suggest.bbox")]),
])
def test_a_bad_declaration_is_refused_with_its_field(suggest: str, expected: list[tuple[str, str]]) -> None:
    assert problems(suggest) == expected


def test_face_utility_declares_its_faces_as_boxes_of_class_face() -> None:
    suggest = load_package_dir(EXAMPLES / "face-utility").solvers[0].suggest
    assert suggest == Suggest("boxes", "faces", "face", "class", "score", "box", "xywh")


# -- boxes ----------------------------------------------------------------------------------------

BOXES = Suggest("boxes", "boxes")
FACES = Suggest("boxes", "faces", fixed_class="face", box_field="box")


def test_boxes_come_out_best_first_in_coco_form() -> None:
    output = {"boxes": [{"class": "car", "bbox": [10, 20, 30, 40], "score": 0.5},
                        {"class": "person", "bbox": [1.234, 2, 3, 4], "score": 0.9}]}
    mapped = to_suggestions(output, BOXES, ["car", "person"], 100, 100)
    assert mapped.suggestions == [{"class": "person", "bbox": [1.23, 2.0, 3.0, 4.0], "score": 0.9},
                                  {"class": "car", "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.5}]
    assert sum(mapped.dropped.values()) == 0


def test_face_utility_output_maps_with_its_fixed_class() -> None:
    output = {"width": 512, "height": 512,
              "faces": [{"box": {"x": 176, "y": 65, "width": 96, "height": 96}, "score": 5.3},
                        {"box": [500, 500, 40, 40], "score": -2}]}
    mapped = to_suggestions(output, FACES, ["face"], 512, 512)
    assert mapped.suggestions == [{"class": "face", "bbox": [176.0, 65.0, 96.0, 96.0], "score": 1.0},
                                  {"class": "face", "bbox": [500.0, 500.0, 12.0, 12.0], "score": 0.0}]


def test_boxes_are_clipped_to_the_image_and_empty_ones_dropped() -> None:
    output = {"boxes": [{"class": "a", "bbox": [-10, -5, 30, 20]},       # overhangs the top left
                        {"class": "a", "bbox": [90, 90, 50, 50]},        # the bottom right
                        {"class": "a", "bbox": [120, 10, 5, 5]},         # wholly outside
                        {"class": "a", "bbox": [10, 10, 0, 5]},          # no width
                        {"class": "a", "bbox": [10, 10, 5, -5]}]}        # negative height
    mapped = to_suggestions(output, BOXES, ["a"], 100, 100)
    assert [s["bbox"] for s in mapped.suggestions] == [[0.0, 0.0, 20.0, 15.0], [90.0, 90.0, 10.0, 10.0]]
    assert all(s["score"] == 1.0 for s in mapped.suggestions)  # no score given: sure
    assert mapped.dropped == {"empty_box": 3}


def test_xyxy_boxes_as_lists_and_tables() -> None:
    suggest = Suggest("boxes", "dets", box_field="xyxy", bbox="xyxy", class_field="label", score_field="p")
    output = {"dets": [{"label": "a", "xyxy": [10, 20, 40, 60], "p": 0.7},
                       {"label": "a", "xyxy": {"xmin": 5, "ymin": 5, "xmax": 6, "ymax": 9}, "p": 0.2},
                       {"label": "a", "xyxy": [40, 60, 10, 20], "p": 0.1}]}  # corners swapped: no size
    mapped = to_suggestions(output, suggest, ["a"], 100, 100)
    assert [s["bbox"] for s in mapped.suggestions] == [[10.0, 20.0, 30.0, 40.0], [5.0, 5.0, 1.0, 4.0]]
    assert mapped.dropped == {"empty_box": 1}


def test_unknown_classes_and_malformed_entries_are_counted() -> None:
    output = {"boxes": [{"class": "dog", "bbox": [1, 1, 5, 5], "score": 0.9},
                        {"bbox": [1, 1, 5, 5]},
                        "a string",
                        {"class": "cat", "bbox": [1, 1, 5]},
                        {"class": "cat", "bbox": [1, 1, 5, 5], "score": "high"},
                        {"class": "cat", "bbox": [1, 1, float("nan"), 5]},
                        {"class": "cat", "bbox": [1, True, 5, 5]},
                        {"class": 3, "bbox": [1, 1, 5, 5], "score": 0.4},
                        {"class": "cat", "bbox": [1, 1, 5, 5], "score": 0.3}]}
    mapped = to_suggestions(output, BOXES, ["cat", "3"], 10, 10)
    assert mapped.suggestions == [{"class": "3", "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.4},
                                  {"class": "cat", "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.3}]
    assert mapped.dropped == {"unknown_class": 1, "no_class": 1, "malformed": 5}


def test_at_most_the_hubs_limit_the_best_kept() -> None:
    output = {"boxes": [{"class": "a", "bbox": [0, 0, 1, 1], "score": i / 2000} for i in range(MAX_SUGGESTIONS + 5)]}
    mapped = to_suggestions(output, BOXES, ["a"], 10, 10)
    assert len(mapped.suggestions) == MAX_SUGGESTIONS and mapped.dropped == {"too_many": 5}
    assert mapped.suggestions[-1]["score"] == round(5 / 2000, 4)


@pytest.mark.parametrize(("output", "message"), [
    ({"faces": []}, "has no 'boxes'"),
    ([1, 2], "the output is a list"),
    ({"boxes": {"a": 1}}, "not the list of boxes"),
])
def test_an_output_unlike_its_declaration_is_an_error(output: object, message: str) -> None:
    with pytest.raises(SuggestOutputError, match=message):
        to_suggestions(output, BOXES, ["a"], 10, 10)


def test_a_dotted_field_goes_deeper() -> None:
    suggest = Suggest("boxes", "result.boxes")
    output = {"result": {"boxes": [{"class": "a", "bbox": [0, 0, 2, 2], "score": 0.5}]}}
    assert len(to_suggestions(output, suggest, ["a"], 10, 10).suggestions) == 1
    with pytest.raises(SuggestOutputError, match="'result' is a list"):
        to_suggestions({"result": []}, suggest, ["a"], 10, 10)


# -- scores ---------------------------------------------------------------------------------------

SCORES = Suggest("scores", "scores")


def test_scores_best_first_top_five_clamped() -> None:
    output = {"scores": {"a": 0.1, "b": 0.9, "c": 1.7, "d": 0.3, "e": 0.2, "f": 0.05, "zebra": 0.99, "g": "x"}}
    mapped = to_suggestions(output, SCORES, ["a", "b", "c", "d", "e", "f", "g"], 10, 10)
    assert mapped.suggestions == [{"class": "c", "score": 1.0}, {"class": "b", "score": 0.9},
                                  {"class": "d", "score": 0.3}, {"class": "e", "score": 0.2},
                                  {"class": "a", "score": 0.1}]
    assert mapped.dropped == {"unknown_class": 1, "malformed": 1}


def test_digits_lenet_top_guesses_as_scores() -> None:
    suggest = Suggest("scores", "top", class_field="digit", score_field="probability")
    output = {"digit": 3, "probability": 0.9, "top": [{"digit": 3, "probability": 0.9}, {"digit": 8, "probability": 0.07}]}
    mapped = to_suggestions(output, suggest, [str(d) for d in range(10)], 32, 32)
    assert mapped.suggestions == [{"class": "3", "score": 0.9}, {"class": "8", "score": 0.07}]


def test_scores_as_a_list_of_entries() -> None:
    suggest = Suggest("scores", "top", class_field="label", score_field="p")
    output = {"top": [{"label": "cat", "p": 0.6}, {"label": "dog", "p": 0.3}, {"label": "cat", "p": 0.1}, 7]}
    mapped = to_suggestions(output, suggest, ["cat", "dog"], 10, 10)
    assert mapped.suggestions == [{"class": "cat", "score": 0.6}, {"class": "dog", "score": 0.3}]
    assert mapped.dropped == {"malformed": 1}
    with pytest.raises(SuggestOutputError, match="mapping"):
        to_suggestions({"top": "cat"}, suggest, ["cat"], 10, 10)

"""Legacy CVPM as 2019 repositories wrote it: the name rule, slash class paths, requirements.txt,
a missing version, and the runner loading a class by its file path (cvflow.manifest.cvpm,
cvflow.runner.loader). The before_install script's consent rules are in test_before_install.py."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest

from cvflow.errors import ManifestError
from cvflow.manifest import load_package_dir, parse_cvpm, parse_manifest
from cvflow.manifest.cvpm import legacy_class_path, legacy_package_name, legacy_tool_table, read_requirements, tool_toml
from cvflow.names import normalize_name, validate_name


@pytest.mark.parametrize(("raw", "name"), [
    ("Face_utility", "face-utility"),
    ("Face_Utility", "face-utility"),
    ("tesseract-ocr", "tesseract-ocr"),
    ("Edge Detector v2", "edge-detector-v2"),
    ("__Private__.Model", "private-model"),
    ("YOLO.v3", "yolo-v3"),
    ("ÜberNet", "bernet"),
    ("x" * 70, "x" * 64),
    ("a" * 63 + "_b", "a" * 63),  # cut at 64, and no separator left at the end
])
def test_the_name_rule_gives_a_valid_name_in_its_pep503_form(raw, name):
    assert legacy_package_name(raw) == name
    assert validate_name(name) == name and normalize_name(name) == name


def test_a_name_with_no_letter_or_digit_is_refused_with_the_name_problem():
    with pytest.raises(ManifestError) as info:
        parse_cvpm('[package]\nname = "__"\nversion = "1.0.0"\n', None, namespace="alice")
    assert [p.field for p in info.value.problems] == ["package.name"]


@pytest.mark.parametrize(("raw", "mapped"), [
    ("face_utility/solver/FaceDetectionSolver", "face_utility.solver:FaceDetectionSolver"),
    ("solver/Detector", "solver:Detector"),
    ("/face_utility/solver/Landmarks", "face_utility.solver:Landmarks"),
    ("tesseract-ocr/solver/TesseractOCR", "tesseract-ocr/solver.py:TesseractOCR"),
    ("models/v1.2/net/Net", "models/v1.2/net.py:Net"),
    ("face_utility.solver.FaceDetectionSolver", "face_utility.solver:FaceDetectionSolver"),
    ("face_utility.solver:FaceDetectionSolver", "face_utility.solver:FaceDetectionSolver"),
    ("a/../b/C", "a/../b/C"),  # not a path inside the package: left for the checks to refuse
    ("a/b/not-a-class", "a/b/not-a-class"),
    ("Bare", "Bare"),
])
def test_class_paths_map_onto_the_manifest_class_forms(raw, mapped):
    assert legacy_class_path(raw) == mapped


def test_mapped_class_paths_pass_the_manifest_checks_and_bad_ones_do_not():
    def solver(cls):
        return f'[package]\nname = "x"\nversion = "1.0.0"\n[[solvers]]\nname = "s"\nclass = "{cls}"\n'

    for good in ("tesseract-ocr/solver/TesseractOCR", "face_utility/solver/Face", "a.b.C"):
        parse_cvpm(solver(good), None, namespace="alice")
    for bad in ("a/../b/C", "a/b/not-a-class", "Bare", "../up/C"):
        with pytest.raises(ManifestError) as info:
            parse_cvpm(solver(bad), None, namespace="alice")
        assert [p.field for p in info.value.problems] == ["solvers[0].class"], bad
    # cvflow.toml's own syntax is unchanged, and takes the file form too.
    text = '[package]\nname = "ab/x"\nversion = "1.0.0"\ndescription = "d"\n[[solvers]]\nname = "s"\nclass = "{}"\n'
    assert parse_manifest(text.format("pkg.mod:Cls")).solvers[0].module == "pkg.mod"
    assert parse_manifest(text.format("my-dir/solver.py:Cls")).solvers[0].module == "my-dir/solver.py"
    with pytest.raises(ManifestError):
        parse_manifest(text.format("/abs/solver.py:Cls"))


def test_requirements_txt_lines_are_read_and_what_is_left_out_is_said():
    text = ("\ufeff# the runtime\nnumpy>=1.16  # pinned in 2019\n\n-r more.txt\n--index-url https://x.org/simple\n"
            "-e .\ngit+https://github.com/x/y.git\nPillow ; python_version >= '3'\nopencv-python\\\n==4.1\n"
            "numpy>=1.16\n")
    requirements, notes = read_requirements(text)
    assert requirements == ["numpy>=1.16", "Pillow ; python_version >= '3'", "opencv-python==4.1"]
    assert notes == [
        "requirements.txt line 4: '-r more.txt' left out: pip options and included files are not read",
        "requirements.txt line 5: '--index-url https://x.org/simple' left out: pip options and included files"
        " are not read",
        "requirements.txt line 6: '-e .' left out: pip options and included files are not read",
        "requirements.txt line 7: 'git+https://github.com/x/y.git' left out: it is not a PEP 508 requirement",
    ]


CVPM_2019 = """\
[package]
name = "Face_utility"
vendor = "cvmodel"
before_install = "scripts/setup.sh"

[[solvers]]
name = "Face_Detection"
class = "face_utility/solver/FaceDetectionSolver"

[[solvers]]
name = "OCR"
class = "tesseract-ocr/solver/TesseractOCR"
"""


def test_a_2019_cvpm_toml_takes_its_version_from_outside_and_keeps_what_has_no_field():
    with pytest.raises(ManifestError) as info:
        parse_cvpm(CVPM_2019, None, namespace="alice")  # no version in the file, none given
    assert [(p.code, p.field) for p in info.value.problems] == [("missing_field", "package.version")]
    assert "the indexer takes it from the release tag" in info.value.problems[0].message

    m = parse_cvpm(CVPM_2019, None, namespace="alice", version="0.2.1", requirements=["numpy>=1.16"],
                   source="git://example.org/face")
    assert (str(m.name), str(m.version), m.legacy, m.weights) == ("alice/face-utility", "0.2.1", True, [])
    assert m.description == "Face_utility, a CVPM package indexed from git://example.org/face"
    assert m.requirements == ["numpy>=1.16"]
    assert [(s.name, s.class_path) for s in m.solvers] == [
        ("face_detection", "face_utility.solver:FaceDetectionSolver"), ("ocr", "tesseract-ocr/solver.py:TesseractOCR")]
    tool = legacy_tool_table(tomllib.loads(CVPM_2019))
    assert tool == {"name": "Face_utility", "vendor": "cvmodel", "before_install": "scripts/setup.sh"}
    text = tool_toml(m.to_toml(), tool)
    assert tomllib.loads(text)["tool"]["cvpm"] == tool
    assert parse_manifest(text).to_dict() == {**m.to_dict(), "legacy": False}  # round trip: [tool] is left alone
    # A version in the file wins (the indexer then checks it against the tag).
    assert str(parse_cvpm(CVPM_2019.replace('vendor', 'version = "1.0.0"\nvendor'), None, namespace="a1",
                          version="0.2.1").version) == "1.0.0"


@pytest.mark.parametrize("script", ["../outside.sh", "/etc/profile", "", 7])
def test_a_before_install_outside_the_package_is_a_problem(script):
    text = CVPM_2019.replace('"scripts/setup.sh"', json.dumps(script))
    with pytest.raises(ManifestError) as info:
        parse_cvpm(text, None, namespace="alice", version="1.0.0")
    assert [p.field for p in info.value.problems] == ["package.before_install"]
    assert "before_install" not in legacy_tool_table(tomllib.loads(text))


def test_a_local_2019_package_reads_requirements_txt_and_uses_vendor_as_the_namespace(tmp_path, caplog):
    (tmp_path / "cvpm.toml").write_text(CVPM_2019.replace("[[solvers]]", 'version = "0.1.0"\n\n[[solvers]]', 1))
    (tmp_path / "requirements.txt").write_text("numpy\n-r dev.txt\n")
    m = load_package_dir(tmp_path)
    assert (str(m.name), m.requirements) == ("cvmodel/face-utility", ["numpy"])
    assert "'-r dev.txt' left out" in caplog.text
    assert str(load_package_dir(tmp_path, namespace="bob").name) == "bob/face-utility"


# The runner loads the file form by its path: a hyphenated directory, a sibling import, and the
# package root importable. It runs in a child process: the loader changes sys.path and sys.modules.
SOLVER = b'''\
from helpers import shout
from shared.words import GREETING


class TesseractOCR:
    def infer(self, text: str) -> dict:
        return {"text": shout(text), "greeting": GREETING}
'''

LOAD = """\
import json, sys
from pathlib import Path
from cvflow.runner.loader import LoadError, load_solver, read_package

info = read_package(Path(sys.argv[1]))
out = {}
for name in ("ocr", "missing", "outside"):
    try:
        solver = load_solver(info, name, device="cpu", settings={})
        out[name] = solver.instance.infer("hi")
    except LoadError as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""


def test_the_runner_loads_a_class_by_its_file_path_with_its_directory_importable(tmp_path):
    files = {
        "tesseract-ocr/solver.py": SOLVER,
        "tesseract-ocr/helpers.py": b"def shout(s):\n    return s.upper() + '!'\n",
        "shared/words.py": b"GREETING = 'hello'\n",
        "cvflow.toml": b'[package]\nname = "a/ocr"\nversion = "1.0.0"\ndescription = "d"\n'
                       b'[[solvers]]\nname = "ocr"\nclass = "tesseract-ocr/solver.py:TesseractOCR"\n'
                       b'[[solvers]]\nname = "missing"\nclass = "tesseract-ocr/absent.py:X"\n'
                       b'[[solvers]]\nname = "outside"\nclass = "../escape.py:X"\n',
    }
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    (tmp_path.parent / "escape.py").write_text("class X:\n    def infer(self, text: str) -> dict:\n        return {}\n")
    done = subprocess.run([sys.executable, "-c", LOAD, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ocr"] == {"text": "HI!", "greeting": "hello"}
    assert out["missing"].startswith("solver missing: cannot import tesseract-ocr/absent.py")
    assert "is not a file in the package" in out["missing"]
    assert out["outside"].startswith("solver outside: cannot import ../escape.py")
    assert "is not a file in the package" in out["outside"]


def test_the_hub_refuses_a_file_form_solver_whose_file_is_missing():
    from cvflow.manifest import check_files_against_manifest
    from cvflow.paths import FileEntry

    m = parse_manifest('[package]\nname = "ab/x"\nversion = "1.0.0"\ndescription = "d"\n'
                       '[[solvers]]\nname = "s"\nclass = "my-dir/solver.py:S"\n')
    entry = FileEntry("cvflow.toml", 1, "0" * 64)
    problems = check_files_against_manifest(m, [entry])
    assert [(p.code, p.field) for p in problems] == [("missing_file", "solvers[0].class")]
    assert check_files_against_manifest(m, [entry, FileEntry("my-dir/solver.py", 1, "1" * 64)]) == []


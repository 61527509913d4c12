"""The cvflow.toml schema, the legacy CVPM pair, and `cvflow validate` (cvflow.manifest)."""

import hashlib
import json
import textwrap

import pytest
from click.testing import CliRunner

from cvflow import __version__
from cvflow.cli import main
from cvflow.errors import ManifestError, ValidationError
from cvflow.manifest import (
    MANIFEST_FILENAME,
    BatchPolicy,
    Manifest,
    Solver,
    Weight,
    check_files_against_manifest,
    load_package_dir,
    parse_cvpm,
    parse_manifest,
)
from cvflow.names import PackageName
from cvflow.paths import FileEntry
from cvflow.versions import Version, VersionRange

DIGEST = "0123456789abcdef" * 4

FULL = f"""
[package]
name = "demo/digits-lenet"
version = "1.0.0-rc.1+build.7"
description = "LeNet on digits"
license = "MIT OR Apache-2.0"
task = "classification"
tags = ["digits", "lenet"]
readme = "docs/README.md"
homepage = "https://example.org/lenet"
repository = "https://git.example.org/demo/lenet"
python = ">=3.10"
requirements = ["numpy>=1.24", "scikit-learn; python_version >= '3.10'"]
framework = "torch"

[dependencies]
"demo/face-utility" = "^1.0"
"other/tool" = ">=0.2, <0.5"

[[solvers]]
name = "classify"
class = "solver:DigitsSolver"
description = "Classify a digit image"
batch = {{ max_size = 32, max_wait_ms = 5 }}

[[solvers]]
name = "embed_v2"
class = "pkg.models.embed:Embedder"

[[weights]]
path = "weights/model.safetensors"

[[weights]]
path = "weights/big.onnx"
url = "https://files.example.org/big.onnx"
sha256 = "{DIGEST}"
size = 123

[metrics]
accuracy = 0.97
latency_ms = 1
memory_mb = 30.5

[tool.someone-else]
anything = ["goes", 1]
"""

MINIMAL = """
[package]
name = "demo/x"
version = "0.1.0"
description = "A thing"
"""


def parse(text):
    return parse_manifest(textwrap.dedent(text))


def problems(text):
    with pytest.raises(ManifestError) as info:
        parse(text)
    return [(p.code, p.field) for p in info.value.problems]


def with_package(**overrides):
    """MINIMAL with [package] keys replaced or added (values are TOML literals)."""
    fields = {"name": '"demo/x"', "version": '"0.1.0"', "description": '"A thing"', **overrides}
    return "[package]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items())


def test_full_manifest_parses_into_typed_fields():
    m = parse(FULL)
    assert m.name == PackageName("demo", "digits-lenet")
    assert m.version == Version.parse("1.0.0-rc.1+build.7")
    assert (m.description, m.license, m.task) == (
        "LeNet on digits",
        "MIT OR Apache-2.0",
        "classification",
    )
    assert m.tags == ["digits", "lenet"]
    assert m.readme == "docs/README.md"
    assert (m.homepage, m.repository) == (
        "https://example.org/lenet",
        "https://git.example.org/demo/lenet",
    )
    assert m.python == ">=3.10"
    assert m.requirements[0] == "numpy>=1.24"
    assert m.framework == "torch"
    assert m.dependencies == {
        "demo/face-utility": VersionRange.parse("^1.0"),
        "other/tool": VersionRange.parse(">=0.2, <0.5"),
    }
    assert m.solvers == [
        Solver("classify", "solver:DigitsSolver", "Classify a digit image", BatchPolicy(32, 5.0)),
        Solver("embed_v2", "pkg.models.embed:Embedder"),
    ]
    assert (m.solvers[1].module, m.solvers[1].class_name) == ("pkg.models.embed", "Embedder")
    assert m.weights == [
        Weight("weights/model.safetensors", format="safetensors"),
        Weight("weights/big.onnx", "https://files.example.org/big.onnx", DIGEST, 123, "onnx"),
    ]
    assert m.metrics == {"accuracy": 0.97, "latency_ms": 1.0, "memory_mb": 30.5}
    assert isinstance(m.metrics["latency_ms"], float)
    assert (m.allow_pickle, m.legacy) == (False, False)


def test_minimal_manifest_has_empty_defaults():
    m = parse(MINIMAL)
    assert str(m.name) == "demo/x" and str(m.version) == "0.1.0"
    assert m.license is m.task is m.readme is m.python is m.framework is None
    assert m.tags == [] and m.requirements == [] and m.solvers == [] and m.weights == []
    assert m.dependencies == {} and m.metrics == {}


def test_round_trip_through_dict_json_and_toml():
    m = parse(FULL)
    d = m.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["version"] == "1.0.0-rc.1+build.7"
    assert d["dependencies"] == {"demo/face-utility": "^1.0", "other/tool": ">=0.2, <0.5"}
    assert d["solvers"][0]["class"] == "solver:DigitsSolver"
    assert Manifest.from_dict(d) == m
    assert Manifest.from_dict(json.loads(json.dumps(d))) == m
    assert parse_manifest(m.to_toml()) == m
    minimal = parse(MINIMAL)
    assert Manifest.from_dict(minimal.to_dict()) == minimal
    assert parse_manifest(minimal.to_toml()) == minimal


def test_from_dict_checks_like_a_manifest_file():
    d = parse(MINIMAL).to_dict()
    d["version"] = "1.0"
    d["colour"] = "blue"
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(d)
    assert {(p.code, p.field) for p in info.value.problems} == {
        ("invalid_version", "package.version"),
        ("unknown_key", "package.colour"),
    }
    with pytest.raises(ManifestError):
        Manifest.from_dict([])  # type: ignore[arg-type]


def test_toml_syntax_error_is_one_problem_with_the_line():
    with pytest.raises(ManifestError) as info:
        parse_manifest('[package]\nname = "demo/x"\nversion = 1.0.0\n', source="pkg/cvflow.toml")
    [problem] = info.value.problems
    assert problem.code == "toml_syntax"
    assert "pkg/cvflow.toml" in problem.message and "line 3" in problem.message
    assert info.value.code == "invalid_manifest"


def test_all_problems_are_collected_at_once():
    text = """
    [package]
    name = "Demo/x"
    version = "v1.0"
    descripton = "typo"
    task = "magic"
    tags = ["Bad Tag"]

    [dependencies]
    "nope" = "^1"

    [[solvers]]
    name = "Classify"
    class = "solver.DigitsSolver"

    [[weights]]
    path = "../escape.pt"

    [[weights]]
    path = "w.onnx"
    url = "ftp://x/y"

    [metrics]
    accuracy = "high"

    [extras]
    """
    with pytest.raises(ManifestError) as info:
        parse(text)
    found = [(p.code, p.field) for p in info.value.problems]
    assert sorted(found) == sorted(
        [
            ("unknown_key", "extras"),
            ("unknown_key", "package.descripton"),
            ("invalid_package_name", "package.name"),
            ("invalid_version", "package.version"),
            ("missing_field", "package.description"),
            ("invalid_field", "package.task"),
            ("invalid_field", "package.tags[0]"),
            ("invalid_package_name", "dependencies.nope"),
            ("invalid_field", "solvers[0].name"),
            ("invalid_field", "solvers[0].class"),
            ("invalid_path", "weights[0].path"),
            ("invalid_url", "weights[1].url"),
            ("missing_field", "weights[1].sha256"),
            ("missing_field", "weights[1].size"),
            ("invalid_field", "metrics.accuracy"),
        ]
    )
    message = str(info.value)
    assert message.startswith("cvflow.toml has 15 problems")
    assert "did you mean 'description'?" in message
    assert "did you mean 'demo'?" in message
    assert isinstance(info.value, ValidationError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[package]\nversion = "1.0.0"\ndescription = "d"', ("missing_field", "package.name")),
        ('[package]\nname = "a/b"\ndescription = "d"', ("missing_field", "package.version")),
        ('[package]\nname = "a/b"\nversion = "1.0.0"', ("missing_field", "package.description")),
        ("[dependencies]", ("missing_field", "package")),
        ('package = "x"', ("missing_field", "package")),
    ],
)
def test_required_fields(toml, expected):
    assert expected in problems(toml)


@pytest.mark.parametrize(
    ("key", "bad", "good", "code"),
    [
        ("name", '"demo"', '"demo/y"', "invalid_package_name"),
        ("name", "3", '"demo/y"', "invalid_field"),
        ("version", '"1.0"', '"1.0.1"', "invalid_version"),
        ("description", '""', '"ok"', "invalid_field"),
        ("description", '"""two\nlines"""', '"one line"', "invalid_field"),
        ("description", '"' + "d" * 513 + '"', '"' + "d" * 512 + '"', "invalid_field"),
        ("license", '"MIT; rm -rf"', '"LicenseRef-Custom"', "invalid_field"),
        ("task", '"Classification"', '"detection"', "invalid_field"),
        ("tags", '["ok", "ok"]', '["ok", "fine-2"]', "invalid_field"),
        ("tags", '["' + "t" * 33 + '"]', '["' + "t" * 32 + '"]', "invalid_field"),
        (
            "tags",
            str([f"t{i}" for i in range(21)]),
            str([f"t{i}" for i in range(20)]),
            "invalid_field",
        ),
        ("tags", '"digits"', '["digits"]', "invalid_field"),
        ("readme", '"/abs/README.md"', '"docs/README.md"', "invalid_path"),
        ("homepage", '"example.org"', '"http://example.org"', "invalid_url"),
        ("homepage", '"https://user:pw@example.org"', '"https://example.org"', "invalid_url"),
        ("repository", '"git@github.com:a/b"', '"https://github.com/a/b"', "invalid_url"),
        ("python", '"3.10+"', '">=3.10,<4"', "invalid_field"),
        (
            "requirements",
            '["numpy >>> 1"]',
            '["numpy>=1.24", "torch==2.1; extra == \'gpu\'"]',
            "invalid_requirement",
        ),
        ("requirements", '"numpy"', '["numpy"]', "invalid_field"),
        ("framework", '"' + "f" * 65 + '"', '"onnxruntime"', "invalid_field"),
        ("allow_pickle", '"yes"', "true", "invalid_field"),
        ("licence", '"MIT"', None, "unknown_key"),
    ],
)
def test_package_field_rules(key, bad, good, code):
    found = problems(with_package(**{key: bad}))
    assert len(found) == 1
    assert found[0][0] == code
    assert found[0][1] in (f"package.{key}", f"package.{key}[0]", f"package.{key}[1]")
    if good is not None:
        parse(with_package(**{key: good}))


def test_tool_table_is_ignored_but_other_unknown_tables_are_not():
    parse(MINIMAL + "[tool.black]\nline-length = 3\n")
    assert ("unknown_key", "metadata") in problems(MINIMAL + "[metadata]\nx = 1\n")


def test_dependency_rules():
    ok = parse(MINIMAL + '[dependencies]\n"demo/y" = "*"\n"demo/z" = "1.2.3"\n')
    assert ok.dependencies["demo/z"].is_exact
    assert problems(MINIMAL + '[dependencies]\n"demo/y" = "~> 1"\n') == [
        ("invalid_version_range", "dependencies.demo/y")
    ]
    assert problems(MINIMAL + '[dependencies]\n"demo/y" = 1\n') == [("invalid_version_range", "dependencies.demo/y")]
    assert problems(MINIMAL + '[dependencies]\n"demo/x" = "^1"\n') == [("invalid_field", "dependencies.demo/x")]
    assert problems('dependencies = ["demo/y"]\n' + MINIMAL) == [("invalid_field", "dependencies")]


def solver(body):
    return MINIMAL + "[[solvers]]\n" + textwrap.dedent(body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('name = "a b"\nclass = "m:C"', ("invalid_field", "solvers[0].name")),
        ('name = "' + "s" * 65 + '"\nclass = "m:C"', ("invalid_field", "solvers[0].name")),
        ('class = "m:C"', ("missing_field", "solvers[0].name")),
        ('name = "s"', ("missing_field", "solvers[0].class")),
        ('name = "s"\nclass = "m.C"', ("invalid_field", "solvers[0].class")),
        ('name = "s"\nclass = "m:C.D"', ("invalid_field", "solvers[0].class")),
        ('name = "s"\nclass = "1m:C"', ("invalid_field", "solvers[0].class")),
        (
            'name = "s"\nclass = "m:C"\nbatch = { max_size = 0 }',
            ("invalid_field", "solvers[0].batch.max_size"),
        ),
        (
            'name = "s"\nclass = "m:C"\nbatch = { max_size = 2, max_wait_ms = -1 }',
            ("invalid_field", "solvers[0].batch.max_wait_ms"),
        ),
        (
            'name = "s"\nclass = "m:C"\nbatch = { max_size = 2, wait = 1 }',
            ("unknown_key", "solvers[0].batch.wait"),
        ),
        ('name = "s"\nclass = "m:C"\nbatch = 4', ("invalid_field", "solvers[0].batch")),
        ('name = "s"\nclass = "m:C"\nclas = "x"', ("unknown_key", "solvers[0].clas")),
        ('name = "s"\nclass = "m:C"\ninputs = "image"', ("invalid_field", "solvers[0].inputs")),
        ('name = "s"\nclass = "m:C"\ninputs = { img = "picture" }', ("invalid_field", "solvers[0].inputs.img")),
        ('name = "s"\nclass = "m:C"\ninputs = { img = 3 }', ("invalid_field", "solvers[0].inputs.img")),
        ('name = "s"\nclass = "m:C"\ninputs = { "top-k" = "integer" }', ("invalid_field", "solvers[0].inputs.top-k")),
        ('name = "s"\nclass = "m:C"\noutputs = { boxes = "" }', ("invalid_field", "solvers[0].outputs.boxes")),
        ('name = "s"\nclass = "m:C"\noutputs = ["boxes"]', ("invalid_field", "solvers[0].outputs")),
    ],
)
def test_solver_rules(body, expected):
    assert expected in problems(solver(body))


def test_solver_inputs_and_outputs_are_kept_and_round_trip():
    body = ('name = "s"\nclass = "m:C"\ninputs = { image = "image: the photo", top_k = "integer" }\n'
            'outputs = { label = "the class name", score = "its probability" }')
    m = parse(solver(body))
    [s] = m.solvers
    assert s.inputs == {"image": "image: the photo", "top_k": "integer"}
    assert s.input_kinds() == {"image": "image", "top_k": "integer"}
    assert s.outputs == {"label": "the class name", "score": "its probability"}
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert parse_manifest(m.to_toml()) == m
    assert parse(solver('name = "s"\nclass = "m:C"')).to_dict()["solvers"][0]["inputs"] is None


def test_solver_batch_defaults_and_duplicates():
    m = parse(solver('name = "s"\nclass = "a.b_c:D"\nbatch = { max_size = 4 }'))
    assert m.solvers[0].batch == BatchPolicy(4, 0.0)
    twice = solver('name = "s"\nclass = "m:C"\n') + '[[solvers]]\nname = "s"\nclass = "m:D"\n'
    assert problems(twice) == [("duplicate_solver", "solvers[1].name")]
    assert problems('solvers = "s"\n' + MINIMAL) == [("invalid_field", "solvers")]


def weight(body, *, allow_pickle=False):
    head = MINIMAL + ("allow_pickle = true\n" if allow_pickle else "")
    return head + "[[weights]]\n" + textwrap.dedent(body)


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        ("w/a.safetensors", "safetensors"),
        ("w/a.ONNX", "onnx"),
        ("w/a.pt", "pickle"),
        ("w/a.pth", "pickle"),
        ("w/a.pkl", "pickle"),
        ("w/a.bin", "pickle"),
        ("w/a.joblib", "pickle"),
        ("w/haarcascade.xml", "other"),
        ("w/noext", "other"),
    ],
)
def test_weight_format_is_guessed_from_the_suffix(path, fmt):
    m = parse(weight(f'path = "{path}"', allow_pickle=True))
    assert m.weights[0].format == fmt


def test_pickle_weights_need_allow_pickle():
    assert problems(weight('path = "w/model.pt"')) == [("pickle_not_allowed", "weights[0].format")]
    assert problems(weight('path = "w/model.bin"\nformat = "pickle"')) == [("pickle_not_allowed", "weights[0].format")]
    assert parse(weight('path = "w/model.pt"', allow_pickle=True)).allow_pickle
    # The author may state that a .bin file is not a pickle.
    assert parse(weight('path = "w/model.bin"\nformat = "other"')).weights[0].format == "other"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('url = "https://x.org/a"', ("missing_field", "weights[0].path")),
        ('path = "a\\\\b"', ("invalid_path", "weights[0].path")),
        ('path = "w/a"\nurl = "https://x.org/a"\nsize = 1', ("missing_field", "weights[0].sha256")),
        (
            f'path = "w/a"\nurl = "https://x.org/a"\nsha256 = "{DIGEST}"',
            ("missing_field", "weights[0].size"),
        ),
        ('path = "w/a"\nsha256 = "ABC"', ("invalid_digest", "weights[0].sha256")),
        ('path = "w/a"\nsize = -1', ("invalid_size", "weights[0].size")),
        ('path = "w/a"\nformat = "h5"', ("invalid_field", "weights[0].format")),
        (
            'path = "w/a"\nurl = "file:///etc/passwd"\nsize = 1\nsha256 = "' + DIGEST + '"',
            ("invalid_url", "weights[0].url"),
        ),
        ('path = "w/a"\nmirror = "x"', ("unknown_key", "weights[0].mirror")),
    ],
)
def test_weight_rules(body, expected):
    assert expected in problems(weight(body))


def test_duplicate_weights_are_refused():
    text = weight('path = "w/a.onnx"\n') + '[[weights]]\npath = "w/a.onnx"\n'
    assert problems(text) == [("duplicate_weight", "weights[1].path")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('accuracy = "0.9"', ("invalid_field", "metrics.accuracy")),
        ("accuracy = true", ("invalid_field", "metrics.accuracy")),
        ("accuracy = nan", ("invalid_field", "metrics.accuracy")),
        ("accuracy = inf", ("invalid_field", "metrics.accuracy")),
        ('"top 1" = 0.5', ("invalid_field", "metrics.top 1")),
    ],
)
def test_metric_rules(line, expected):
    assert problems(MINIMAL + f"[metrics]\n{line}\n") == [expected]


# -- legacy CVPM ------------------------------------------------------------------------------

CVPM = """
[package]
name = "Face_Utility"
version = "0.0.1"
author = ["Xiaozhe Yao"]
description = "Face detection and landmarks"
license = "MIT"

[[solvers]]
name = "Face Detection"
class = "face_utility.solvers.detect.FaceDetectionSolver"

[[solvers]]
name = "landmarks"
class = "face_utility.landmarks:LandmarkSolver"

[dependency]
cvpm = "0.0.1"
"""

PRETRAINED = """
[[models]]
name = "shape_predictor_68_face_landmarks.dat"
url = "https://example.org/landmarks.dat"

[[models]]
name = "detector.pth"
url = "https://example.org/detector.pth"
"""


def test_legacy_cvpm_pair_maps_onto_a_manifest():
    m = parse_cvpm(CVPM, PRETRAINED, namespace="cvpm")
    assert m.legacy and m.allow_pickle
    assert str(m.name) == "cvpm/face-utility"  # legacy_package_name; the original starts the description
    assert str(m.version) == "0.0.1"
    assert (m.description, m.license) == ("Face_Utility: Face detection and landmarks", "MIT")
    assert m.solvers == [
        Solver("face-detection", "face_utility.solvers.detect:FaceDetectionSolver"),
        Solver("landmarks", "face_utility.landmarks:LandmarkSolver"),
    ]
    assert m.weights == [
        Weight(
            "weights/shape_predictor_68_face_landmarks.dat",
            "https://example.org/landmarks.dat",
            None,
            None,
            "other",
        ),
        Weight("weights/detector.pth", "https://example.org/detector.pth", None, None, "pickle"),
    ]
    assert Manifest.from_dict(m.to_dict()) == m


def test_legacy_without_pretrained_and_description():
    m = parse_cvpm('[package]\nname = "x"\nversion = "1.0.0"\n', None, namespace="someone")
    assert (str(m.name), m.description, m.weights, m.solvers) == ("someone/x", "", [], [])


def test_legacy_problems_are_collected():
    cvpm = '[package]\nname = "x"\nversion = "1.0"\n[[solvers]]\nname = "s"\nclass = "Bare"\n'
    with pytest.raises(ManifestError) as info:
        parse_cvpm(cvpm, '[[models]]\nurl = "https://x.org/m"\n', namespace="Bad_NS")
    assert {(p.code, p.field) for p in info.value.problems} == {
        ("invalid_package_name", "package.name"),
        ("invalid_version", "package.version"),
        ("invalid_field", "solvers[0].class"),
        ("missing_field", "weights[0].path"),
    }
    assert str(info.value).startswith("cvpm.toml has 4 problems")
    with pytest.raises(ManifestError, match=r"pretrained\.toml"):
        parse_cvpm(CVPM, "[[models]\n", namespace="cvpm")


# -- package directories and file checks ------------------------------------------------------


def write(root, files):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def test_load_package_dir_prefers_cvflow_toml(tmp_path):
    write(tmp_path, {"cvflow.toml": MINIMAL, "cvpm.toml": CVPM})
    assert str(load_package_dir(tmp_path).name) == "demo/x"


def test_load_package_dir_reads_legacy_with_a_namespace(tmp_path):
    write(tmp_path, {"cvpm.toml": CVPM, "pretrained.toml": PRETRAINED})
    with pytest.raises(ManifestError, match="namespace"):
        load_package_dir(tmp_path)
    m = load_package_dir(str(tmp_path), namespace="cvpm")
    assert m.legacy and len(m.weights) == 2


def test_load_package_dir_errors(tmp_path):
    with pytest.raises(ManifestError, match=r"no cvflow\.toml"):
        load_package_dir(tmp_path)
    write(tmp_path, {"cvflow.toml": b"\xff\xfe not utf-8"})
    with pytest.raises(ManifestError, match="cannot read"):
        load_package_dir(tmp_path)
    write(tmp_path, {"cvflow.toml": "[package]\nname = 'demo/x'\n"})
    with pytest.raises(ManifestError) as info:
        load_package_dir(tmp_path)
    assert str(tmp_path / MANIFEST_FILENAME) in str(info.value)


def entries(*paths, sha=DIGEST, size=1):
    return [FileEntry(p, size, sha) for p in paths]


def test_check_files_against_manifest():
    m = parse(FULL)
    complete = entries("cvflow.toml", "docs/README.md", "weights/model.safetensors", "solver.py")
    assert check_files_against_manifest(m, complete) == []
    found = check_files_against_manifest(m, entries("solver.py"))
    assert [(p.code, p.field) for p in found] == [
        ("missing_file", "files"),
        ("missing_file", "package.readme"),
        ("missing_file", "weights[0].path"),
    ]


def test_check_files_compares_stated_digest_and_size():
    m = parse(weight(f'path = "w/a.onnx"\nsha256 = "{DIGEST}"\nsize = 5'))
    assert check_files_against_manifest(m, entries("cvflow.toml", "w/a.onnx", size=5)) == []
    wrong = [*entries("cvflow.toml"), FileEntry("w/a.onnx", 6, "f" * 64)]
    codes = [p.code for p in check_files_against_manifest(m, wrong)]
    assert codes == ["invalid_digest", "invalid_size"]


def test_check_files_for_legacy_needs_cvpm_files():
    m = parse_cvpm(CVPM, PRETRAINED, namespace="cvpm")
    assert check_files_against_manifest(m, entries("cvpm.toml", "pretrained.toml")) == []
    assert [p.message for p in check_files_against_manifest(m, entries("cvpm.toml"))] == [
        "pretrained.toml is not in the package"
    ]


def test_readme_path_defaults_to_readme_md_when_present():
    m = parse(MINIMAL)
    assert m.readme_path(["README.md", "a.py"]) == "README.md"
    assert m.readme_path(["a.py"]) is None
    assert parse(FULL).readme_path([]) == "docs/README.md"


# -- cvflow validate --------------------------------------------------------------------------


def good_package(root):
    weights = b"\x00weights"
    digest = hashlib.sha256(weights).hexdigest()
    write(
        root,
        {
            "cvflow.toml": MINIMAL
            + "[[solvers]]\nname = 's'\nclass = 'solver:S'\n"
            + f"[[weights]]\npath = 'weights/m.onnx'\nsha256 = '{digest}'\n",
            "solver.py": "class S: ...\n",
            "weights/m.onnx": weights,
            ".git/HEAD": "ref: x",
            "__pycache__/solver.cpython-311.pyc": b"",
        },
    )


def test_cli_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_cli_validate_accepts_a_good_package(tmp_path):
    good_package(tmp_path)
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ok: demo/x 0.1.0: 3 files, 1 solver, 1 weight" in result.output


def test_cli_validate_reports_file_problems_and_exits_1(tmp_path):
    good_package(tmp_path)
    (tmp_path / "weights/m.onnx").write_bytes(b"changed")
    (tmp_path / "Solver.py").write_text("dup")
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "'solver.py' collides with 'Solver.py'" in result.output
    assert "does not match the file" in result.output  # reported in the same run


def test_cli_validate_reports_digest_mismatch(tmp_path):
    good_package(tmp_path)
    (tmp_path / "weights/m.onnx").write_bytes(b"changed")
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "weights[0].sha256: sha256 of 'weights/m.onnx' does not match the file" in result.output


def test_cli_validate_reports_every_manifest_problem(tmp_path):
    write(tmp_path, {"cvflow.toml": '[package]\nname = "X"\nversion = "1"\n'})
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "package.name" in result.output and "package.version" in result.output
    assert "package.description" in result.output


def test_cli_validate_refuses_symlinks(tmp_path):
    good_package(tmp_path)
    (tmp_path / "link").symlink_to("/etc")
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1 and "link: symlinks cannot be packaged" in result.output


def test_cli_validate_legacy_needs_namespace(tmp_path):
    write(tmp_path, {"cvpm.toml": CVPM, "pretrained.toml": PRETRAINED})
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1 and "--namespace" in result.output
    result = CliRunner().invoke(main, ["validate", str(tmp_path), "--namespace", "cvpm"])
    assert result.exit_code == 0, result.output
    assert "ok: cvpm/face-utility 0.0.1" in result.output

"""Package file paths and file lists (cvflow.paths)."""

import pytest

from cvflow.errors import InvalidPathError, ValidationError
from cvflow.paths import SHA256_RE, FileEntry, validate_file_list, validate_path

DIGEST = "ab" * 32


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "README.md",
        "weights/model.safetensors",
        "a/b/c/d.txt",
        ".hidden",
        "..foo",
        "ab:c",
        "日本語/ファイル.txt",
        "x" * 255,
        "/".join(["y" * 200] * 5),
    ],
)
def test_valid_paths_are_returned_unchanged(path):
    assert validate_path(path) == path


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("C:x", "drive letter"),
        ("c:/x", "drive letter"),
        ("a:b", "drive letter"),
        ("a\\b", "backslash"),
        ("a\x00b", "control character '\\x00'"),
        ("a\nb", "control character '\\n'"),
        ("a\x1fb", "control character"),
        ("a\x7fb", "control character '\\x7f'"),
        (".", "a '.' segment"),
        ("a/./b", "a '.' segment"),
        ("..", "a '..' segment"),
        ("a/../../etc", "a '..' segment"),
        ("a//b", "an empty segment"),
        ("a/", "an empty segment"),
        ("x" * 256, "segment longer than 255 bytes"),
        ("é" * 128, "segment longer than 255 bytes"),  # 256 bytes in UTF-8
        ("/".join(["y" * 200] * 6), "1024"),
        ("a\udcffb", "not valid UTF-8"),
    ],
)
def test_invalid_paths_are_refused_precisely(path, fragment):
    with pytest.raises(InvalidPathError) as info:
        validate_path(path)
    assert fragment in str(info.value)
    assert info.value.code == "invalid_path"


def test_non_string_path_is_refused():
    with pytest.raises(InvalidPathError, match="must be a string"):
        validate_path(b"a")  # type: ignore[arg-type]


def test_sha256_pattern():
    assert SHA256_RE.match(DIGEST)
    assert not SHA256_RE.match(DIGEST.upper())
    assert not SHA256_RE.match(DIGEST[:-1])
    assert not SHA256_RE.match(DIGEST + "\n")


def entry(path, size=1, sha256=DIGEST):
    return {"path": path, "size": size, "sha256": sha256}


def test_valid_file_list_becomes_entries_in_order():
    files = validate_file_list([entry("cvflow.toml", 10), entry("weights/a.bin", 0)])
    assert files == [FileEntry("cvflow.toml", 10, DIGEST), FileEntry("weights/a.bin", 0, DIGEST)]


def test_empty_file_list_is_fine():
    assert validate_file_list([]) == []


def test_extra_keys_in_entries_are_ignored():
    assert validate_file_list([{**entry("a"), "mode": 420}]) == [FileEntry("a", 1, DIGEST)]


def problems_of(files):
    with pytest.raises(InvalidPathError) as info:
        validate_file_list(files)
    return [(p.code, p.field) for p in info.value.problems]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (entry("../x"), ("invalid_path", "files[0].path")),
        ({"size": 1, "sha256": DIGEST}, ("invalid_path", "files[0].path")),
        (entry("a", size=-1), ("invalid_size", "files[0].size")),
        (entry("a", size=True), ("invalid_size", "files[0].size")),
        (entry("a", size=1.0), ("invalid_size", "files[0].size")),
        ({"path": "a", "sha256": DIGEST}, ("invalid_size", "files[0].size")),
        (entry("a", sha256=DIGEST.upper()), ("invalid_digest", "files[0].sha256")),
        (entry("a", sha256="abc"), ("invalid_digest", "files[0].sha256")),
        ({"path": "a", "size": 1}, ("invalid_digest", "files[0].sha256")),
        ("a", ("invalid_path", "files[0]")),
    ],
)
def test_each_bad_entry_is_reported_at_its_field(bad, expected):
    assert problems_of([bad]) == [expected]


def test_duplicates_and_case_insensitive_collisions_are_refused():
    assert problems_of([entry("a.txt"), entry("a.txt")]) == [("duplicate_path", "files[1].path")]
    with pytest.raises(InvalidPathError, match=r"collides with 'A\.txt'"):
        validate_file_list([entry("A.txt"), entry("a.txt")])
    assert problems_of([entry("Dir/x"), entry("dir/x")]) == [("duplicate_path", "files[1].path")]


def test_unicode_normalisation_collisions_are_refused():
    nfc, nfd = "caf\u00e9.txt", "cafe\u0301.txt"
    assert problems_of([entry(nfc), entry(nfd)]) == [("duplicate_path", "files[1].path")]


def test_a_path_cannot_be_both_a_file_and_a_directory():
    assert problems_of([entry("a"), entry("a/b")]) == [("duplicate_path", "files[1].path")]
    assert problems_of([entry("x/y/z"), entry("x/y")]) == [("duplicate_path", "files[0].path")]
    assert problems_of([entry("A"), entry("a/b")]) == [("duplicate_path", "files[1].path")]
    # A shared name prefix is not a directory prefix.
    assert len(validate_file_list([entry("ab"), entry("a/b"), entry("a.b")])) == 3


def test_all_problems_are_collected_at_once():
    files = [
        entry("ok.txt"),
        entry("/abs", size=-5),
        entry("bad\\path", sha256="nope"),
        entry("OK.txt"),
        {"path": "x"},
    ]
    with pytest.raises(InvalidPathError) as info:
        validate_file_list(files)
    err = info.value
    assert isinstance(err, ValidationError) and isinstance(err, ValueError)
    assert [(p.code, p.field) for p in err.problems] == [
        ("invalid_path", "files[1].path"),
        ("invalid_size", "files[1].size"),
        ("invalid_path", "files[2].path"),
        ("invalid_digest", "files[2].sha256"),
        ("duplicate_path", "files[3].path"),
        ("invalid_size", "files[4].size"),
        ("invalid_digest", "files[4].sha256"),
    ]
    text = str(err)
    assert text.startswith("file list has 7 problems")
    assert "files[1].path: path '/abs' is absolute" in text


def test_file_list_must_be_a_list():
    with pytest.raises(InvalidPathError, match="must be a list"):
        validate_file_list({"path": "a"})  # type: ignore[arg-type]

"""Namespace and package name rules (cvflow.names)."""

import pytest

from cvflow.errors import InvalidNameError, ValidationError
from cvflow.names import (
    NAME_RE,
    NAMESPACE_RE,
    RESERVED_NAMESPACES,
    PackageName,
    validate_name,
    validate_namespace,
)


@pytest.mark.parametrize("ns", ["ab", "demo", "a-b", "a1-2b", "x" * 39, "0day", "my-org-42"])
def test_valid_namespaces_are_returned_unchanged(ns):
    assert validate_namespace(ns) == ns
    assert NAMESPACE_RE.match(ns)


@pytest.mark.parametrize(
    ("ns", "fragment"),
    [
        ("", "empty"),
        ("a", "1 characters long; it must be 2-39"),
        ("x" * 40, "40 characters long"),
        ("-ab", "start and end with a letter or digit"),
        ("ab-", "start and end with a letter or digit"),
        ("a--b", "two separators in a row"),
        ("a_b", "'_'"),
        ("a.b", "'.'"),
        ("a b", "' '"),
        ("café", "'é'"),
        ("ab\n", "'\\n'"),
    ],
)
def test_invalid_namespaces_say_which_rule_broke(ns, fragment):
    with pytest.raises(InvalidNameError) as info:
        validate_namespace(ns)
    assert fragment in str(info.value)
    assert info.value.code == "invalid_package_name"
    assert not NAMESPACE_RE.match(ns)


def test_uppercase_namespace_suggests_lowercase_form():
    with pytest.raises(InvalidNameError, match="lowercase; did you mean 'my-org'"):
        validate_namespace("My-Org")


@pytest.mark.parametrize("ns", sorted(RESERVED_NAMESPACES))
def test_reserved_namespaces_are_refused(ns):
    with pytest.raises(InvalidNameError, match="reserved"):
        validate_namespace(ns)


def test_reserved_check_ignores_case_so_no_reserved_name_is_suggested():
    with pytest.raises(InvalidNameError) as info:
        validate_namespace("API")
    assert "reserved" in str(info.value) and "did you mean" not in str(info.value)


def test_reserved_list_covers_the_site_routes():
    assert {"api", "admin", "static", "login", "zoo", "healthz", "docs"} <= RESERVED_NAMESPACES


@pytest.mark.parametrize("name", ["a", "x", "lenet", "digits-lenet", "face_utility", "yolo.v8", "a1.b-2_c", "n" * 64])
def test_valid_names(name):
    assert validate_name(name) == name
    assert NAME_RE.match(name)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("n" * 65, "65 characters long"),
        ("-a", "start and end"),
        ("a.", "start and end"),
        ("_a", "start and end"),
        ("a..b", "two separators in a row"),
        ("a-_b", "two separators in a row"),
        ("a/b", "'/'"),
        ("a b", "' '"),
        ("a\x00b", "'\\x00'"),
    ],
)
def test_invalid_names_say_which_rule_broke(name, fragment):
    with pytest.raises(InvalidNameError) as info:
        validate_name(name)
    assert fragment in str(info.value)
    assert not NAME_RE.match(name)


def test_uppercase_name_suggests_lowercase_form():
    with pytest.raises(InvalidNameError, match="did you mean 'digits_lenet'"):
        validate_name("Digits_LeNet")


def test_reserved_words_are_fine_as_package_names():
    # Only namespaces share URL space with the website's routes.
    assert validate_name("api") == "api"


def test_non_strings_are_refused_with_a_name_error():
    with pytest.raises(InvalidNameError, match="must be a string"):
        validate_name(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError, match="must be a string"):
        validate_namespace(None)  # type: ignore[arg-type]


def test_name_error_is_also_a_value_error():
    with pytest.raises(ValueError):
        validate_name("A B")
    assert issubclass(InvalidNameError, ValidationError)


def test_package_name_parse_and_str_round_trip():
    name = PackageName.parse("demo/digits-lenet")
    assert name == PackageName("demo", "digits-lenet")
    assert (name.namespace, name.name) == ("demo", "digits-lenet")
    assert str(name) == "demo/digits-lenet"
    assert PackageName.parse(str(name)) == name


@pytest.mark.parametrize("text", ["demo", "demo/a/b", "/a", "", "demo/"])
def test_package_name_needs_exactly_one_slash_and_both_parts(text):
    with pytest.raises(InvalidNameError):
        PackageName.parse(text)


def test_package_name_with_two_bad_parts_reports_both():
    with pytest.raises(InvalidNameError) as info:
        PackageName.parse("API/x..y")
    fields = [p.field for p in info.value.problems]
    assert fields == ["namespace", "name"]
    assert "API/x..y" in str(info.value)


def test_package_name_refuses_reserved_namespace():
    with pytest.raises(InvalidNameError, match="reserved"):
        PackageName.parse("admin/tool")


def test_package_name_cannot_be_built_invalid_directly():
    with pytest.raises(InvalidNameError):
        PackageName("Demo", "x")


def test_package_names_are_hashable_and_sortable():
    names = [PackageName.parse(s) for s in ["zz/a", "aa/b", "aa/a"]]
    assert [str(n) for n in sorted(names)] == ["aa/a", "aa/b", "zz/a"]
    assert len({PackageName.parse("aa/a"), PackageName("aa", "a")}) == 1

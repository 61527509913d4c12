"""SemVer versions and version ranges (cvflow.versions)."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvflow.errors import InvalidRangeError, InvalidVersionError
from cvflow.versions import Version, VersionRange

V = Version.parse


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "0.0.0",
        "1.2.3",
        "10.20.30",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-0.3.7",
        "1.0.0-x.7.z.92",
        "1.0.0-x-y-z.--",
        "1.0.0-alpha+001",
        "1.0.0+20130313144700",
        "1.0.0-beta+exp.sha.5114f85",
        "1.0.0+21AF26D3----117B344092BD",
        "1.0.0-0A.is.legal",
        "9999999999.0.0",
    ],
)
def test_valid_versions_round_trip(text):
    assert str(V(text)) == text


def test_parse_splits_fields_and_types_prerelease_identifiers():
    v = V("1.2.3-rc.10.x-1+build.007")
    assert (v.major, v.minor, v.patch) == (1, 2, 3)
    assert v.prerelease == ("rc", 10, "x-1")
    assert v.build == ("build", "007")  # build identifiers may have leading zeros
    assert v.is_prerelease
    assert not V("1.2.3+b").is_prerelease


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("1", "three parts"),
        ("1.2", "three parts"),
        ("1.2.3.4", "three parts"),
        ("01.2.3", "leading zero"),
        ("1.02.3", "leading zero"),
        ("1.2.03", "leading zero"),
        ("1.2.3-01", "leading zero"),
        ("v1.2.3", "must not start with 'v'; write '1.2.3'"),
        ("V1.2.3", "must not start with 'V'"),
        (" 1.2.3", "whitespace"),
        ("1.2.3 ", "whitespace"),
        ("1.2.3-", "empty pre-release section"),
        ("1.2.3+", "empty build section"),
        ("1.2.3-a..b", "empty pre-release identifier"),
        ("1.2.3+a..b", "empty build identifier"),
        ("1.2.3-a_b", "[0-9A-Za-z-]"),
        ("1.2.3+é", "[0-9A-Za-z-]"),
        ("1.x.3", "not a number"),
        ("1.٣.3", "not a number"),  # a non-ASCII digit
        ("-1.2.3", "not a number"),
        ("1.2.3\n", "whitespace"),
        ("99999999999.0.0", "0-9999999999"),
    ],
)
def test_invalid_versions_are_refused_with_a_reason(text, fragment):
    with pytest.raises(InvalidVersionError) as info:
        V(text)
    assert fragment in str(info.value)
    assert info.value.code == "invalid_version"


def test_overlong_versions_are_refused():
    with pytest.raises(InvalidVersionError, match="longer than 256"):
        V("1.0.0-" + "a" * 300)


def test_non_string_is_refused():
    with pytest.raises(InvalidVersionError, match="must be a string"):
        V(1.0)  # type: ignore[arg-type]


def test_parse_tag_accepts_a_leading_v():
    assert Version.parse_tag("v1.2.3") == V("1.2.3")
    assert Version.parse_tag("V2.0.0-rc.1") == V("2.0.0-rc.1")
    assert Version.parse_tag("1.2.3") == V("1.2.3")
    with pytest.raises(InvalidVersionError):
        Version.parse_tag("v1.2")
    with pytest.raises(InvalidVersionError):
        Version.parse_tag("release-1.2.3")


def test_constructor_refuses_what_parse_would_refuse():
    with pytest.raises(InvalidVersionError):
        Version(-1, 0, 0)
    with pytest.raises(InvalidVersionError):
        Version(1, 0, 0, ("01",))  # numeric identifiers are ints
    with pytest.raises(InvalidVersionError):
        Version(1, 0, 0, ("",))
    with pytest.raises(InvalidVersionError):
        Version(1, 0, 0, (), ("a+b",))
    assert str(Version(1, 0, 0, ("rc", 1))) == "1.0.0-rc.1"


# -- precedence ------------------------------------------------------------------------------

# The exact example chain from semver.org section 11.
SEMVER_ORG_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
    "10.0.0",
]


def test_precedence_follows_semver_org_examples():
    shuffled = SEMVER_ORG_ORDER[:]
    random.Random(4).shuffle(shuffled)
    assert [str(v) for v in sorted(V(t) for t in shuffled)] == SEMVER_ORG_ORDER
    for low, high in itertools.pairwise(SEMVER_ORG_ORDER):
        assert V(low) < V(high) and V(high) > V(low)
        assert V(low) <= V(high) and V(high) >= V(low)


def test_ascii_order_for_alphanumeric_identifiers():
    assert V("1.0.0-Beta") < V("1.0.0-alpha")  # uppercase sorts before lowercase in ASCII
    assert V("1.0.0-a") < V("1.0.0-a-")  # a prefix sorts first
    assert V("1.0.0-1") < V("1.0.0-a")  # numeric before alphanumeric


def test_build_metadata_is_ignored_for_precedence_but_not_equality():
    a, b = V("1.0.0+a"), V("1.0.0+b")
    assert a != b  # structural equality
    assert not a < b and not b < a
    assert a <= b and a >= b
    assert a.key == b.key
    assert a.precedence_str == b.precedence_str == "1.0.0"
    assert V("1.0.0-rc.1+x").precedence_str == "1.0.0-rc.1"
    assert hash(a) != hash(b) or a == b  # usable in sets; distinct builds stay distinct
    assert len({a, b, V("1.0.0+a")}) == 2


def test_comparison_with_other_types_is_not_supported():
    with pytest.raises(TypeError):
        _ = V("1.0.0") < "1.0.1"  # type: ignore[operator]
    assert V("1.0.0") != "1.0.0"


# Small pools make equal prefixes common, which is where orderings go wrong
# ("a" vs "a.b", "a" vs "a-", 2 vs 10); the wide strategies cover the limits.
identifiers = st.one_of(
    st.integers(0, 11),
    st.sampled_from(["a", "b", "a-", "-", "A", "0a", "alpha", "alpha-1", "Z"]),
    st.integers(min_value=0, max_value=10**20 - 1),
    st.from_regex(r"[0-9A-Za-z-]{0,3}[A-Za-z-][0-9A-Za-z-]{0,3}", fullmatch=True),
)
versions = st.builds(
    Version,
    major=st.integers(0, 1) | st.integers(0, 10**10 - 1),
    minor=st.integers(0, 1),
    patch=st.integers(0, 1),
    prerelease=st.lists(identifiers, max_size=3).map(tuple),
    build=st.lists(st.from_regex(r"[0-9A-Za-z-]{1,4}", fullmatch=True), max_size=2).map(tuple),
)


@settings(max_examples=300)
@given(st.lists(versions, max_size=30))
def test_sort_key_text_sorts_like_version_precedence(vs):
    by_text = sorted(vs, key=lambda v: v.sort_key_text)
    by_version = sorted(vs)
    assert [v.key for v in by_text] == [v.key for v in by_version]


@settings(max_examples=500)
@given(versions, versions)
def test_sort_key_text_agrees_pairwise_and_ignores_build(a, b):
    assert (a.sort_key_text < b.sort_key_text) == (a < b)
    assert (a.sort_key_text == b.sort_key_text) == (a.key == b.key)


@given(versions)
def test_str_parse_round_trip(v):
    assert V(str(v)) == v


def test_sort_key_text_orders_the_tricky_neighbours():
    # Each pair differs only where a naive encoding goes wrong.
    chain = [
        *SEMVER_ORG_ORDER,
        "1.0.0-a",
        "1.0.0-a.1",
        "1.0.0-a.b",
        "1.0.0-a-",
        "1.0.0-ab",
        "1.0.0-2",
        "1.0.0-10",
        "1.0.0-99999999999999999999",
        "1.0.0-A",
        "1.0.0-Z.a",
        "9.0.0",
    ]
    expected = sorted((V(t) for t in chain), key=lambda v: v.key)
    assert sorted((V(t) for t in chain), key=lambda v: v.sort_key_text) == expected


def test_sort_key_text_uses_only_collation_safe_characters():
    for text in [*SEMVER_ORG_ORDER, "1.0.0-A-b.Z"]:
        assert set(V(text).sort_key_text) <= set("0123456789abcdefz.")
    assert V("1.2.3").sort_key_text.startswith("0000000001.0000000002.0000000003.")


# -- ranges ----------------------------------------------------------------------------------


def matches(rng, *versions, prereleases=False):
    r = VersionRange.parse(rng)
    return [r.contains(V(v), prereleases=prereleases) for v in versions]


def test_star_matches_every_release():
    assert matches("*", "0.0.0", "1.2.3", "99.0.0+b") == [True, True, True]
    assert matches("*", "1.0.0-rc.1") == [False]
    assert matches("*", "1.0.0-rc.1", prereleases=True) == [True]


def test_exact_pins():
    assert matches("1.2.3", "1.2.3", "1.2.3+build", "1.2.4", "1.2.2") == [True, True, False, False]
    assert matches("=1.2.3", "1.2.3", "1.2.4") == [True, False]
    assert VersionRange.parse("=1.2.3").is_exact
    assert VersionRange.parse("1.2.3").is_exact
    assert not VersionRange.parse("^1.2.3").is_exact
    assert not VersionRange.parse(">=1.2.3, <=1.2.3").is_exact


def test_exact_pin_needs_a_full_version():
    with pytest.raises(InvalidRangeError, match=r"write '\^1\.2' or '~1\.2'"):
        VersionRange.parse("1.2")


@pytest.mark.parametrize(
    ("rng", "inside", "outside"),
    [
        ("^1.2.3", ["1.2.3", "1.9.9", "1.2.3+b"], ["1.2.2", "2.0.0", "0.9.0"]),
        ("^0.2.3", ["0.2.3", "0.2.99"], ["0.2.2", "0.3.0", "1.0.0"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2", "0.1.0"]),
        ("^1.2", ["1.2.0", "1.99.0"], ["1.1.9", "2.0.0"]),
        ("^1", ["1.0.0", "1.99.99"], ["0.9.9", "2.0.0"]),
        ("^0", ["0.0.0", "0.99.0"], ["1.0.0"]),
        ("^0.0", ["0.0.0", "0.0.9"], ["0.1.0"]),
        ("^0.2", ["0.2.0", "0.2.9"], ["0.3.0", "0.1.9"]),
        ("~1.2.3", ["1.2.3", "1.2.99"], ["1.3.0", "1.2.2"]),
        ("~1.2", ["1.2.0", "1.2.5"], ["1.3.0", "1.1.0"]),
        ("~1", ["1.0.0", "1.9.0"], ["2.0.0", "0.9.0"]),
        ("~0.2.3", ["0.2.3", "0.2.4"], ["0.3.0"]),
        (">=1.2", ["1.2.0", "5.0.0"], ["1.1.9"]),
        (">1.2", ["1.2.1"], ["1.2.0"]),  # partials are padded with zeros
        ("<=1.2", ["1.2.0", "0.1.0"], ["1.2.1"]),
        ("<2", ["1.99.0"], ["2.0.0"]),
        ("!=1.5.0", ["1.4.0", "1.6.0"], ["1.5.0", "1.5.0+b"]),
        (">=1.2, <2", ["1.2.0", "1.9.9"], ["1.1.0", "2.0.0"]),
        (">= 1.2 ,< 2 , != 1.5.0", ["1.4.0"], ["1.5.0", "2.1.0"]),
    ],
)
def test_range_semantics(rng, inside, outside):
    r = VersionRange.parse(rng)
    assert all(r.contains(V(v)) for v in inside), inside
    assert not any(r.contains(V(v)) for v in outside), outside


def test_str_is_the_normalized_text():
    assert str(VersionRange.parse("  >= 1.2 ,<2  ")) == ">=1.2, <2"
    assert str(VersionRange.parse("=1.2.3")) == "1.2.3"
    assert str(VersionRange.parse("^ 1.2")) == "^1.2"
    assert str(VersionRange.parse("*")) == "*"
    r = VersionRange.parse(">=1.2, <2")
    assert VersionRange.parse(str(r)) == r
    assert hash(VersionRange.parse(">=1.2,<2")) == hash(r)
    assert repr(r) == "VersionRange('>=1.2, <2')"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "use '*'"),
        ("   ", "use '*'"),
        ("^1.2, ", "empty comparator"),
        (">=1 <2", "separate comparators with ','"),
        ("1.2.3 - 2.0.0", "separate comparators with ','"),
        ("^1 || ^2", "'||' (OR) is not supported"),
        ("*, >=1", "'*' cannot be combined"),
        ("==1.2.3", "write '=' instead of '=='"),
        ("~=1.2", "write '~' instead of '~='"),
        ("=>1.2", "write '>=' instead of '=>'"),
        ("1.2.x", "wildcards"),
        ("1.*", "wildcards"),
        (">=", "has no version"),
        ("^01.2", "leading zero"),
        ("^v1.2.3", "must not start with 'v'"),
        (">=1.2.3+build", "build metadata"),
        ("^1.2-rc.1", "three parts"),
        ("^9999999999", "0-9999999999"),
        ("foo", "not a"),
    ],
)
def test_invalid_ranges_are_refused_with_a_reason(text, fragment):
    with pytest.raises(InvalidRangeError) as info:
        VersionRange.parse(text)
    assert fragment in str(info.value)
    assert info.value.code == "invalid_version_range"


def test_prereleases_are_only_chosen_when_asked_for():
    assert matches("^1.0", "1.5.0-beta.1") == [False]
    assert matches("^1.0", "1.5.0-beta.1", prereleases=True) == [True]
    assert not VersionRange.parse("^1.0").allows_prereleases


def test_a_range_naming_a_prerelease_matches_prereleases_of_that_version_only():
    r = VersionRange.parse(">=1.0.0-rc.1")
    assert r.allows_prereleases
    assert r.contains(V("1.0.0-rc.2"))
    assert r.contains(V("1.0.0"))
    assert not r.contains(V("1.1.0-rc.1"))
    assert r.contains(V("1.1.0-rc.1"), prereleases=True)
    assert not r.contains(V("1.0.0-beta"), prereleases=True)  # below the bound


def test_caret_on_a_prerelease():
    assert matches("^1.2.3-beta.2", "1.2.3-beta.2", "1.2.3-beta.10", "1.2.3", "1.9.0") == [
        True,
        True,
        True,
        True,
    ]
    assert matches("^1.2.3-beta.2", "1.2.3-beta.1", "1.3.0-beta.1", "2.0.0") == [False] * 3


def test_exact_prerelease_pin():
    assert matches("1.0.0-rc.1", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0") == [True, False, False]


def test_excluding_a_prerelease_does_not_ask_for_prereleases():
    r = VersionRange.parse("!=1.0.0-rc.1")
    assert not r.allows_prereleases
    assert not r.contains(V("1.0.0-rc.2"))
    assert r.contains(V("1.0.0-rc.2"), prereleases=True)
    assert not r.contains(V("1.0.0-rc.1"), prereleases=True)


def test_upper_bound_never_admits_prereleases_of_the_bound_itself():
    # Otherwise ^1 with prereleases=True would choose 2.0.0-alpha over 1.x.
    for rng in ("^1", "~1", "<2", "<2.0.0", ">=1, <2.0.0"):
        assert matches(rng, "2.0.0-alpha", "1.5.0-rc.1", prereleases=True) == [False, True], rng
    assert matches("<2.0.0-rc.1", "2.0.0-beta", prereleases=True) == [True]
    assert matches("<=2.0.0", "2.0.0-beta", prereleases=True) == [True]


def test_best_match_picks_the_highest_contained_version():
    available = [V(t) for t in ["0.9.0", "1.0.0", "1.4.2", "1.5.0-rc.1", "2.0.0", "1.4.10"]]
    assert VersionRange.parse("^1.0").best_match(available) == V("1.4.10")
    assert VersionRange.parse("^1.0").best_match(available, prereleases=True) == V("1.5.0-rc.1")
    assert VersionRange.parse("*").best_match(available) == V("2.0.0")
    assert VersionRange.parse("^3").best_match(available) is None
    assert VersionRange.parse("^1").best_match([]) is None
    assert VersionRange.parse("~1.4").best_match(iter(available)) == V("1.4.10")


def test_in_operator():
    assert V("1.2.3") in VersionRange.parse("^1")
    assert V("2.0.0") not in VersionRange.parse("^1")
    assert "1.2.3" not in VersionRange.parse("^1")  # type: ignore[operator]


def test_non_string_range_is_refused():
    with pytest.raises(InvalidRangeError, match="must be a string"):
        VersionRange.parse(1)  # type: ignore[arg-type]

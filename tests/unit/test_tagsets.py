"""Tag rules as a table: the version grammar, ranges with `||`, variants, latest-N ties, match vs exclude, and
regexes that run in RE2's linear time with the answers Python's `re` gives for every documented pattern."""

from __future__ import annotations

import re

import pytest

from mirror.tagsets import Alternative, RuleError, Version, compile_pattern, parse_range, parse_rule, parse_version

TAGS = [
    "latest", "mainline", "stable", "stable-perl", "alpine",
    "1", "1.25", "1.25.5", "1.26", "1.26.0", "1.26.2", "1.27", "1.27.0", "1.27.3", "1.27.3-alpine", "1.27-alpine",
    "1.28.0-rc1", "2.0.0", "v1.26.1", "1.27.3.1", "20", "20.11.1-alpine", "22-alpine", "20-bookworm-slim",
    "1.2.3.4.5", "1.27.3a", "0.2.3", "0.2.9", "0.3.0",
]  # fmt: skip


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("1", Version((1, 0, 0, 0), 1, None)),
        ("1.27", Version((1, 27, 0, 0), 2, None)),
        ("v1.26.1", Version((1, 26, 1, 0), 3, None)),
        ("1.27.3.1", Version((1, 27, 3, 1), 4, None)),
        ("1.27.3-alpine", Version((1, 27, 3, 0), 3, "alpine")),
        ("20-bookworm-slim", Version((20, 0, 0, 0), 1, "bookworm-slim")),  # the variant is all after the first '-'
        ("1.28.0-rc1", Version((1, 28, 0, 0), 3, "rc1")),
        ("latest", None),
        ("stable-perl", None),
        ("1.2.3.4.5", None),  # five parts
        ("1.27.3a", None),
        ("V1.2", None),
        ("", None),
    ],
)
def test_the_version_grammar(tag: str, version: Version | None) -> None:
    assert parse_version(tag) == version


@pytest.mark.parametrize(
    ("rule", "selected"),
    [
        # releases newest first, each with the shorter tags that name it: 1.27.3, 1.27 and 1 float to 1.27.3.1, and
        # a range judges a group by the release it names (1 reads as 1.0, but names 1.27.3.1)
        ({"semver": ">=1.26 <2"}, ["1.27.3.1", "1.27.3", "1.27", "1", "1.27.0", "1.26.2", "1.26", "v1.26.1", "1.26.0"]),
        # latest counts releases, not names (without digests, by the names: see the module's docstring)
        ({"semver": ">=1.26 <2", "latest": 3}, ["1.27.3.1", "1.27.3", "1.27", "1", "1.27.0", "1.26.2", "1.26"]),
        # 1.27 names the newest 1.27.x (1.27.3.1), which is outside the range
        ({"semver": "<1.27.1 >=1.27", "latest": 1}, ["1.27.0"]),
        ({"semver": "=1.27"}, ["1.27.0"]),
        (
            {"semver": "1.27"},
            ["1.27.3.1", "1.27.3", "1.27", "1", "1.27.0"],
        ),  # a bare version: 1.27.x  # a bare version: 1.27.x
        ({"semver": "<1.26 || >=2"}, ["20", "2.0.0", "1.25.5", "1.25", "0.3.0", "0.2.9", "0.2.3"]),
        ({"semver": "~1.26"}, ["1.26.2", "1.26", "v1.26.1", "1.26.0"]),
        ({"semver": "^0.2.3"}, ["0.2.9", "0.2.3"]),
        ({"semver": "^1.27.1", "latest": 2}, ["1.27.3.1", "1.27.3", "1.27", "1"]),  # one release, four names
        ({"semver": ">= 20"}, ["20"]),  # without a variant, only tags without one
        ({"semver": ">=20", "variant": "alpine"}, ["22-alpine", "20.11.1-alpine"]),
        ({"variant": "alpine"}, ["22-alpine", "20.11.1-alpine", "1.27.3-alpine", "1.27-alpine"]),
        ({"variant": "bookworm-slim"}, ["20-bookworm-slim"]),
        ({"match": r"^1\.27\.\d+$"}, ["1.27.3", "1.27.0"]),  # match is a full match: 1.27.3.1 and -alpine are out
        ({"match": r"1\.27"}, ["1.27"]),
        ({"match": r"1\.27.*", "exclude": "-"}, ["1.27.3.1", "1.27.3", "1.27", "1.27.0", "1.27.3a"]),  # exclude: search
        ({"match": "stable.*|mainline"}, ["mainline", "stable", "stable-perl"]),  # non-version tags: match only
        ({"match": "latest", "semver": ">=0"}, []),  # semver selects versions only
        ({"semver": ">=3"}, ["20"]),
        ({"semver": ">=100"}, []),
        ({"latest": 2}, ["20", "2.0.0"]),
    ],
)
def test_rules_select_exactly(rule: dict[str, object], selected: list[str]) -> None:
    assert parse_rule(rule).select(TAGS) == selected


def test_a_tag_listed_twice_is_selected_once() -> None:
    assert parse_rule({"semver": ">=1"}).select(["1.0", "1.0", "2"]) == ["2", "1.0"]


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({}, "must be a mapping"),
        ("semver >=1", "must be a mapping"),
        ({"semver": ">=1", "newest": 2}, "unknown keys newest"),
        ({"semver": ""}, "non-empty range"),
        ({"semver": ">=1.x"}, "not a comparator"),
        ({"semver": "=>1"}, "not a comparator"),
        ({"semver": ">=1 ||"}, "empty alternative"),
        ({"semver": ">=" + "1." * 150 + "1"}, "longer than"),
        ({"match": "("}, "not a valid regular expression"),
        ({"exclude": "[a-"}, "not a valid regular expression"),
        # what RE2 refuses, with RE2's reason: it has no backreferences or lookaround
        (
            {"match": r"(\d)\1"},
            r"'\(\\\\d\)\\\\1' is not a valid regular expression \(RE2 syntax: .*\): invalid escape",
        ),
        ({"exclude": "(?=rc)"}, r"exclude .* not a valid regular expression .*: invalid perl operator: \(\?="),
        ({"exclude": "(?<!v)1"}, "invalid perl operator"),
        ({"match": "a++"}, "bad repetition operator"),
        ({"match": "v{1001}"}, "invalid repetition size"),
        ({"match": "\ud800"}, "not valid text"),
        ({"match": "a" * 201}, "1 to 200 characters"),
        ({"latest": 0}, "whole number from 1 to 1000"),
        ({"latest": True}, "whole number"),
        ({"latest": "3"}, "whole number"),
        ({"variant": "al pine"}, "variant"),
        ({"variant": []}, "a list of at most 50"),
        ({"variant": ["alpine", 3]}, "variant must be"),
        ({"semver": ">=3.20 <20260101"}, "joins a calendar bound"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(rule: object, reason: str) -> None:
    with pytest.raises(RuleError, match=reason):
        parse_rule(rule)


def test_a_numeric_semver_from_yaml_is_a_range() -> None:
    # YAML reads `semver: 20` as a number: it means 20.x, as the string "20" does
    assert parse_rule({"semver": 20}).select(["19", "20", "20.1.2", "21"]) == ["20.1.2", "20"]


def test_describe_names_the_rule_for_the_report() -> None:
    assert parse_rule({"semver": ">=1.26 <2", "latest": 3}).describe() == "semver >=1.26 <2, latest 3"
    assert parse_range(">=1.26 <2 || =3 || >=20250101") == (
        Alternative(False, ((">=", (1, 26, 0, 0)), ("<", (2, 0, 0, 0)))),
        Alternative(False, (("=", (3, 0, 0, 0)),)),
        Alternative(True, ((">=", (20250101, 0, 0, 0)),)),
    )
    assert parse_rule({"variant": ["glibc", "musl"], "latest": 1}).describe() == "variant [glibc, musl], latest 1"


def test_a_nested_quantifier_on_a_long_tag_answers_at_once() -> None:
    # Under Python's re this never returns (backtracking, with the GIL held): the test hanging is the failure.
    rule = parse_rule({"match": r"v?(\d+\.?)+"})
    near_miss = "1" * 60 + "x"  # 61 characters: one that does not match is the slow case for a backtracker
    long_match = "1." * 4999 + "12"  # 10,000 characters
    long_miss = long_match[:-1] + "-"

    assert rule.select([near_miss, "1" * 9_999 + "x", long_miss]) == []
    assert rule.select([near_miss, long_match, "v1.2.3"]) == ["v1.2.3", long_match]  # versions first
    assert parse_rule({"exclude": r"(\d+\.?)+x"}).select([near_miss, long_match]) == [long_match]


# The patterns the README documents and these tests use: RE2 must answer exactly as Python's re did.
PATTERNS = [
    r"^v\d+\.\d+\.\d+$",
    "-rc",
    r"^1\.27\.\d+$",
    r"1\.27",
    r"1\.27.*",
    "-",
    "stable.*|mainline",
    "latest",
    r"^1\.2\d\.0$",
    r"1\.25",
    "latest|mainline",
    r"(?i)ALPINE",
    r"\d+-alpine",
    r"[0-9]+(\.[0-9]+){2}",
    r"v?(\d+\.?)+",
]
PARITY_TAGS = [*TAGS, "v1.2.3", "v1.2.3-rc1", "1.20.0", "1.25.0", "2.0.0-rc1", "Alpine"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_re2_answers_as_pythons_re_for_the_documented_patterns(pattern: str) -> None:
    compiled, python = compile_pattern("match", pattern), re.compile(pattern)
    for tag in PARITY_TAGS:
        assert bool(compiled.fullmatch(tag)) == bool(python.fullmatch(tag)), tag
        assert bool(compiled.search(tag)) == bool(python.search(tag)), tag


# Schemes: a tag whose first number reads as a year or a date is a calendar tag, compared only with calendar bounds.
ALPINE = ["3.19", "3.19.4", "3.20", "3.20.3", "3.21.0", "3.21", "20240606", "20250108", "20260805", "edge", "3"]


@pytest.mark.parametrize(
    ("rule", "selected"),
    [
        ({"semver": ">=3.20", "latest": 2}, ["3.21.0", "3.21", "3", "3.20.3", "3.20"]),
        ({"semver": ">=20250101"}, ["20260805", "20250108"]),
        ({"semver": ">=3.20 || >=20260101"}, ["3.21.0", "3.21", "3", "3.20.3", "3.20", "20260805"]),
        # latest counts within each scheme: the newest release and the newest date
        ({"semver": ">=3.20 || >=20250101", "latest": 1}, ["3.21.0", "3.21", "3", "20260805"]),
        ({"latest": 1}, ["3.21.0", "3.21", "3"]),  # without a range, calendar tags are never counted
        ({"match": "2026.*"}, ["20260805"]),  # a bare pattern sees every tag
    ],
)
def test_a_range_compares_releases_of_its_own_scheme(rule: dict[str, object], selected: list[str]) -> None:
    assert parse_rule(rule).select(ALPINE) == selected


def test_numbers_of_any_length_are_versions() -> None:
    tags = ["1700000000", "1700000001", "17000000011", "9"]
    assert parse_rule({"latest": 2}).select(tags) == ["17000000011", "1700000001"]
    assert parse_rule({"semver": ">1700000000"}).select(tags) == ["17000000011", "1700000001"]
    assert parse_version("20260805") == Version((20260805, 0, 0, 0), 1, None, calendar=True)


def test_latest_counts_a_digest_once_under_every_name() -> None:
    tags = ["26.7.0", "26.7", "26", "26.6.1", "26.6", "25.9.0", "25.9", "25", "current", "latest"]
    one, two, three = ("sha256:" + c * 64 for c in "abc")
    digests = {"26.7.0": one, "26.7": one, "26": one, "26.6.1": two, "26.6": two, "25.9.0": three}
    rule = parse_rule({"semver": ">=20", "latest": 2})
    candidates = rule.candidates(tags)
    assert candidates.wanted({}) == ["26.7.0", "26.7", "26", "26.6.1", "26.6"]  # two releases by name: asked first
    assert candidates.wanted(digests) == []
    assert rule.select(tags, digests) == ["26.7.0", "26.7", "26", "26.6.1", "26.6"]
    # 26.6 still names the image 26.7.0 is: one release so far, so the next group is asked for and counted
    moved = {**digests, "26.6.1": one, "26.6": one}
    assert candidates.wanted(moved) == ["25.9", "25"]  # 25.9.0's digest is known already
    assert rule.select(tags, {**moved, "25.9": three, "25": three}) == [
        "26.7.0", "26.7", "26", "26.6.1", "26.6", "25.9.0", "25.9", "25",
    ]  # fmt: skip


def test_variants_as_people_use_them() -> None:
    busybox = ["1.36.1", "1.36.1-glibc", "1.36.1-uclibc", "1.36.1-musl", "1.37.0-glibc", "1.37.0-musl", "musl"]
    assert parse_rule({"match": r"1\.36\.1-(glibc|uclibc|musl)"}).select(busybox) == [
        "1.36.1-glibc", "1.36.1-musl", "1.36.1-uclibc",
    ]  # fmt: skip
    assert parse_rule({"variant": ["glibc", "musl"], "latest": 1}).select(busybox) == ["1.37.0-glibc", "1.37.0-musl"]
    assert parse_rule({"semver": "1.36", "variant": "any"}).select(busybox) == [
        "1.36.1", "1.36.1-glibc", "1.36.1-musl", "1.36.1-uclibc",
    ]  # fmt: skip
    assert parse_rule({"variant": "any", "latest": 1}).select(busybox) == [
        "1.36.1", "1.37.0-glibc", "1.37.0-musl", "1.36.1-uclibc",
    ]  # fmt: skip


def test_every_tag_left_out_says_why() -> None:
    selection = parse_rule({"semver": ">=3.20", "latest": 1, "exclude": "^3$"}).candidates(ALPINE).selection()
    assert selection.tags == ("3.21.0", "3.21")
    assert dict(selection.left_out) == {
        "outside the range": ("3.19.4", "3.19"),
        "a calendar tag (a year or a date: only a calendar range such as >=20250101 selects it)": (
            "20240606", "20250108", "20260805",
        ),
        "not a version": ("edge",),
        "excluded by exclude": ("3",),
        "older than the 1 newest release": ("3.20.3", "3.20"),
    }  # fmt: skip


def test_a_failed_head_on_a_releases_first_tag_keeps_its_other_names() -> None:
    tags = ["26.7.0", "26.7", "26", "26.6.1"]
    one, two = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    rule = parse_rule({"semver": ">=20", "latest": 1})
    assert rule.select(tags, {"26.7.0": None, "26.7": one, "26": one, "26.6.1": two}) == ["26.7.0", "26.7", "26"]


def test_exclude_without_a_variant_sees_every_tag() -> None:
    tags = ["1.27.3", "1.27.3-alpine", "1.28.0-rc1", "mainline-alpine"]
    assert parse_rule({"exclude": "rc"}).select(tags) == ["1.27.3", "1.27.3-alpine", "mainline-alpine"]
    assert parse_rule({"semver": ">=1", "exclude": "rc"}).select(tags) == ["1.27.3", "1.27.3-alpine"]


@pytest.mark.parametrize("rule", [{"match": ".*"}, {"exclude": "^x"}, {"semver": ">=0"}])
def test_the_tags_of_signatures_attestations_and_sboms_are_never_images_of_a_tag_set(rule: dict[str, object]) -> None:
    # Given a repository whose signed release has cosign's signature tag and an OCI fallback tag beside it
    stem = "sha256-" + "a" * 64
    tags = ["1.0.0", f"{stem}.sig", f"{stem}.att", f"{stem}.sbom", stem]

    selection = parse_rule(rule).candidates(tags).selection()

    # Then only the release is selected; the others are left out, saying why
    assert list(selection.tags) == ["1.0.0"]
    why = "the tag of a signature, attestation or SBOM (mirrored with its image)"
    assert {reason: list(t) for reason, t in selection.left_out.items()} == {why: tags[1:]}

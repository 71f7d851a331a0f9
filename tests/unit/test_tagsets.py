"""Tag rules as a table: the version grammar, ranges with `||`, variants, latest-N ties, match vs exclude, and
regexes that run in RE2's linear time with the answers Python's `re` gives for every documented pattern."""

from __future__ import annotations

import re

import pytest

from mirror.tagsets import RuleError, Version, compile_pattern, parse_range, parse_rule, parse_version

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
        ({"semver": ">=1.26 <2"}, ["1.27.3.1", "1.27.3", "1.27.0", "1.27", "1.26.2", "v1.26.1", "1.26.0", "1.26"]),
        ({"semver": ">=1.26 <2", "latest": 3}, ["1.27.3.1", "1.27.3", "1.27.0"]),
        # a tie: 1.27.0 and 1.27 are the same version; the one with more parts ranks first
        ({"semver": "<1.27.1 >=1.27", "latest": 1}, ["1.27.0"]),
        ({"semver": "=1.27"}, ["1.27.0", "1.27"]),
        ({"semver": "1.27"}, ["1.27.3.1", "1.27.3", "1.27.0", "1.27"]),  # a bare version: 1.27.x
        ({"semver": "<1.26 || >=2"}, ["20", "2.0.0", "1.25.5", "1.25", "1", "0.3.0", "0.2.9", "0.2.3"]),
        ({"semver": "~1.26"}, ["1.26.2", "v1.26.1", "1.26.0", "1.26"]),
        ({"semver": "^0.2.3"}, ["0.2.9", "0.2.3"]),
        ({"semver": "^1.27.1", "latest": 2}, ["1.27.3.1", "1.27.3"]),
        ({"semver": ">= 20"}, ["20"]),  # without a variant, only tags without one
        ({"semver": ">=20", "variant": "alpine"}, ["22-alpine", "20.11.1-alpine"]),
        ({"variant": "alpine"}, ["22-alpine", "20.11.1-alpine", "1.27.3-alpine", "1.27-alpine"]),
        ({"variant": "bookworm-slim"}, ["20-bookworm-slim"]),
        ({"match": r"^1\.27\.\d+$"}, ["1.27.3", "1.27.0"]),  # match is a full match: 1.27.3.1 and -alpine are out
        ({"match": r"1\.27"}, ["1.27"]),
        ({"match": r"1\.27.*", "exclude": "-"}, ["1.27.3.1", "1.27.3", "1.27.0", "1.27", "1.27.3a"]),  # exclude: search
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
    assert parse_range(">=1.26 <2 || =3") == (((">=", (1, 26, 0, 0)), ("<", (2, 0, 0, 0))), (("=", (3, 0, 0, 0)),))


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

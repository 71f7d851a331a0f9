"""Tag rules as a table: the version grammar, ranges with `||`, variants, latest-N ties, match vs exclude."""

from __future__ import annotations

import pytest

from mirror.tagsets import RuleError, Version, parse_range, parse_rule, parse_version

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

"""Tag rules against real tag lists: eight Docker official images as `tags/list` returns them (every tag ever pushed).

The data, tests/data/official-images/<image>.json, is written by devtools/officialtags.py from the git history of
https://github.com/docker-library/official-images (the files `library/<image>`): every tag those files ever listed,
with a synthetic image id per tag. Tags last listed together in one block of one commit share an id, so the ids
stand in for the digests a run reads from HEADs. An id belongs to the last commit listing the tag, so two tags of
one block can carry different ids when one was dropped a commit before the other: expectations follow the data.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from mirror.tagsets import Selection, parse_rule, parse_version

DATA = Path(__file__).parent.parent / "data" / "official-images"
IMAGES = ("node", "nginx", "python", "postgres", "redis", "alpine", "golang", "busybox")


@functools.cache
def load(image: str) -> tuple[list[str], dict[str, str]]:
    """The image's tags as a registry lists them (sorted lexically) and each tag's image id as its digest."""
    ids: dict[str, str] = json.loads((DATA / f"{image}.json").read_text())["tags"]
    return sorted(ids), ids


def select(image: str, rule: dict[str, Any], with_digests: bool = True) -> Selection:
    tags, digests = load(image)
    return parse_rule(rule).candidates(tags).selection(digests if with_digests else {})


def chosen(image: str, rule: dict[str, Any], with_digests: bool = True) -> tuple[str, ...]:
    return select(image, rule, with_digests).tags


def test_node_latest_counts_releases_not_names() -> None:
    rule = {"semver": ">=20", "latest": 2}
    assert chosen("node", rule) == ("26.7.0", "26.7", "26", "26.6.0", "26.6")
    assert chosen("node", rule, with_digests=False)[:3] == ("26.7.0", "26.7", "26")


def test_redis_alpine_three_distinct_releases() -> None:
    selected = chosen("redis", {"semver": ">=7.2", "variant": "alpine", "latest": 3})
    assert selected == ("8.10.1-alpine", "8.10-alpine", "8-alpine", "8.10.0-alpine", "8.8.2-alpine", "8.8-alpine")
    assert len({load("redis")[1][t] for t in selected}) == 3


def test_alpine_release_numbers_and_dated_snapshots_apart() -> None:
    selected = chosen("alpine", {"semver": ">=3.20", "latest": 3})
    assert selected == ("3.24.1", "3.24", "3", "3.24.0", "3.23.5", "3.23")
    assert not any(parse_version(t).calendar for t in selected)  # type: ignore[union-attr]
    assert chosen("alpine", {"semver": ">=20250101"}) == ("20260805", "20260127", "20251224", "20250108")


def test_match_selects_every_tag_it_names() -> None:
    nginx = select("nginx", {"match": r"1\.2[67]\.\d+-alpine"}).tags
    assert nginx == (
        *(f"1.27.{n}-alpine" for n in (5, 4, 3, 2, 1, 0)),
        *(f"1.26.{n}-alpine" for n in (3, 2, 1, 0)),
    )
    busybox = select("busybox", {"match": r"1\.36\.1-(glibc|uclibc|musl)"}).tags
    assert sorted(busybox) == ["1.36.1-glibc", "1.36.1-musl", "1.36.1-uclibc"]


def test_variant_lists_pick_the_newest_release_of_each() -> None:
    assert select("busybox", {"variant": ["glibc", "musl"], "latest": 1}).tags == (
        "1.38.0-glibc", "1.38-glibc", "1-glibc", "1.38.0-musl", "1.38-musl", "1-musl",
    )  # fmt: skip
    python = {"semver": ">=3.13", "variant": ["slim-bookworm", "slim-trixie"], "latest": 1}
    assert chosen("python", python) == (
        "3.14.7-slim-bookworm", "3.14-slim-bookworm", "3-slim-bookworm",
        "3.14.7-slim-trixie", "3.14-slim-trixie", "3-slim-trixie",
    )  # fmt: skip


def test_variant_any_counts_releases_within_each_variant() -> None:
    selected = select("node", {"semver": ">=24", "variant": "any", "latest": 1}).tags
    _, digests = load("node")
    per_variant: defaultdict[str | None, set[str]] = defaultdict(set)
    for tag in selected:
        per_variant[parse_version(tag).variant].add(digests[tag])  # type: ignore[union-attr]
    assert all(len(ids) == 1 for ids in per_variant.values())
    assert {None, "alpine", "bookworm-slim", "alpine3.20", "trixie-slim"} <= set(per_variant)
    assert {"26.7.0", "26.7", "26", "26.7.0-alpine", "26.7-alpine", "26-alpine"} <= set(selected)
    assert {"24.1.0-alpine3.20", "24.1-alpine3.20", "24-alpine3.20"} <= set(selected)  # alpine3.20's last build


@pytest.mark.parametrize(
    ("image", "rule", "selected"),
    [
        ("node", {"semver": "^24", "variant": "alpine", "latest": 1}, ["24.19.0-alpine", "24.19-alpine", "24-alpine"]),
        (
            "node",
            {"semver": ">=22 <23", "variant": "bookworm-slim", "latest": 2},
            ["22.23.2-bookworm-slim", "22.23-bookworm-slim", "22-bookworm-slim", "22.23.1-bookworm-slim"],
        ),
        ("python", {"semver": "^3.12", "latest": 1}, ["3.14.7", "3.14", "3"]),
        (
            "python",
            {"semver": ">=3.12", "variant": "alpine", "latest": 2},
            ["3.14.7-alpine", "3.14-alpine", "3-alpine", "3.14.6-alpine"],
        ),
        ("python", {"semver": "~3.12", "variant": "slim", "exclude": "rc", "latest": 1}, ["3.12.14-slim", "3.12-slim"]),
        ("postgres", {"semver": ">=16", "latest": 2}, ["18.6", "18", "18.4"]),  # no 18.5 was ever listed
        ("postgres", {"semver": ">=17", "variant": "alpine", "latest": 1}, ["18.6-alpine", "18-alpine"]),
        ("postgres", {"semver": "16", "variant": "bookworm", "latest": 1}, ["16.15-bookworm", "16-bookworm"]),
        ("nginx", {"semver": "~1.27", "latest": 1}, ["1.27.5", "1.27"]),
        (
            "nginx",
            {"semver": ">=1.26", "variant": "alpine-slim", "latest": 2},
            ["1.31.4-alpine-slim", "1.31-alpine-slim", "1-alpine-slim", "1.31.3-alpine-slim"],
        ),
        ("redis", {"semver": "^7", "latest": 1}, ["7.4.11", "7.4", "7"]),
        ("alpine", {"semver": ">=20250101", "latest": 2}, ["20260805", "20260127"]),
        ("golang", {"semver": ">=1.22", "latest": 2}, ["1.27.0", "1.27", "1", "1.26.7", "1.26"]),
        (
            "golang",
            {"semver": ">=1.22", "variant": "alpine", "latest": 2},
            ["1.27.0-alpine", "1.27-alpine", "1-alpine", "1.26.7-alpine", "1.26-alpine"],
        ),
        (
            "golang",
            {"semver": ">=1.22", "variant": "alpine3.22", "latest": 2},
            ["1.26.4-alpine3.22", "1.26-alpine3.22", "1-alpine3.22", "1.26.3-alpine3.22"],
        ),
        (
            "golang",
            {"semver": "~1.26", "variant": ["bookworm", "trixie"], "latest": 1},
            ["1.26.7-bookworm", "1.26-bookworm", "1.26.7-trixie", "1.26-trixie"],
        ),
        ("busybox", {"semver": ">=1.36", "latest": 2}, ["1.38.0", "1.38", "1", "1.37.0", "1.37"]),
    ],
)
def test_rules_a_person_writes(image: str, rule: dict[str, Any], selected: list[str]) -> None:
    assert list(chosen(image, rule)) == selected


PROPERTY_RULES: list[dict[str, Any]] = [
    {"semver": ">=1", "latest": 1},
    {"semver": ">=1", "latest": 3},
    {"semver": ">=1", "variant": "alpine", "latest": 2},
    {"semver": ">=1", "variant": ["bookworm", "trixie", "glibc"], "latest": 2},
    {"semver": ">=1", "variant": "any", "latest": 2},
    {"semver": ">=20250101", "latest": 2},
]


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("raw", PROPERTY_RULES, ids=[parse_rule(r).describe() for r in PROPERTY_RULES])
def test_latest_selects_whole_releases(image: str, raw: dict[str, Any]) -> None:
    tags, digests = load(image)
    candidates = parse_rule(raw).candidates(tags)
    latest: int = raw["latest"]
    selection = candidates.selection(digests)
    chosen = set(selection.tags)

    def kind(tag: str) -> tuple[str | None, bool]:
        version = parse_version(tag)
        assert version is not None
        return version.variant, version.calendar

    passed: defaultdict[tuple[str | None, bool], set[str]] = defaultdict(set)
    for bucket in candidates.buckets:
        for group in bucket:
            for tag in group:
                passed[kind(tag)].add(tag)
    for key, bucket_tags in passed.items():
        releases = {digests[t] for t in bucket_tags}
        picked = {digests[t] for t in bucket_tags & chosen}
        assert len(picked) == min(latest, len(releases)), key  # (a) N releases, or all there are
        assert {t for t in bucket_tags if digests[t] in picked} <= chosen, key  # (b) every name of a chosen release

    known: dict[str, str | None] = {}  # (c) digests asked for as `wanted` names them, until it names none
    while wanted := candidates.wanted(known):
        assert not set(wanted) & set(known)
        known.update({t: digests[t] for t in wanted})
    assert candidates.selection(known) == selection
    assert len(known) <= 10 * latest * max(1, len(passed))
    if image == "node" and passed:
        assert len(known) * 20 < sum(map(len, passed.values()))


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize(
    "raw",
    [{"semver": ">=1", "variant": "alpine", "latest": 2}, {"match": r"\d+\.\d+"}, {"match": r".*", "exclude": "rc"}],
)
def test_every_tag_is_selected_or_left_out_with_a_reason(image: str, raw: dict[str, Any]) -> None:
    tags, digests = load(image)
    selection = parse_rule(raw).candidates(tags).selection(digests)
    left_out = [t for reason_tags in selection.left_out.values() for t in reason_tags]
    assert all(reason and reason_tags for reason, reason_tags in selection.left_out.items())
    assert sorted([*selection.tags, *left_out]) == tags
    assert len(selection.tags) + len(left_out) == len(tags)


@pytest.mark.parametrize(
    ("image", "rule", "alias"),
    [
        ("alpine", {"semver": ">=3.20", "latest": 3}, "3"),  # 3 is 3.24.1 in the data
        ("python", {"semver": ">=3.13", "variant": "slim-trixie", "latest": 1}, "3-slim-trixie"),  # 3.14.7-slim-trixie
        ("golang", {"semver": ">=1.22", "variant": "alpine", "latest": 2}, "1-alpine"),  # 1.27.0-alpine
        ("busybox", {"semver": ">=1.36", "latest": 2}, "1"),  # 1.38.0
    ],
)
def test_a_one_number_tag_of_the_newest_release_is_selected(image: str, rule: dict[str, Any], alias: str) -> None:
    selection = select(image, rule)
    _, digests = load(image)
    assert digests[alias] == digests[selection.tags[0]]  # the data: one image
    assert alias in selection.tags


def test_a_stale_alias_never_takes_a_releases_place() -> None:
    # 8-alpine3.22 was last pushed with 8.4.0-alpine3.22: it names an older image, not a release of its own
    selection = select("redis", {"semver": ">=1", "variant": "alpine3.22", "latest": 2})
    assert selection.tags == ("8.4.6-alpine3.22", "8.4-alpine3.22", "8.4.5-alpine3.22")
    assert selection.left_out["names an image older than the 2 newest releases"] == ("8-alpine3.22",)


def test_variant_any_leaves_pre_releases_out() -> None:
    selection = select("redis", {"semver": ">=7.2", "variant": "any", "latest": 1})
    assert {"8.10.1", "8.10.1-alpine", "8.10.1-trixie", "8.4.6-alpine3.22"} <= set(selection.tags)
    assert not [t for t in selection.tags if "rc" in t or "-m0" in t.lower()]
    assert (
        "8.0-rc1-alpine"
        in selection.left_out["a pre-release (variant any leaves it out: name its variant to select it)"]
    )

"""A list's tag sets expand to at most MAX_ENTRIES records: earlier entries keep theirs, a tag set that is cut says
how many tags it dropped and why, and no more records than the cap are ever built."""

from __future__ import annotations

import tracemalloc

import pytest

from mirror import imagelist
from mirror.imagelist import MAX_ENTRIES, Entry, expand_tag_sets, parse_entries

TAGS = [f"1.{i // 100}.{i % 100}" for i in range(9_999)]


def expand(images: list[object], tags: list[str]) -> list[Entry]:
    entries = parse_entries(images, "mirror")
    return expand_tag_sets(images, entries, {e.index: tags for e in entries if e.tag_set is not None}, "mirror")


def by_entry(expanded: list[Entry]) -> dict[int, list[Entry]]:
    out: dict[int, list[Entry]] = {}
    for e in expanded:
        out.setdefault(e.number, []).append(e)
    return out


def test_eight_tag_sets_over_9999_tags_expand_to_the_cap_in_list_order_without_building_more() -> None:
    images: list[object] = [
        {"source": "nginx", "tags": {"semver": ">=0"}, "target": f"mirror/web{n}"} for n in range(8)
    ]

    tracemalloc.start()
    try:
        expanded = expand(images, TAGS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert len(expanded) == MAX_ENTRIES
    sets = by_entry(expanded)
    assert len(sets[1]) == 9_999
    assert all(e.valid for e in sets[1])
    spare = MAX_ENTRIES - 8 - 9_998  # what is left for the second set beyond its own record
    *kept, cut = sets[2]
    assert len(kept) == spare
    assert all(e.valid for e in kept)
    assert [e.target.tag for e in kept if e.target] == sorted(TAGS, key=_version, reverse=True)[:spare]
    assert cut.failure == (
        f"tags: {9_999 - spare:,} of the 9,999 selected tags dropped: the run's list is capped at 20,000 entries "
        "(earlier entries keep theirs first)"
    )
    assert cut.rule == "entry 2: docker.io/library/nginx tags semver >=0"
    for number in range(3, 9):  # nothing left: each is one record saying so
        (record,) = sets[number]
        assert record.failure is not None
        assert record.failure.startswith("tags: 9,999 of the 9,999 selected tags dropped: the run's list is capped")
    # 79,992 records would take about 78 MiB here; the cap's 20,000 about 20 MiB.
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MiB"


def _version(tag: str) -> tuple[int, ...]:
    return tuple(int(n) for n in tag.split("."))


def test_plain_entries_and_failed_tag_sets_keep_their_record_wherever_they_stand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imagelist, "MAX_ENTRIES", 10)
    images: list[object] = [
        {"source": "nginx", "tags": {"match": ".*"}, "target": "mirror/a"},
        "redis:7",
        {"source": "nginx", "tags": {"semver": ">=99"}, "target": "mirror/none"},  # selects nothing
        {"source": "nginx", "tags": {"match": ".*"}, "target": "mirror/b"},
        "alpine:3",
    ]

    expanded = expand(images, [f"{n}.0" for n in range(1, 13)])

    assert len(expanded) == 10
    sets = by_entry(expanded)
    # 10 records, 5 entries: 5 spare; the first set keeps 6 tags (its own record and the 5 spare) less one for
    # the record that says it was cut
    assert [e.target.tag for e in sets[1] if e.valid and e.target] == ["12.0", "11.0", "10.0", "9.0", "8.0"]
    assert sets[1][-1].failure is not None
    assert sets[1][-1].failure.startswith("tags: 7 of the 12 selected tags")
    assert [str(e.target) for e in sets[2]] == ["mirror/library/redis:7"]
    (none,) = sets[3]
    assert none.failure is not None
    assert none.failure.startswith("tags: the rule selects none")
    (dropped,) = sets[4]
    assert dropped.failure is not None
    assert dropped.failure.startswith("tags: 12 of the 12 selected tags dropped")
    assert [str(e.target) for e in sets[5]] == ["mirror/library/alpine:3"]


@pytest.mark.parametrize(("selected", "records"), [(5, 5), (6, 6), (7, 6), (0, 1)])
def test_a_tag_set_that_fits_exactly_is_not_cut(monkeypatch: pytest.MonkeyPatch, selected: int, records: int) -> None:
    monkeypatch.setattr(imagelist, "MAX_ENTRIES", 6)
    images: list[object] = [{"source": "nginx", "tags": {"latest": 1000}}]

    expanded = expand(images, [f"{n}.0" for n in range(selected)])

    assert len(expanded) == records
    failures = [e.failure for e in expanded if e.failure]
    if selected == 0:
        assert failures == ["tags: the rule selects none of the 0 tags of docker.io/library/nginx"]
    elif selected <= 6:
        assert failures == []
    else:
        assert failures == ["tags: 2 of the 7 selected tags dropped: the run's list is capped at 6 entries (earlier "
                            "entries keep theirs first)"]  # fmt: skip

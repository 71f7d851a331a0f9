"""The plan is a pure function of list, source digests and target digests."""

from __future__ import annotations

from mirror.imagelist import parse_entries
from mirror.planning import Check, Status, batches, plan

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_equal_digests_are_unchanged_and_copy_nothing() -> None:
    entries = parse_entries(["nginx:1.27"], "mirror")
    result = plan(entries, {0: Check(A, A)})
    assert [d.status for d in result.decisions] == [Status.UNCHANGED]
    assert result.copies == ()


def test_different_digest_is_changed_and_copies_pinned_source() -> None:
    entries = parse_entries(["nginx:1.27"], "mirror")
    result = plan(entries, {0: Check(A, B)})
    (copy,) = result.copies
    assert result.decisions[0].status is Status.CHANGED
    assert copy.digest == A
    assert str(copy.source) == f"docker.io/library/nginx:1.27@{A}"
    assert str(copy.target) == "mirror/library/nginx:1.27"


def test_absent_target_is_missing() -> None:
    result = plan(parse_entries(["nginx:1.27"], "mirror"), {0: Check(A, None)})
    assert result.decisions[0].status is Status.MISSING
    assert result.copies[0].status is Status.MISSING


def test_failed_check_fails_only_that_entry() -> None:
    entries = parse_entries(["a:1", "b:1"], "mirror")
    result = plan(entries, {0: Check(error="source not found: a"), 1: Check(A, None)})
    assert [d.status for d in result.decisions] == [Status.FAILED, Status.MISSING]
    assert result.decisions[0].error == "source not found: a"
    assert [c.index for c in result.copies] == [1]


def test_invalid_entry_is_invalid_and_needs_no_check() -> None:
    entries = parse_entries(["a:1", "bad name", 7], "mirror")
    result = plan(entries, {0: Check(A, A)})
    assert [d.status for d in result.decisions] == [Status.UNCHANGED, Status.INVALID, Status.INVALID]
    assert "whitespace" in (result.decisions[1].error or "")
    assert "int" in (result.decisions[2].error or "")


def test_unchecked_entry_is_failed_never_dropped() -> None:
    result = plan(parse_entries(["a:1"], "mirror"), {})
    assert result.decisions[0].status is Status.FAILED


def test_duplicates_share_one_check_and_one_copy() -> None:
    entries = parse_entries(["nginx:1.27", "docker.io/library/nginx:1.27"], "mirror")
    assert entries[1].duplicate_of == 0
    result = plan(entries, {0: Check(A, None)})
    assert [d.status for d in result.decisions] == [Status.MISSING, Status.MISSING]
    assert len(result.copies) == 1


def test_two_sources_for_one_target_reject_the_second() -> None:
    entries = parse_entries(
        [{"source": "nginx:1", "target": "mirror/web:1"}, {"source": "nginx:2", "target": "mirror/web:1"}], "mirror"
    )
    result = plan(entries, {0: Check(A, None)})
    assert result.decisions[1].status is Status.INVALID
    assert "already written by entry 1" in (result.decisions[1].error or "")


def test_a_repository_is_filled_from_one_upstream_repository_only() -> None:
    entries = parse_entries(
        [
            {"source": "nginx:1", "target": "mirror/web:1"},
            {"source": "httpd:2", "target": "mirror/web:2"},  # another tag, but another upstream
            {"source": "nginx:2", "target": "mirror/web:2"},
        ],
        "mirror",
    )
    assert [e.valid for e in entries] == [True, False, True]
    assert entries[1].error == (
        "entry 2: target repository mirror/web is filled from docker.io/library/nginx by entry 1; "
        "a repository belongs to one upstream"
    )


def test_pinned_source_keeps_its_digest() -> None:
    entries = parse_entries([f"nginx:1.27@{A}"], "mirror")
    assert entries[0].source is not None
    assert entries[0].source.digest == A


def test_batches_group_in_order() -> None:
    entries = parse_entries([f"img{i}:1" for i in range(7)], "mirror")
    result = plan(entries, {i: Check(A, None) for i in range(7)})
    groups = list(batches(result.copies, 3))
    assert [[c.index for c in g] for g in groups] == [[0, 1, 2], [3, 4, 5], [6]]

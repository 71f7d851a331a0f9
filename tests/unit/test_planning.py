"""The plan is a pure function of list, source digests and target digests."""

from __future__ import annotations

from mirror.imagelist import parse_entries
from mirror.planning import BATCH_MAX, Check, Outcome, Status, admit, batches, plan, settle

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


C = "sha256:" + "c" * 64


def test_a_digest_the_repository_holds_is_a_free_re_tag() -> None:
    entries = parse_entries(["nginx:1.27", "nginx:latest"], "mirror")
    result = plan(entries, {0: Check(A, None, pulls=3), 1: Check(A, B, pulls=0, mirrored=True)})
    first, moved = result.copies
    assert (first.retag, first.pulls, first.after) == (False, 3, None)
    assert (moved.retag, moved.pulls, moved.after) == (True, 0, None)  # in ECR already: after nothing
    assert [d.status for d in result.decisions] == [Status.MISSING, Status.CHANGED]


def test_a_new_digest_is_copied_once_and_its_other_tags_re_tagged_after_it() -> None:
    entries = parse_entries(["node:26.7.0", "node:26.7", "other:1", "node:26", "other:2"], "mirror")
    checks = {0: Check(A, None, pulls=1), 1: Check(A, None, pulls=1), 2: Check(C, None), 3: Check(A, B, pulls=1)}
    result = plan(entries, {**checks, 4: Check(C, None)})
    copies = {str(c.target): c for c in result.copies}
    assert [(c.retag, c.pulls, c.after) for c in copies.values()] == [
        (False, 1, None), (True, 0, 0), (False, 9, None), (True, 0, 0), (True, 0, 2),
    ]  # fmt: skip
    # a copy and its re-tags are one build's, in order, however small the batches
    assert [[c.index for c in b] for b in batches(result.copies, 2)] == [[0, 1, 3], [2, 4]]


def test_admission_is_decided_before_anything_starts() -> None:
    entries = parse_entries(["a:1", "a:2", "b:1", "c:1", "c:2", "d:1", "e:1"], "mirror")
    checks = {i: Check(A if i < 2 else C if i in (3, 4) else B, None, pulls=4) for i in range(7)}
    checks[5] = Check(B, None, pulls=4)
    result = plan(entries, checks)
    in_flight = {
        "mirror/library/b:1": (B, "build-1"),  # this very copy
        "mirror/library/c:9": (C, "build-2"),  # the same digest into c under another tag
    }
    refused = {"mirror/library/e": Outcome(error="claimed elsewhere", invalid=True)}

    waiting, ready = admit(result.copies, in_flight, pulls_left=5, reserve=10, refused=refused)

    assert [c.index for c in ready] == [0, 1]  # a:1 takes 4 of the 5 pulls, a:2 is its free re-tag
    assert waiting[2].inflight
    assert waiting[2].build == "build-1"
    assert waiting[2].error == "inflight: already being copied by build build-1"
    assert waiting[3].inflight
    assert "the next run re-tags it" in (waiting[3].error or "")
    assert waiting[4].inflight  # its re-tag waits with it, and says for what
    assert (
        waiting[4].error == f"inflight: a re-tag after the copy to mirror/library/c:1, which waits ({waiting[3].error})"
    )
    assert waiting[5].deferred
    assert waiting[5].error == "deferred: 4 pulls needed, 1 left above the reserve of 10 until the window resets"
    assert waiting[6] is refused["mirror/library/e"]


def test_each_status_is_settled_once_from_the_plan_and_the_outcome() -> None:
    result = plan(parse_entries(["a:1"], "mirror"), {0: Check(A, B)})
    (decision,) = result.decisions
    assert settle(decision, None) == decision
    assert settle(decision, Outcome(build="b-1")).status is Status.CHANGED
    assert settle(decision, Outcome(build="b-1")).build == "b-1"
    assert settle(decision, Outcome("b-2", "inflight: x", inflight=True)).status is Status.INFLIGHT
    assert settle(decision, Outcome(error="deferred: x", deferred=True)).status is Status.DEFERRED
    assert settle(decision, Outcome(error="claimed", invalid=True)).status is Status.INVALID
    failed = settle(decision, Outcome(error="build could not be started"))
    assert (failed.status, failed.error) == (Status.FAILED, "build could not be started")


def test_a_re_tag_starts_whatever_is_left_of_the_quota() -> None:
    entries = parse_entries(["a:1", "a:2"], "mirror")
    result = plan(entries, {0: Check(A, B, pulls=0, mirrored=True), 1: Check(A, None, pulls=0, mirrored=True)})
    waiting, ready = admit(result.copies, {}, pulls_left=-2, reserve=10)  # below the reserve already
    assert waiting == {}
    assert [c.index for c in ready] == [0, 1]


def test_a_duplicate_of_a_re_tag_is_that_re_tag() -> None:
    entries = parse_entries(["nginx:1.27.3", "nginx:1.27", "docker.io/library/nginx:1.27"], "mirror")
    result = plan(entries, {0: Check(A, None, pulls=9), 1: Check(A, None, pulls=9)})
    assert [(d.copy.retag, d.copy.pulls) for d in result.decisions if d.copy] == [(False, 9), (True, 0), (True, 0)]
    assert len(result.copies) == 2


def test_a_copy_with_more_re_tags_than_a_build_takes_is_split_at_the_maximum() -> None:
    entries = parse_entries([f"app:{i}" for i in range(BATCH_MAX + 5)], "mirror")
    result = plan(entries, {i: Check(A, None) for i in range(BATCH_MAX + 5)})
    assert [len(b) for b in batches(result.copies, 20)] == [BATCH_MAX, 5]

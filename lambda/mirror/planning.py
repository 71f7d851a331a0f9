"""The plan: a pure function of the list, the source digests and the target digests; no I/O."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from .imagelist import Entry
from .references import ImageRef, Target


class Status(StrEnum):
    UNCHANGED = "unchanged"
    CHANGED = "changed"
    MISSING = "missing"
    FAILED = "failed"
    INVALID = "invalid"
    INFLIGHT = "inflight"  # a build already queued or running copies this target: not started again
    DEFERRED = "deferred"  # its Docker Hub pulls do not fit above the reserve now: the next run copies it


#: what a copy of an index is assumed to cost when no copy of it is in ECR yet to count (or a pinned source's type is
#: unknown): one pull per manifest fetched, an index and eight platforms (most Docker official images' platforms)
ASSUMED_PULLS = 9


@dataclass(frozen=True)
class Check:
    """What was learnt of one image: its source digest, its target digest (None: missing) or why it failed.

    `complete` is False when the deadline cut the check short: the next run checks that entry first. `pulls` is
    what copying it costs, where known: one for a single manifest, else what the copy in ECR counts (its manifests).
    """

    source_digest: str | None = None
    target_digest: str | None = None
    error: str | None = None
    complete: bool = True
    pulls: int | None = None


@dataclass(frozen=True)
class Copy:
    """One image to copy: the source pinned by the digest that was compared, so the copy is the image checked.
    `pulls`: what the copy is estimated to cost on a registry that counts pulls (one per manifest fetched)."""

    index: int
    source: ImageRef
    target: Target
    digest: str
    status: Status
    pulls: int


@dataclass(frozen=True)
class Decision:
    index: int
    status: Status
    source_digest: str | None = None
    target_digest: str | None = None
    error: str | None = None
    copy: Copy | None = None


@dataclass(frozen=True)
class Plan:
    decisions: tuple[Decision, ...]

    @property
    def copies(self) -> tuple[Copy, ...]:
        """Each copy once, in list order (duplicates share the first entry's copy)."""
        seen: dict[int, Copy] = {}
        for decision in self.decisions:
            if decision.copy is not None:
                seen.setdefault(decision.copy.index, decision.copy)
        return tuple(seen.values())


def decide(entry: Entry, check: Check | None) -> Decision:
    if entry.failure is not None:  # a tag set that selected nothing or could not be listed
        return Decision(entry.index, Status.FAILED, error=entry.failure)
    if entry.error is not None or entry.source is None or entry.target is None:
        return Decision(entry.index, Status.INVALID, error=entry.error or "invalid entry")
    if check is None:
        return Decision(entry.index, Status.FAILED, error="not checked")
    if check.error is not None or check.source_digest is None:
        return Decision(
            entry.index, Status.FAILED, check.source_digest, check.target_digest, check.error or "no source digest"
        )
    if check.source_digest == check.target_digest:
        return Decision(entry.index, Status.UNCHANGED, check.source_digest, check.target_digest)
    status = Status.MISSING if check.target_digest is None else Status.CHANGED
    source = replace(entry.source, digest=check.source_digest)
    copy = Copy(
        entry.duplicate_of if entry.duplicate_of is not None else entry.index,
        source,
        entry.target,
        check.source_digest,
        status,
        check.pulls if check.pulls is not None else ASSUMED_PULLS,
    )
    return Decision(entry.index, status, check.source_digest, check.target_digest, copy=copy)


def plan(entries: Sequence[Entry], checks: Mapping[int, Check]) -> Plan:
    """Decide every entry; a duplicate takes the check of the entry it repeats. `checks` is keyed by entry index."""
    return Plan(
        tuple(
            decide(entry, checks.get(entry.duplicate_of if entry.duplicate_of is not None else entry.index))
            for entry in entries
        )
    )


def batches(copies: Sequence[Copy], size: int) -> Iterator[tuple[Copy, ...]]:
    """Groups of at most `size` copies, in order: few builds, since accounts may run only one at a time."""
    for start in range(0, len(copies), size):
        yield tuple(copies[start : start + size])

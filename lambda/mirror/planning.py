"""The plan and the admission of its copies: pure functions of the list, the checks, the builds in flight and the
Docker Hub pulls left; no I/O."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from .artifacts import Artifact, unmirrored
from .imagelist import Entry
from .references import DOCKER_HUB, ImageRef, Target


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
    `mirrored` is True when the target repository already holds the source digest (under another tag, or none):
    the copy is then a re-tag written from ECR's own manifest, and costs no pull. `artifacts`: the signatures,
    attestations and SBOMs that refer to it, each marked where the mirror holds it; `warnings`: what of them could
    not be looked at. For an entry that copies some platforms only, the check decides: `up_to_date` (None: the
    digests are compared), `mirrored_from` (the upstream digest the mirror's index of them records), and what its
    copy keeps: `platforms` (of an index, in an index of the mirror's own) or, `single`, one manifest whose platform
    the build checks before tagging it (empty: the image as it is).
    """

    source_digest: str | None = None
    target_digest: str | None = None
    error: str | None = None
    complete: bool = True
    pulls: int | None = None
    mirrored: bool = False
    artifacts: tuple[Artifact, ...] = ()
    warnings: tuple[str, ...] = ()
    up_to_date: bool | None = None
    mirrored_from: str | None = None
    platforms: tuple[str, ...] = ()
    single: bool = False

    @property
    def unchanged(self) -> bool:
        """The mirror holds the image as the source has it (for some platforms only: as the check decided)."""
        return self.source_digest == self.target_digest if self.up_to_date is None else self.up_to_date


@dataclass(frozen=True)
class Copy:
    """One image to copy: the source pinned by the digest that was compared, so the copy is the image checked.
    `pulls`: what the copy is estimated to cost on a registry that counts pulls (one per manifest fetched).

    A `retag` is written from the manifest the target repository already holds under that digest, through the
    registry API: no upstream request, no pull. `after` names the copy (by index) of this run that brings the
    digest first, when the repository does not hold it yet: the re-tag is written after it, in the same build.
    `artifacts` are copied after the image (for an unchanged image, after a re-tag that finds it in place); `pulls`
    counts theirs too. `platforms`: the copy keeps those of an index only, in an index of the mirror's own (a
    `single` manifest: copied only if it is of one of them).
    """

    index: int
    source: ImageRef
    target: Target
    digest: str
    status: Status
    pulls: int
    retag: bool = False
    after: int | None = None
    artifacts: tuple[Artifact, ...] = ()
    platforms: tuple[str, ...] = ()
    single: bool = False


@dataclass(frozen=True)
class Decision:
    """What the plan decided for one entry; once settled (`settle`), also what became of its copy."""

    index: int
    status: Status
    source_digest: str | None = None
    target_digest: str | None = None
    error: str | None = None
    copy: Copy | None = None
    build: str | None = None
    artifacts: tuple[Artifact, ...] = ()
    warnings: tuple[str, ...] = ()
    mirrored_from: str | None = None


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
    source = replace(entry.source, digest=check.source_digest)
    index = entry.duplicate_of if entry.duplicate_of is not None else entry.index
    new = unmirrored(check.artifacts)
    extra = sum(a.pulls for a in new)
    if check.unchanged:
        status, pulls, retag = Status.UNCHANGED, extra, True
    else:
        status = Status.MISSING if check.target_digest is None else Status.CHANGED
        pulls = extra + (0 if check.mirrored else check.pulls if check.pulls is not None else ASSUMED_PULLS)
        retag = check.mirrored
    # An unchanged image's missing artifacts ride on a re-tag, which finds the image in place before they are written.
    copy = None
    if status != Status.UNCHANGED or new:
        copy = Copy(
            index,
            source,
            entry.target,
            check.source_digest,
            status,
            pulls,
            retag,
            artifacts=new,
            platforms=check.platforms,
            single=check.single,
        )
    return Decision(
        entry.index,
        status,
        check.source_digest,
        check.target_digest,
        copy=copy,
        artifacts=check.artifacts,
        warnings=check.warnings,
        mirrored_from=check.mirrored_from,
    )


def plan(entries: Sequence[Entry], checks: Mapping[int, Check]) -> Plan:
    """Decide every entry; a duplicate takes the check of the entry it repeats. `checks` is keyed by entry index.

    Never pay twice: of the copies that bring one new digest into one repository, the first (in list order) is
    copied and charged; the others are re-tags written after it (`after`). A copy of some platforms whose index of
    them another tag of the repository holds up to date is a re-tag of that index. An artifact is copied into a
    repository once, by the first copy that carries it: a copy left with nothing to write (an unchanged image's) is
    dropped.
    """
    decisions = [
        decide(entry, checks.get(entry.duplicate_of if entry.duplicate_of is not None else entry.index))
        for entry in entries
    ]
    # The mirror's own index of some platforms of an upstream digest, where another tag of the repository has it
    # up to date: a copy of that digest with those platforms is a re-tag of it (no pull).
    made: dict[tuple[str, str, tuple[str, ...]], str] = {}
    for entry, decision in zip(entries, decisions, strict=True):
        if decision.status == Status.UNCHANGED and decision.mirrored_from and decision.target_digest and entry.target:
            key = (entry.target.repository, decision.mirrored_from, entry.platform_names)
            made.setdefault(key, decision.target_digest)
    for i, decision in enumerate(decisions):
        copy = decision.copy
        if copy is None or copy.retag or not copy.platforms or copy.single or copy.index != decision.index:
            continue
        held = made.get((copy.target.repository, copy.digest, copy.platforms))
        if held is not None:
            extra = sum(a.pulls for a in copy.artifacts)
            decisions[i] = replace(decision, copy=replace(copy, digest=held, retag=True, pulls=extra, platforms=()))
    first: dict[tuple[str, str, tuple[str, ...]], int] = {}
    for i, decision in enumerate(decisions):
        copy = decision.copy
        if copy is None or copy.retag or copy.index != decision.index:
            continue
        key = (copy.target.repository, copy.digest, copy.platforms)
        if key in first:
            decisions[i] = replace(decision, copy=replace(copy, pulls=0, retag=True, after=first[key], artifacts=()))
        else:
            first[key] = copy.index
    carried: set[tuple[str, str, str | None]] = set()
    for i, decision in enumerate(decisions):
        copy = decision.copy
        if copy is None or copy.index != decision.index or not copy.artifacts:
            continue
        keep = tuple(a for a in copy.artifacts if (copy.target.repository, a.digest, a.tag) not in carried)
        carried.update((copy.target.repository, a.digest, a.tag) for a in keep)
        if keep != copy.artifacts:
            dropped = sum(a.pulls for a in copy.artifacts) - sum(a.pulls for a in keep)
            trimmed = replace(copy, artifacts=keep, pulls=copy.pulls - dropped)
            nothing = not keep and copy.status == Status.UNCHANGED
            decisions[i] = replace(decision, copy=None if nothing else trimmed)
    final = {d.index: d.copy for d in decisions if d.copy is not None and d.copy.index == d.index}
    decisions = [  # a duplicate shares the copy of the entry it repeats, as that copy now is
        replace(d, copy=final.get(d.copy.index)) if d.copy is not None and d.copy.index != d.index else d
        for d in decisions
    ]
    return Plan(tuple(decisions))


@dataclass(frozen=True)
class Outcome:
    """What became of one planned copy: its build, or why it was not started (`invalid`: it must never be;
    `inflight`: a build already queued or running copies that target, `build` names it; `deferred`: its Docker Hub
    pulls do not fit above the reserve now)."""

    build: str | None = None
    error: str | None = None
    invalid: bool = False
    inflight: bool = False
    deferred: bool = False


def admit(
    copies: Sequence[Copy],
    in_flight: Mapping[str, tuple[str, str]],
    *,
    pulls_left: int | None,
    reserve: int,
    refused: Mapping[str, Outcome] | None = None,
) -> tuple[dict[int, Outcome], list[Copy]]:
    """Which copies start, in list order, and why each other one does not: pure.

    `refused` maps a repository that may not be written (claimed by another upstream, not created in time) to the
    outcome of each of its copies.
    `in_flight` maps a target (`repository:tag`) a queued or running build writes to (digest, build). A target in
    flight is never started again (a different digest waits for that build); a digest in flight into the same
    repository under another tag waits too (the next run re-tags it, free). With `pulls_left` (Docker Hub's
    remaining pulls above the reserve, known when the run uses Docker Hub credentials) Docker Hub copies start
    only while their estimated pulls fit. A re-tag after a copy that does not start waits with it.
    """
    held_digests = {(target.rpartition(":")[0], digest): build for target, (digest, build) in in_flight.items()}
    waiting: dict[int, Outcome] = {}
    ready: list[Copy] = []
    refused = refused or {}
    targets = {c.index: c.target for c in copies}
    for c in copies:
        if c.target.repository in refused:
            waiting[c.index] = refused[c.target.repository]
            continue
        held = in_flight.get(str(c.target))
        carried = held_digests.get((c.target.repository, c.digest))
        if held is not None:
            digest, build = held
            why = "already being copied" if digest == c.digest else f"waiting: {digest} is being copied"
            waiting[c.index] = Outcome(build, f"inflight: {why} by build {build}", inflight=True)
        elif carried is not None and (c.artifacts or not c.retag):  # a re-tag with artifacts fetches them too
            waiting[c.index] = Outcome(
                carried,
                f"inflight: waiting: {c.digest} is being copied into {c.target.repository} by build {carried}; "
                "the next run re-tags it",
                inflight=True,
            )
        elif c.after is not None and c.after in waiting:
            first = waiting[c.after]
            kind = (first.error or "").split(":", 1)[0]
            waiting[c.index] = replace(
                first, error=f"{kind}: a re-tag after the copy to {targets[c.after]}, which waits ({first.error})"
            )
        elif c.retag and not c.pulls:
            ready.append(c)  # costs no pull, whatever is left of the quota (one with artifacts to fetch does)
        elif c.source.registry == DOCKER_HUB and pulls_left is not None and c.pulls > pulls_left:
            waiting[c.index] = Outcome(
                error=f"deferred: {c.pulls} pulls needed, {max(pulls_left, 0)} left above the reserve of {reserve} "
                "until the window resets",
                deferred=True,
            )
        else:
            if c.source.registry == DOCKER_HUB and pulls_left is not None:
                pulls_left -= c.pulls
            ready.append(c)
    return waiting, ready


#: the most copies one build is given, re-tags included (IMAGES_PER_BUILD's own maximum)
BATCH_MAX = 100


def batches(copies: Sequence[Copy], size: int) -> Iterator[tuple[Copy, ...]]:
    """Groups of about `size` copies, in order: few builds, since accounts may run only one at a time. A re-tag
    goes in the build of the copy it follows (right after it), so a batch grows past `size` rather than split them,
    up to BATCH_MAX: the re-tags past it go to the next build (one that runs before the copy is done fails them,
    and the next run re-tags them)."""
    groups: dict[int, list[Copy]] = {}
    for c in copies:
        groups.setdefault(c.after if c.after is not None and c.after in groups else c.index, []).append(c)
    batch: list[Copy] = []
    for group in groups.values():
        if batch and len(batch) + len(group) > size:
            yield tuple(batch)
            batch = []
        for c in group:
            if len(batch) == BATCH_MAX:
                yield tuple(batch)
                batch = []
            batch.append(c)
    if batch:
        yield tuple(batch)


def settle(decision: Decision, outcome: Outcome | None) -> Decision:
    """An entry's final status, decided here once: the plan's, unless its copy was not started (`inflight`,
    `deferred`, `invalid`, or `failed` with the reason), with the build that copies it."""
    if outcome is None:
        return decision
    if outcome.inflight:
        status = Status.INFLIGHT
    elif outcome.deferred:
        status = Status.DEFERRED
    elif outcome.error is not None:
        status = Status.INVALID if outcome.invalid else Status.FAILED
    else:
        return replace(decision, build=outcome.build)
    return replace(decision, status=status, error=outcome.error, build=outcome.build)

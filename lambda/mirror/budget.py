"""The run's time: one account of what is left, from which tag listings, checks, repository creation, builds and
the report each draw their share; every deadline margin of the run is here."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .artifacts import unmirrored
from .planning import Check

#: reporting: building, storing and logging the report, the check history and the lease
REPORT_SECONDS = 3.0
REPORT_SECONDS_PER_ENTRY = 0.0002
#: until measured (then the slowest call seen): claiming a repository (ListTagsForResource, or CreateRepository
#: and PutLifecyclePolicy), and one StartBuild; both answer in a few hundred milliseconds
REPOSITORY_SECONDS = 0.5
BUILD_SECONDS = 0.5
#: kept back from every registry request: an exchange is cut at its limit, and the thread waiting on it must
#: still hand its result back before the time kept for the rest of the run begins
REQUEST_MARGIN_SECONDS = 1.0
#: a StartBuild retry is not begun unless this much is left after its backoff (one call answers well within it)
BUILD_CALL_SECONDS = 2.0
#: the part of the checks' time that tag listings may take: one registry that pages slowly and endlessly must
#: not take the time the checks need (a listing normally takes seconds: 100 pages of a fast registry)
LISTING_SHARE = 0.25
#: how much longer than the function's remaining time a run's lease lasts: a killed run's lease expires by itself
#: this long after the run would have ended, and a lease reaching further ahead than this is corrupt
LEASE_SLACK_SECONDS = 60.0
#: the longest a Lambda function runs (its timeout is at most 900 s): a lease is never taken for longer than
#: LEASE_MAX_SECONDS, so an `until` further ahead than that (and CLOCK_SLACK_SECONDS) cannot be a real lease
FUNCTION_TIMEOUT_MAX_SECONDS = 900.0
LEASE_MAX_SECONDS = FUNCTION_TIMEOUT_MAX_SECONDS + LEASE_SLACK_SECONDS
#: how far ahead of this clock another's may be (Lambda's clocks are NTP-synchronised)
CLOCK_SLACK_SECONDS = 60.0


@dataclass(frozen=True)
class Share:
    """The time given to one phase of the run: how much it was given, and what is left of it now."""

    seconds: float
    left: Callable[[], float]


class Budget:
    """The time a run keeps back from its registry requests: for reporting (in proportion to the list), and for
    creating repositories and starting builds in proportion to what the checks have found so far, at the pace those
    calls are seen to take. The checks stop where the rest of the run would no longer fit before the deadline; the
    tag listings, which come first, stop sooner, at their share (`listings`)."""

    def __init__(
        self, remaining_seconds: Callable[[], float], entries: int, images_per_build: int, *, dry_run: bool = False
    ) -> None:
        self._remaining = remaining_seconds
        self._per_build = images_per_build
        self._lock = threading.Lock()
        self._repositories: set[str] = set()
        self._copies = 0
        #: while the listings run, the remaining time at which their share ends
        self._listings_end: float | None = None
        self.entries(entries)
        self.repository_pace = REPOSITORY_SECONDS
        self.build_pace = 0.0 if dry_run else BUILD_SECONDS  # a dry run starts nothing

    def entries(self, count: int) -> None:
        """Reporting's share, for a list of `count` entries (set again once its tag sets are expanded)."""
        self.report = REPORT_SECONDS + REPORT_SECONDS_PER_ENTRY * count

    def found(self, check: Check, repository: str) -> None:
        """Count what one check will ask of the rest of the run."""
        if check.error is not None or check.source_digest is None:
            return
        if check.unchanged and not unmirrored(check.artifacts):
            return  # unchanged, and nothing that refers to it is missing
        with self._lock:
            self._copies += 1
            if check.target_digest is None:
                self._repositories.add(repository)

    def reserve(self) -> float:
        with self._lock:
            builds = math.ceil(self._copies / self._per_build)
            return self.report + len(self._repositories) * self.repository_pace + builds * self.build_pace

    def for_requests(self) -> float:
        """How long registry requests may still run: the time left less what the rest of the run needs and the
        request margin; while the listings run, no further than their share. The registry client's
        `remaining_seconds`: it starts no request and no backoff that would end after it."""
        left = self._remaining() - self.reserve() - REQUEST_MARGIN_SECONDS
        end = self._listings_end
        return left if end is None else min(left, self._remaining() - end)

    @contextmanager
    def listings(self) -> Iterator[Share]:
        """The tag listings' phase: their requests get LISTING_SHARE of the time the checks would have now, and
        none of the rest; the checks that follow have the rest."""
        seconds = max(0.0, LISTING_SHARE * self.for_requests())
        end = self._remaining() - seconds
        self._listings_end = end
        try:
            yield Share(seconds, lambda: self._remaining() - end)
        finally:
            self._listings_end = None

    def left(self) -> float:
        """Time for creating and starting, the report's share kept back."""
        return self._remaining() - self.report

    def for_builds(self) -> float:
        """What starting one build may still take, its retries' backoff included: `left` less one call's time.
        CodeBuild's start_build's `remaining_seconds`: it begins no retry whose backoff would end after it."""
        return self.left() - BUILD_CALL_SECONDS

    def took(self, kind: str, seconds: float) -> None:
        with self._lock:
            if kind == "repository":
                self.repository_pace = max(self.repository_pace, seconds)
            else:
                self.build_pace = max(self.build_pace, seconds)

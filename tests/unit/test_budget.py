"""The run's one account of time, on a clock the test moves: what registry requests, tag listings and builds may
still use, and what is kept back for the rest of the run."""

from __future__ import annotations

import pytest

from mirror.budget import (
    BUILD_CALL_SECONDS,
    BUILD_SECONDS,
    LISTING_SHARE,
    REPORT_SECONDS,
    REPORT_SECONDS_PER_ENTRY,
    REPOSITORY_SECONDS,
    REQUEST_MARGIN_SECONDS,
    Budget,
)
from mirror.planning import Check


class Clock:
    """The function's remaining time, moved by the test."""

    def __init__(self, remaining: float) -> None:
        self.remaining = remaining

    def __call__(self) -> float:
        return self.remaining


def test_requests_get_what_is_left_less_the_report_and_the_request_margin() -> None:
    clock = Clock(100.0)
    budget = Budget(clock, 1000, images_per_build=10)

    report = REPORT_SECONDS + 1000 * REPORT_SECONDS_PER_ENTRY
    assert budget.for_requests() == pytest.approx(100.0 - report - REQUEST_MARGIN_SECONDS)
    clock.remaining = 10.0
    assert budget.for_requests() == pytest.approx(10.0 - report - REQUEST_MARGIN_SECONDS)
    assert budget.left() == pytest.approx(10.0 - report)


def test_what_the_checks_find_to_copy_is_kept_back_from_later_requests() -> None:
    budget = Budget(Clock(100.0), 0, images_per_build=2)
    before = budget.for_requests()

    budget.found(Check("sha256:" + "a" * 64, None), "mirror/a")  # missing: a repository and a build
    budget.found(Check("sha256:" + "b" * 64, "sha256:" + "c" * 64), "mirror/b")  # changed: same build
    budget.found(Check("sha256:" + "d" * 64, "sha256:" + "d" * 64), "mirror/c")  # unchanged: nothing
    budget.found(Check(None, None, "source not found: x"), "mirror/d")  # failed: nothing

    assert before - budget.for_requests() == pytest.approx(REPOSITORY_SECONDS + BUILD_SECONDS)


def test_the_listings_get_their_share_of_the_checks_time_and_the_checks_the_rest() -> None:
    clock = Clock(100.0)
    budget = Budget(clock, 0, images_per_build=10)
    checks = budget.for_requests()

    with budget.listings() as share:
        assert share.seconds == pytest.approx(LISTING_SHARE * checks)
        assert budget.for_requests() == pytest.approx(share.seconds)
        clock.remaining -= share.seconds / 2
        assert share.left() == pytest.approx(share.seconds / 2)
        assert budget.for_requests() == pytest.approx(share.seconds / 2)
        clock.remaining -= share.seconds  # a slow listing ran past its share: requests get nothing more
        assert budget.for_requests() < 0
        assert share.left() < 0

    # The checks that follow have what is left of the run, not of the share.
    assert budget.for_requests() == pytest.approx(clock.remaining - REPORT_SECONDS - REQUEST_MARGIN_SECONDS)
    assert budget.for_requests() > 0


def test_near_the_deadline_the_listings_share_is_no_more_than_the_checks_time() -> None:
    clock = Clock(REPORT_SECONDS + REQUEST_MARGIN_SECONDS + 2.0)
    budget = Budget(clock, 0, images_per_build=10)

    with budget.listings() as share:
        assert share.seconds == pytest.approx(LISTING_SHARE * 2.0)
        assert budget.for_requests() <= 2.0
    clock.remaining = 1.0  # past the point where anything but the report fits
    with budget.listings() as share:
        assert share.seconds == 0.0
        assert budget.for_requests() < 0


def test_a_build_start_keeps_one_calls_time_and_the_report_back() -> None:
    clock = Clock(30.0)
    budget = Budget(clock, 0, images_per_build=10)

    assert budget.for_builds() == pytest.approx(30.0 - REPORT_SECONDS - BUILD_CALL_SECONDS)
    budget.took("build", 4.0)
    budget.took("build", 1.0)
    assert budget.build_pace == 4.0  # the slowest seen


def test_a_dry_run_keeps_no_time_for_builds() -> None:
    budget = Budget(Clock(100.0), 0, images_per_build=1, dry_run=True)
    before = budget.for_requests()

    budget.found(Check("sha256:" + "b" * 64, "sha256:" + "c" * 64), "mirror/b")

    assert budget.for_requests() == pytest.approx(before)

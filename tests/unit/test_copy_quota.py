"""The build's Docker Hub quota: its ledger across concurrent copies (where its check may send a credential is the
function's rule: tests/unit/test_trust_rules.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from copier.copy_images import Job, Quota

#: a deadline the ledger's checks never reach
LATER = time.monotonic() + 3600


def job(number: int, pulls: int, registry: str = "docker.io") -> Job:
    digest = "sha256:" + f"{number:064x}"
    return Job(
        number,
        f"docker.io/library/app{number}@{digest}",
        "docker.io",
        f"library/app{number}",
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/library/app{number}:1",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/library/app{number}",
        "1",
        digest,
        registry,
        pulls,
    )


def test_the_ledger_starts_from_the_first_figure_and_only_ever_falls() -> None:
    figures = iter([20, 19, 30, 12])  # a figure that rises (a window reset mid-build) is not believed
    quota = Quota(10, lambda _job, _deadline: next(figures))

    assert quota.admit(job(1, 4), LATER) is None  # 20 - 10 = 10 left, 6 after
    assert quota.admit(job(2, 4), LATER) is None  # min(6, 19 - 10) = 6, 2 after
    assert quota.admit(job(3, 3), LATER) == "3 pulls needed, 2 left above the reserve of 10 until the window resets"
    assert quota.admit(job(4, 3), LATER) == "3 pulls needed, 2 left above the reserve of 10 until the window resets"
    assert quota.admit(job(5, 3, registry="quay.io"), LATER) is None  # not Docker Hub's quota: never asked


def test_without_a_figure_copies_go_ahead_unchecked() -> None:
    quota = Quota(10, lambda _job, _deadline: None)  # a paid account (no ratelimit headers), or the check failed
    assert all(quota.admit(job(n, 50), LATER) is None for n in range(5))


def test_concurrent_admissions_never_spend_more_than_the_figure_allows() -> None:
    quota = Quota(10, lambda _job, _deadline: 10 + 50)
    barrier = threading.Barrier(8)

    def admit(n: int) -> bool:
        barrier.wait()
        return quota.admit(job(n, 7), LATER) is None

    with ThreadPoolExecutor(max_workers=8) as pool:
        admitted = sum(pool.map(admit, range(8)))
    assert admitted == 7  # 50 above the reserve: seven copies of 7, never eight

"""The build's Docker Hub quota: its ledger across concurrent copies, and where its rate-limit check may send a
credential (the function's rule: a realm on the registry's own host, or auth.docker.io for Docker Hub)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from copier import copy_images
from copier.copy_images import Job, Quota


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


@pytest.mark.parametrize(
    ("endpoint", "realm", "takes"),
    [
        ("registry-1.docker.io", "https://auth.docker.io/token", True),
        ("registry-1.docker.io", "https://registry-1.docker.io/token", True),
        ("ghcr.io", "https://ghcr.io/token", True),
        ("ghcr.io", "https://auth.docker.io/token", False),  # another host: asked anonymously
        ("registry-1.docker.io", "https://evil.example/token", False),
        ("registry-1.docker.io", "http://auth.docker.io/token", None),  # plain http outside loopback: refused
        ("registry-1.docker.io", "https://127.0.0.1:9001/token", None),  # loopback named by a remote server
        ("127.0.0.1", "http://127.0.0.1:5001/token", True),  # tests and sandboxes
        ("127.0.0.1", "http://localhost:5001/token", False),
        ("registry-1.docker.io", "file:///etc/passwd", None),
    ],
)
def test_the_builds_check_sends_a_credential_only_where_it_belongs(endpoint: str, realm: str, takes: bool) -> None:
    assert copy_images._realm_takes_credentials(endpoint, realm) is takes


def test_the_ledger_starts_from_the_first_figure_and_only_ever_falls() -> None:
    figures = iter([20, 19, 30, 12])  # a figure that rises (a window reset mid-build) is not believed
    quota = Quota(10, lambda _: next(figures))

    assert quota.admit(job(1, 4)) is None  # 20 - 10 = 10 left, 6 after
    assert quota.admit(job(2, 4)) is None  # min(6, 19 - 10) = 6, 2 after
    assert quota.admit(job(3, 3)) == "3 pulls needed, 2 left above the reserve of 10 until the window resets"
    assert quota.admit(job(4, 3)) == "3 pulls needed, 2 left above the reserve of 10 until the window resets"
    assert quota.admit(job(5, 3, registry="quay.io")) is None  # not Docker Hub's quota: never asked


def test_without_a_figure_copies_go_ahead_unchecked() -> None:
    quota = Quota(10, lambda _: None)  # a paid account (no ratelimit headers), or the check failed
    assert all(quota.admit(job(n, 50)) is None for n in range(5))


def test_concurrent_admissions_never_spend_more_than_the_figure_allows() -> None:
    quota = Quota(10, lambda _: 10 + 50)
    barrier = threading.Barrier(8)

    def admit(n: int) -> bool:
        barrier.wait()
        return quota.admit(job(n, 7)) is None

    with ThreadPoolExecutor(max_workers=8) as pool:
        admitted = sum(pool.map(admit, range(8)))
    assert admitted == 7  # 50 above the reserve: seven copies of 7, never eight

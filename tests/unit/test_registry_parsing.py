"""Challenge, rate-limit and Retry-After parsing."""

from __future__ import annotations

import email.utils

import pytest

from mirror.registry import Challenge, RateLimit, parse_challenge, parse_ratelimit, parse_retry_after


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/nginx:pull"',
            Challenge(
                "bearer",
                {
                    "realm": "https://auth.docker.io/token",
                    "service": "registry.docker.io",
                    "scope": "repository:library/nginx:pull",
                },
            ),
        ),
        (
            'Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com"',
            Challenge(
                "basic",
                {"realm": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com/", "service": "ecr.amazonaws.com"},
            ),
        ),
        ('basic realm="test-ecr"', Challenge("basic", {"realm": "test-ecr"})),
        (
            'Bearer realm="https://x/token", scope="repository:a:pull,push"',
            Challenge("bearer", {"realm": "https://x/token", "scope": "repository:a:pull,push"}),
        ),
        (
            'Bearer realm="https://x/t",error="insufficient_scope"',
            Challenge("bearer", {"realm": "https://x/t", "error": "insufficient_scope"}),
        ),
        ('Bearer realm="a\\"b"', Challenge("bearer", {"realm": 'a"b'})),
        ("Bearer realm=bare,service=svc", Challenge("bearer", {"realm": "bare", "service": "svc"})),
        ("", Challenge("", {})),
    ],
)
def test_challenge_parsing(header: str, expected: Challenge) -> None:
    assert parse_challenge(header) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "97;w=21600"}, RateLimit(100, 97)),
        ({"ratelimit-limit": "200"}, RateLimit(200, None)),
        ({}, None),
        ({"ratelimit-limit": "garbage"}, None),
    ],
)
def test_ratelimit_headers(headers: dict[str, str], expected: RateLimit | None) -> None:
    assert parse_ratelimit(headers) == expected


def test_retry_after_seconds_and_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30.0)

"""Challenge, rate-limit and Retry-After parsing."""

from __future__ import annotations

import email.utils

import pytest

from mirror.registry import (
    AuthError,
    BadResponseError,
    Challenge,
    RateLimit,
    parse_challenge,
    parse_ratelimit,
    parse_retry_after,
)
from mirror.registry.auth import realm_takes_credentials
from mirror.registry.client import next_link


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


@pytest.mark.parametrize(
    ("host", "endpoint", "realm", "takes_credentials"),
    [
        ("docker.io", "https://registry-1.docker.io", "https://auth.docker.io/token", True),
        # Docker Hub through a pull-through mirror: the mirror is the user's choice; auth.docker.io no longer is
        ("docker.io", "https://mirror.example.com", "https://mirror.example.com/token", True),
        ("docker.io", "https://mirror.example.com", "https://auth.docker.io/token", False),
        ("docker.io", "https://mirror.example.com", "https://tokens.attacker.example/token", False),
        ("ghcr.io", "https://ghcr.io", "https://ghcr.io/token", True),
        ("ghcr.io", "https://ghcr.io", "https://ghcr.io.attacker.example/token", False),
        ("quay.io", "https://quay.io", "https://QUAY.IO/v2/auth", True),
        ("local", "http://127.0.0.1:5000", "http://127.0.0.1:5001/token", True),
        ("local", "http://127.0.0.1:5000", "http://localhost:5001/token", False),
    ],
)
def test_credentials_go_only_to_realms_on_the_endpoints_host(
    host: str, endpoint: str, realm: str, takes_credentials: bool
) -> None:
    assert realm_takes_credentials(host, endpoint, realm) is takes_credentials


@pytest.mark.parametrize(
    ("endpoint", "realm", "reason"),
    [
        # a hostile registry naming the Lambda runtime API as its realm
        ("https://evil.example", "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next", "plain-http"),
        ("https://evil.example", "https://127.0.0.1:9001/2018-06-01/runtime/invocation/next", "loopback token realm"),
        ("https://evil.example", "https://localhost/token", "loopback token realm"),
        ("https://evil.example", "https://[::1]/token", "loopback token realm"),
        ("https://evil.example", "http://evil.example/token", "plain-http"),
        ("http://127.0.0.1:5000", "http://auth.example.com/token", "plain-http"),
        ("https://evil.example", "ftp://evil.example/token", "not a URL"),
        ("https://evil.example", "", "not a URL"),
    ],
)
def test_realms_a_remote_server_may_not_name_are_refused(endpoint: str, realm: str, reason: str) -> None:
    with pytest.raises(AuthError, match=reason):
        realm_takes_credentials("evil.example", endpoint, realm)


@pytest.mark.parametrize(
    ("header", "target"),
    [
        ('</v2/x/tags/list?n=100&last=b>; rel="next"', "/v2/x/tags/list?n=100&last=b"),
        ("</v2/x/tags/list?last=b>; rel=next", "/v2/x/tags/list?last=b"),
        ('<a>; rel="prev", <b>; rel="next"', "b"),
        ('<a>; title="x, y"; rel="next"', "a"),
        ('<a>; rel="prev"', None),
        ('<a>; rel="next last"', "a"),
    ],
)
def test_the_next_link_is_found(header: str, target: str | None) -> None:
    assert next_link(header) == target


@pytest.mark.parametrize("header", ["garbage; rel=next", "</v2/x; rel=next", "<a> rel=next"])
def test_a_malformed_link_header_is_a_bad_response(header: str) -> None:
    with pytest.raises(BadResponseError, match="malformed Link header"):
        next_link(header)

"""Challenge, rate-limit, Retry-After, Link, URL and manifest parsing: what a server sends is read strictly."""

from __future__ import annotations

import email.utils
import json

import pytest
import urllib3.util

from mirror.registry import (
    AuthError,
    BadResponseError,
    Challenge,
    RateLimit,
    fields,
    parse_challenge,
    parse_ratelimit,
    parse_retry_after,
)
from mirror.registry.auth import realm_takes_credentials
from mirror.registry.client import count_manifests, next_link
from mirror.registry.httplink import next_page
from mirror.registry.urls import agree, named_url
from mirror.trust import UntrustedURLError, parse_url


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
        ({"ratelimit-limit": " 200 ;w=1"}, RateLimit(200, None)),
        ({}, None),
        ({"ratelimit-limit": "garbage"}, None),
        # not plain ASCII digits: no figure (int() reads '٣' as 3, isdigit() takes '²')
        ({"ratelimit-remaining": "\u0663"}, None),
        ({"ratelimit-remaining": "\u0663;w=21600"}, None),
        ({"ratelimit-remaining": "\u00b2"}, None),
        ({"ratelimit-remaining": "9\u00b2;w=1"}, None),
        ({"ratelimit-remaining": "97;w=\u0663"}, None),
        ({"ratelimit-remaining": "-1"}, None),
        ({"ratelimit-remaining": "+5"}, None),
        ({"ratelimit-remaining": "1_000"}, None),
        ({"ratelimit-remaining": "1" * 13}, None),
        ({"ratelimit-limit": "100", "ratelimit-remaining": "\uff19\uff17"}, RateLimit(100, None)),
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
    ("raw", "expected"),
    [
        ("0", 0.0),
        (" 12\t", 12.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 30.0),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", 30.0),  # RFC 850
        ("Sun Nov  6 08:49:37 1994", 30.0),  # asctime
        ("Sun, 06 Nov 1994 08:48:37 GMT", 0.0),  # in the past: no wait
        # malformed: ignored, and the exponential backoff applies
        ("\u00b2", None),
        ("\u0663", None),
        ("1\u00b2", None),
        ("\uff11", None),
        ("-1", None),
        ("1.5", None),
        ("1e3", None),
        ("", None),
        ("1" * 10, None),
        ("Sun, 06 Nov 1994 08:49:37 UTC", None),
        ("Sun, 06 Nov 1994 08:49:37 +0000", None),
        ("Sun, 31 Feb 1994 08:49:37 GMT", None),
        ("Sun, 06 Nov 1994 25:49:37 GMT", None),
        ("Sun, \u0660\u0666 Nov 1994 08:49:37 GMT", None),
        ("06 Nov 1994 08:49:37 GMT", None),
    ],
)
def test_retry_after_is_read_only_in_plain_ascii(raw: str, expected: float | None) -> None:
    now = email.utils.parsedate_to_datetime("Sun, 06 Nov 1994 08:49:07 GMT").timestamp()
    assert parse_retry_after(raw, now=now) == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("123", 123), (" 7 ", 7), ("\u00b2", None), ("\u0663", None), ("", None), (None, None), ("1" * 19, None)],
)
def test_content_length_is_a_plain_ascii_number_or_nothing(raw: str | None, expected: int | None) -> None:
    assert fields.number(raw, 18) == expected


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
        ("https://evil.example", "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next", "plain http"),
        ("https://evil.example", "https://127.0.0.1:9001/2018-06-01/runtime/invocation/next", "on loopback"),
        ("https://evil.example", "https://localhost/token", "on loopback"),
        ("https://evil.example", "https://[::1]/token", "on loopback"),
        ("https://evil.example", "http://evil.example/token", "plain http"),
        ("http://127.0.0.1:5000", "http://auth.example.com/token", "plain http"),
        ("https://evil.example", "ftp://evil.example/token", "not a plain http"),
        ("https://evil.example", "", "not a plain http"),
        # urlsplit reads 127.0.0.1 and ghcr.io, urllib3 (which connects) localhost and evil.example
        ("http://127.0.0.1:5000", "http://localhost:5001\\@127.0.0.1/token", "not a plain http"),
        ("https://ghcr.io", "https://evil.example\\@ghcr.io/token", "not a plain http"),
        ("https://ghcr.io", "https://user:pw@ghcr.io/token", "not a plain http"),
        ("https://ghcr.io", "https://ghcr.io@evil.example/token", "not a plain http"),
        ("https://ghcr.io", "https://ghcr.io/token#x", "not a plain http"),
        ("https://ghcr.io", "https://ghcr.io /token", "not a plain http"),
        ("https://ghcr.io", "https://ghcr.io\t/token", "not a plain http"),
        ("https://ghcr.io", "https://ghcr.\u0456o/token", "ASCII"),
    ],
)
def test_realms_a_remote_server_may_not_name_are_refused(endpoint: str, realm: str, reason: str) -> None:
    with pytest.raises(AuthError, match=f"evil.example: .*{reason}.*; refused"):
        realm_takes_credentials("evil.example", endpoint, realm)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:5000/v2/", "https://GHCR.io/token?x=1", "http://[::1]:1/", "https://h:0443/x", "http://h?q"],
)
def test_a_url_both_parsers_read_alike_is_accepted(url: str) -> None:
    parsed = named_url(url)
    seen = urllib3.util.parse_url(url)
    assert (parsed.scheme, parsed.port) == (seen.scheme, seen.port)
    assert parsed.host == (seen.host or "").strip("[]").lower()


@pytest.mark.parametrize(
    "url", ["http://localhost:1\\@127.0.0.1/x", "http://a@b/", "http://a:b@c/", "http://h/x#f", "http://h/\u00e9"]
)
def test_an_ambiguous_url_is_refused(url: str) -> None:
    with pytest.raises(UntrustedURLError):
        named_url(url)


@pytest.mark.parametrize(
    "seen",
    [
        urllib3.util.Url(scheme="http", host="localhost", port=5001, path="/token"),
        urllib3.util.Url(scheme="https", host="127.0.0.1", port=5000, path="/token"),
        urllib3.util.Url(scheme="http", host="127.0.0.1", port=None, path="/token"),
    ],
)
def test_a_url_the_connecting_parser_reads_otherwise_is_refused(seen: urllib3.util.Url) -> None:
    assert agree(parse_url("http://127.0.0.1:5000/token"), urllib3.util.parse_url("http://127.0.0.1:5000/token"))
    assert not agree(parse_url("http://127.0.0.1:5000/token"), seen)


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


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('</v2/x/tags/list?n=1&last=a>; rel="next"', "http://127.0.0.1:5000/v2/x/tags/list?n=1&last=a"),
        ('<http://127.0.0.1:5000/v2/x/tags/list?last=b>; rel="next"', "http://127.0.0.1:5000/v2/x/tags/list?last=b"),
        (None, None),
        ('</v2/x/tags/list?last=a>; rel="prev"', None),
    ],
)
def test_the_next_page_is_on_the_endpoint(header: str | None, expected: str | None) -> None:
    assert next_page("http://127.0.0.1:5000/v2/x/tags/list?n=1", header, "http://127.0.0.1:5000", "x") == expected


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://localhost:5000\\@127.0.0.1:5000/v2/x/tags/list", "refused"),
        ("http://user:pw@127.0.0.1:5000/v2/x/tags/list", "refused"),
        ("//localhost:5000/v2/x/tags/list", "on another host"),
        ("https://127.0.0.1:5000/v2/x/tags/list", "on another host"),
        ("/v2/x/tags/list?last=\u00e9", "refused"),
        ("http://[::1/v2", "refused"),
    ],
)
def test_a_next_page_link_with_url_tricks_is_refused(target: str, reason: str) -> None:
    with pytest.raises(BadResponseError, match=f"x: the next page .*{reason}"):
        next_page("http://127.0.0.1:5000/v2/x/tags/list?n=1", f'<{target}>; rel="next"', "http://127.0.0.1:5000", "x")


DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("manifest", "count"),
    [
        ({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {}}, 1),
        ({"schemaVersion": 2, "manifests": [{"digest": DIGEST}, {"digest": DIGEST}]}, 3),
        ({"schemaVersion": 2, "manifests": []}, 1),
        ({"schemaVersion": 1, "name": "x"}, 1),
    ],
)
def test_a_manifest_counts_itself_and_what_it_lists(manifest: object, count: int) -> None:
    assert count_manifests(json.dumps(manifest).encode(), "x") == count


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"null",
        b'"x"',
        b"{}",
        b'{"schemaVersion": true, "manifests": []}',
        b'{"schemaVersion": "2"}',
        b'{"schemaVersion": 3}',
        b'{"schemaVersion": 2, "manifests": "x"}',
        b'{"schemaVersion": 2, "manifests": {"a": 1}}',
        b'{"schemaVersion": 2, "manifests": [1]}',
        b'{"schemaVersion": 2, "manifests": [{"digest": "sha256:zz"}]}',
        b'{"schemaVersion": 2, "manifests": [{"size": 1}]}',
        json.dumps({"schemaVersion": 2, "manifests": [{"digest": DIGEST}] * 1001}).encode(),
        b"[" * 100_000,
        b'{"schemaVersion": 2e999999}',
        b'{"schemaVersion": ' + b"9" * 5000 + b"}",
        b"\xff\xfe",
    ],
)
def test_a_malformed_manifest_is_a_bad_response(body: bytes) -> None:
    with pytest.raises(BadResponseError):
        count_manifests(body, "x")

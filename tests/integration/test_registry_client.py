"""The registry client against real registries: auth discovery, token reuse, retries and their bounds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.registries import ECR_ACCOUNT_HOST, ECR_PASSWORD, ECR_USER, answer
from mirror.registry import (
    AuthError,
    BadResponseError,
    Credential,
    DeadlineError,
    NotFoundError,
    RateLimitedError,
    RegistryClient,
    UpstreamError,
)
from tests.integration.conftest import Mirror, Registries

HUB = "docker.io"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(registries: Registries, sleeps: list[float]) -> Iterator[RegistryClient]:
    c = RegistryClient(
        endpoints={HUB: registries.hub.url, ECR_ACCOUNT_HOST: registries.ecr.url},
        credentials={ECR_ACCOUNT_HOST: Credential(ECR_USER, ECR_PASSWORD)},
        timeout=3,
        sleep=sleeps.append,
    )
    yield c
    c.close()


def test_bearer_token_is_discovered_and_reused(mirror: Mirror, client: RegistryClient) -> None:
    layout = mirror.seed("nginx", "v1", tag="1")
    tokens = mirror.registries.tokens
    before = len(tokens.requests)

    digests = [client.manifest_digest(HUB, mirror.image("nginx"), "1") for _ in range(3)]

    assert digests == [layout.digest] * 3
    assert len(tokens.requests) - before == 1
    assert tokens.requests[-1].service == tokens.service
    # 401 + HEAD with the token, then two HEADs that reuse it: no 401 round trip per image.
    assert [m for m, _ in mirror.hub_requests()] == ["HEAD"] * 4


def test_basic_auth_with_the_ecr_credential(mirror: Mirror, client: RegistryClient) -> None:
    layout = mirror.seed_ecr("mirror/x", "x", tag="1")
    assert client.manifest_digest(ECR_ACCOUNT_HOST, "mirror/x", "1") == layout.digest
    with pytest.raises(NotFoundError):
        client.manifest_digest(ECR_ACCOUNT_HOST, "mirror/x", "2")


def test_basic_auth_without_or_with_wrong_credentials(registries: Registries, mirror: Mirror) -> None:
    mirror.seed_ecr("mirror/y", "y", tag="1")
    anonymous = RegistryClient(endpoints={ECR_ACCOUNT_HOST: registries.ecr.url})
    with pytest.raises(AuthError, match="none are configured"):
        anonymous.manifest_digest(ECR_ACCOUNT_HOST, "mirror/y", "1")
    wrong = RegistryClient(
        endpoints={ECR_ACCOUNT_HOST: registries.ecr.url},
        credentials={ECR_ACCOUNT_HOST: Credential("AWS", "wrong")},
    )
    with pytest.raises(AuthError, match="rejected"):
        wrong.manifest_digest(ECR_ACCOUNT_HOST, "mirror/y", "1")


def test_transient_503_is_retried_with_backoff(mirror: Mirror, client: RegistryClient, sleeps: list[float]) -> None:
    layout = mirror.seed("flaky", "f")
    mirror.registries.hub.faults[f"/{mirror.image('flaky')}/manifests/"] = answer(503, times=2)

    assert client.manifest_digest(HUB, mirror.image("flaky"), "latest") == layout.digest
    assert len(sleeps) == 2
    assert sleeps[1] > sleeps[0] > 0


def test_retry_after_is_honoured(mirror: Mirror, client: RegistryClient, sleeps: list[float]) -> None:
    layout = mirror.seed("limited", "l")
    mirror.registries.hub.faults[f"/{mirror.image('limited')}/manifests/"] = answer(
        429, {"Retry-After": "2"}, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}', times=1
    )

    assert client.manifest_digest(HUB, mirror.image("limited"), "latest") == layout.digest
    assert sleeps == [2.0]


def test_persistent_500_gives_up_after_bounded_attempts(
    mirror: Mirror, client: RegistryClient, sleeps: list[float]
) -> None:
    mirror.seed("broken", "b")
    mirror.registries.hub.faults[f"/{mirror.image('broken')}/manifests/"] = answer(500)

    with pytest.raises(UpstreamError, match="HTTP 500"):
        client.manifest_digest(HUB, mirror.image("broken"), "latest")
    manifest_requests = [p for _, p in mirror.hub_requests() if "/manifests/" in p]
    assert len(manifest_requests) == 4
    assert len(sleeps) == 3


def test_long_retry_after_is_not_waited_for(mirror: Mirror, client: RegistryClient, sleeps: list[float]) -> None:
    mirror.seed("slow", "s")
    mirror.registries.hub.faults[f"/{mirror.image('slow')}/manifests/"] = answer(429, {"Retry-After": "3600"})

    with pytest.raises(RateLimitedError, match="HTTP 429"):
        client.manifest_digest(HUB, mirror.image("slow"), "latest")
    assert sleeps == []


def test_no_backoff_past_the_deadline(registries: Registries, mirror: Mirror, sleeps: list[float]) -> None:
    mirror.seed("late", "l")
    registries.hub.faults[f"/{mirror.image('late')}/manifests/"] = answer(503)
    client = RegistryClient(endpoints={HUB: registries.hub.url}, sleep=sleeps.append, remaining_seconds=lambda: 2.0)

    with pytest.raises(UpstreamError):
        client.manifest_digest(HUB, mirror.image("late"), "latest")
    assert sleeps == []

    out_of_time = RegistryClient(endpoints={HUB: registries.hub.url}, remaining_seconds=lambda: 0.5)
    with pytest.raises(DeadlineError):
        out_of_time.manifest_digest(HUB, mirror.image("late"), "latest")


@pytest.mark.parametrize(("header", "reason"), [(None, "without a Docker-Content-Digest"), ("sha256:zz", "malformed")])
def test_bad_digest_header_is_an_error(mirror: Mirror, client: RegistryClient, header: str | None, reason: str) -> None:
    mirror.seed("odd", "o")
    headers = {"Docker-Content-Digest": header} if header else {}
    mirror.registries.hub.faults[f"/{mirror.image('odd')}/manifests/"] = answer(200, headers)

    with pytest.raises(BadResponseError, match=reason):
        client.manifest_digest(HUB, mirror.image("odd"), "latest")


def test_plain_http_token_realm_outside_loopback_is_refused(mirror: Mirror, client: RegistryClient) -> None:
    challenge = 'Bearer realm="http://auth.example.com/token",service="x"'
    mirror.registries.hub.faults[f"/{mirror.image('evil')}/manifests/"] = answer(401, {"WWW-Authenticate": challenge})

    with pytest.raises(AuthError, match="plain-http token realm"):
        client.manifest_digest(HUB, mirror.image("evil"), "latest")


def test_tags_are_listed_page_by_page_to_the_end(mirror: Mirror, client: RegistryClient) -> None:
    tags = [f"1.{i}.0" for i in range(260)]
    mirror.seed_tags("many", tags)
    hub = mirror.registries.hub
    pages_before = hub.tag_pages_served

    listed = client.list_tags(HUB, mirror.image("many"))

    assert sorted(listed) == sorted(tags)
    assert hub.tag_pages_served - pages_before == 3  # 100 + 100 + 60, by the Link headers
    listings = [(m, p) for m, p in mirror.hub_requests() if "/tags/list" in p]
    assert all(m == "GET" for m, _ in listings)
    assert not [p for m, p in mirror.hub_requests() if m == "GET" and "/manifests/" in p]  # no pull counted


@pytest.mark.parametrize(
    ("fault", "error", "reason"),
    [
        (answer(200, {"Link": "garbage; rel=next"}, b'{"tags": ["a"]}'), BadResponseError, "malformed Link"),
        (answer(200, {"Link": '<?n=100>; rel="next"'}, b'{"tags": ["a"]}'), BadResponseError, "already read"),
        (
            answer(200, {"Link": '<https://elsewhere.example/v2/x/tags/list?n=1>; rel="next"'}, b'{"tags": ["a"]}'),
            BadResponseError,
            "on another host",
        ),
        (answer(200, {}, b"not json"), BadResponseError, "not JSON"),
        (answer(429, {"Retry-After": "0"}), RateLimitedError, "HTTP 429"),
        (answer(503), UpstreamError, "HTTP 503"),
    ],
    ids=["malformed Link", "Link loop", "Link to another host", "not JSON", "429", "503"],
)
def test_a_listing_fault_is_a_typed_error(
    mirror: Mirror, client: RegistryClient, fault: Any, error: type[Exception], reason: str
) -> None:
    mirror.seed_tags("faulty", ["1", "2"])
    mirror.registries.hub.faults[f"/{mirror.image('faulty')}/tags/list"] = fault

    with pytest.raises(error, match=reason):
        client.list_tags(HUB, mirror.image("faulty"))


def test_an_endless_chain_of_pages_is_cut_at_the_bound(mirror: Mirror, client: RegistryClient) -> None:
    mirror.seed_tags("endless", ["1"])
    counter = iter(range(10**6))

    def endless(h: Any) -> bool:
        page = next(counter)
        body = json.dumps({"tags": [f"t{page}"]}).encode()
        h.send_response(200)
        h.send_header("Link", f'</v2/{mirror.image("endless")}/tags/list?n=1&last=t{page}>; rel="next"')
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        return True

    mirror.registries.hub.faults[f"/{mirror.image('endless')}/tags/list"] = endless

    with pytest.raises(BadResponseError, match="more than 100 pages of tags"):
        client.list_tags(HUB, mirror.image("endless"))


def test_more_tags_than_the_bound_is_a_typed_error(mirror: Mirror, client: RegistryClient) -> None:
    # Docker Hub has been seen ignoring `n` and answering thousands of tags at once: read, but bounded.
    mirror.seed_tags("crowded", ["1"])
    body = json.dumps({"tags": [f"t{i}" for i in range(10_001)]}).encode()
    mirror.registries.hub.faults[f"/{mirror.image('crowded')}/tags/list"] = answer(200, {}, body)

    with pytest.raises(BadResponseError, match="more than 10000 tags"):
        client.list_tags(HUB, mirror.image("crowded"))

"""The registry client against real registries: auth discovery, token reuse, retries and their bounds."""

from __future__ import annotations

from collections.abc import Iterator

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

"""The registry client against real registries: auth discovery, token reuse, retries and their bounds, the per-registry
backoff, strict headers, manifests read back, next pages that must stay on the registry, and connections kept."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from devtools.registries import ECR_ACCOUNT_HOST, ECR_PASSWORD, ECR_USER, HubProxy, answer, drip
from mirror.registry import (
    AuthError,
    BadResponseError,
    Credential,
    DeadlineError,
    NotFoundError,
    RateLimit,
    RateLimitedError,
    RegistryClient,
    RegistryTimeoutError,
    UpstreamError,
)
from mirror.registry.transport import new_session
from tests.integration.conftest import Mirror, Registries

HUB = "docker.io"


@dataclass
class FakeTime:
    """The client's clock and sleep: time passes only by sleeping, so every wait is exactly what was asked for."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)
    #: when set, a sleep blocks until it is released (threads held mid-wait, for a test to look at)
    gate: threading.Event | None = None
    asleep: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        start = self.now
        self.sleeps.append(seconds)
        self.asleep.release()
        if self.gate is not None:
            assert self.gate.wait(30)
        self.now = max(self.now, start + seconds)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def sleeps(fake_time: FakeTime) -> list[float]:
    return fake_time.sleeps


@pytest.fixture
def client(registries: Registries, fake_time: FakeTime) -> Iterator[RegistryClient]:
    c = RegistryClient(
        endpoints={HUB: registries.hub.url, ECR_ACCOUNT_HOST: registries.ecr.url, "quay.io": registries.plain.url},
        credentials={ECR_ACCOUNT_HOST: Credential(ECR_USER, ECR_PASSWORD)},
        timeout=3,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
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
    # `remaining_seconds` is the client's to use whole (the run's budget keeps its margins): 1.2 s leaves less than
    # a useful request after the first backoff (0.5 s or more)
    client = RegistryClient(endpoints={HUB: registries.hub.url}, sleep=sleeps.append, remaining_seconds=lambda: 1.2)

    with pytest.raises(UpstreamError):
        client.manifest_digest(HUB, mirror.image("late"), "latest")
    assert sleeps == []

    out_of_time = RegistryClient(endpoints={HUB: registries.hub.url}, remaining_seconds=lambda: 0.1)
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

    with pytest.raises(AuthError, match="the token realm is plain http outside loopback"):
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


# -- a 429 holds its registry, for every thread ---------------------------------------------------------------------


def test_a_429_holds_that_registry_for_every_thread_and_no_other(
    mirror: Mirror, client: RegistryClient, fake_time: FakeTime
) -> None:
    a = mirror.seed("a", "a", tag="1")
    b = mirror.seed("b", "b", tag="1")
    other = mirror.seed_plain("other", "o", tag="1")
    mirror.registries.hub.faults[f"/{mirror.image('a')}/manifests/"] = answer(
        429, {"Retry-After": "1"}, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}', times=1
    )
    fake_time.gate = threading.Event()  # a wait lasts until the test lets it end: the window is the test's to see
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(client.manifest_digest, HUB, mirror.image("a"), "1")
        assert fake_time.asleep.acquire(timeout=30)  # a was answered 429 and waits
        sent = len(mirror.hub_requests())
        second = pool.submit(client.manifest_digest, HUB, mirror.image("b"), "1")
        assert fake_time.asleep.acquire(timeout=30)  # b waits for the registry too, before sending anything

        # another registry is not held up: checked while both wait, without waiting
        assert client.manifest_digest("quay.io", mirror.image("other"), "1") == other.digest
        assert mirror.hub_requests()[sent:] == []  # nothing reached the held registry during its backoff
        assert fake_time.sleeps == [1.0, 1.0]  # each waited what Retry-After asked, from the same 429

        fake_time.gate.set()
        assert (first.result(30), second.result(30)) == (a.digest, b.digest)
    assert fake_time.sleeps == [1.0, 1.0]


def test_a_held_registry_is_not_waited_for_past_the_deadline(
    registries: Registries, mirror: Mirror, fake_time: FakeTime
) -> None:
    mirror.seed("a", "a", tag="1")
    mirror.seed("b", "b", tag="1")
    registries.hub.faults[f"/{mirror.image('a')}/manifests/"] = answer(429, {"Retry-After": "5"})
    client = RegistryClient(
        endpoints={HUB: registries.hub.url}, sleep=fake_time.sleep, clock=fake_time.clock, remaining_seconds=lambda: 3
    )

    with pytest.raises(RateLimitedError, match="HTTP 429"):
        client.manifest_digest(HUB, mirror.image("a"), "1")
    with pytest.raises(RateLimitedError, match=r"is rate limited for another 5\.0s"):
        client.manifest_digest(HUB, mirror.image("b"), "1")

    assert fake_time.sleeps == []
    assert not [p for _, p in mirror.hub_requests() if mirror.image("b") in p]  # b was never sent


# -- headers are read strictly --------------------------------------------------------------------------------------


def test_a_non_ascii_retry_after_is_ignored_and_the_backoff_applies(
    mirror: Mirror, client: RegistryClient, sleeps: list[float]
) -> None:
    mirror.seed("odd", "o")
    mirror.registries.hub.faults[f"/{mirror.image('odd')}/manifests/"] = answer(
        429, {"Retry-After": "\u00b2"}, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}'
    )

    with pytest.raises(RateLimitedError, match="answered HTTP 429") as raised:
        client.manifest_digest(HUB, mirror.image("odd"), "latest")

    assert raised.value.retry_after is None
    assert len(sleeps) == 3  # the exponential backoff, 0.5 s doubling, with jitter
    for slept, base in zip(sleeps, (0.5, 1.0, 2.0), strict=True):
        assert base <= slept <= base * 1.5


def test_a_non_ascii_ratelimit_figure_is_no_figure(mirror: Mirror, client: RegistryClient) -> None:
    digest = "sha256:" + "1" * 64
    headers = {"Docker-Content-Digest": digest, "ratelimit-limit": "100;w=21600", "ratelimit-remaining": "\u00b2;w=1"}
    mirror.registries.hub.faults[f"/{mirror.image('odd')}/manifests/"] = answer(200, headers)

    assert client.manifest_digest(HUB, mirror.image("odd"), "1") == digest
    assert client.rate_limits()[HUB] == RateLimit(100, None)


# -- what is read back from a manifest ------------------------------------------------------------------------------


def test_manifest_count_is_the_index_and_its_manifests(mirror: Mirror, client: RegistryClient) -> None:
    index = mirror.seed("multi", "m", tag="1")
    single = mirror.seed("single", "s", kind="oci-manifest", tag="1")

    assert client.manifest_count(HUB, mirror.image("multi"), index.digest) == 3  # the index, amd64, arm64
    assert client.manifest_count(HUB, mirror.image("single"), single.digest) == 1


@pytest.mark.parametrize(
    "body",
    [b'{"schemaVersion": 2, "manifests": "x"}', b"[1, 2]", b'{"schemaVersion": 2, "manifests": [{}]}', b"x" * 70_000],
    ids=["manifests not a list", "not an object", "not descriptors", "over the body cap"],
)
def test_a_malformed_manifest_is_a_registry_error_never_a_crash(
    mirror: Mirror, client: RegistryClient, body: bytes
) -> None:
    digest = "sha256:" + "2" * 64
    mirror.registries.hub.faults[f"/{mirror.image('bad')}/manifests/"] = answer(200, {}, body)

    with pytest.raises(BadResponseError):
        client.manifest_count(HUB, mirror.image("bad"), digest)


# -- a next page elsewhere is never read ----------------------------------------------------------------------------


@pytest.fixture
def elsewhere(registries: Registries) -> Iterator[HubProxy]:
    """Another server on loopback, where a Link trick would send the next request."""
    proxy = HubProxy(registries.plain)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:{elsewhere}\\@127.0.0.1:{hub}/v2/{repository}/tags/list?n=1&last=a",
        "http://user:pw@localhost:{elsewhere}/v2/{repository}/tags/list?n=1&last=a",
        "http://127.0.0.1:{hub}@localhost:{elsewhere}/v2/{repository}/tags/list?n=1&last=a",
        "//localhost:{elsewhere}/v2/{repository}/tags/list?n=1&last=a",
        "http://127.0.0.1:{elsewhere}/v2/{repository}/tags/list?n=1&last=a",
    ],
    ids=["backslash", "userinfo", "host as userinfo", "scheme-relative", "another port"],
)
def test_a_next_page_link_with_url_tricks_is_refused_and_not_followed(
    mirror: Mirror, client: RegistryClient, elsewhere: HubProxy, target: str
) -> None:
    hub = mirror.registries.hub
    repository = mirror.image("tricky")
    link = target.format(
        elsewhere=elsewhere.location.split(":")[1], hub=hub.location.split(":")[1], repository=repository
    )
    hub.faults[f"/{repository}/tags/list"] = answer(200, {"Link": f'<{link}>; rel="next"'}, b'{"tags": ["a"]}')

    with pytest.raises(BadResponseError, match=r"the next page (is refused|is on another host)"):
        client.list_tags(HUB, repository)

    assert elsewhere.requests == []
    assert len([p for _, p in mirror.hub_requests() if "/tags/list" in p]) == 1


def test_an_injected_session_carries_every_request(registries: Registries, mirror: Mirror) -> None:
    layout = mirror.seed("seam", "s", tag="1")
    session = new_session(4)
    answered: list[tuple[str, int]] = []
    session.hooks["response"].append(lambda r, *args, **kwargs: answered.append((r.request.method, r.status_code)))
    client = RegistryClient(endpoints={HUB: registries.hub.url}, session=session)

    assert client.manifest_digest(HUB, mirror.image("seam"), "1") == layout.digest
    assert answered == [("HEAD", 401), ("GET", 200), ("HEAD", 200)]  # challenge, token, the digest
    assert client.requests_sent == 3
    client.close()


# -- one connection per host, kept ------------------------------------------------------------------------------------


@pytest.fixture
def kept(registries: Registries) -> Iterator[HubProxy]:
    """A Docker Hub front that keeps connections open between requests (HTTP/1.1), as Docker Hub and ECR do."""
    proxy = HubProxy(registries.upstream, keep_alive=True)
    try:
        yield proxy
    finally:
        proxy.close()


def test_one_connection_carries_every_request_to_a_registry(mirror: Mirror, kept: HubProxy) -> None:
    # Each exchange used to close its connection (a response left unread is closed with it): a TCP connection and,
    # against a real registry, a TLS handshake per request. Read to its end, an answer gives its connection back.
    digest = mirror.seed_tags("kept", ["1", "2", "3"])["1"]
    repository = mirror.image("kept")
    client = RegistryClient(endpoints={HUB: kept.url})
    try:
        for _ in range(10):
            assert client.manifest_head(HUB, repository, "1").digest == digest  # HEADs (the first a 401)
            assert client.manifest_count(HUB, repository, digest) == 1  # GETs, their bodies read whole
        assert sorted(client.list_tags(HUB, repository)) == ["1", "2", "3"]
    finally:
        client.close()
    assert len([p for _, p in kept.requests if repository in p]) == 22
    assert kept.connections == 1


def test_a_connection_cut_at_its_deadline_is_not_used_again(mirror: Mirror, kept: HubProxy) -> None:
    digest = mirror.seed_tags("cut", ["1"])["1"]
    repository = mirror.image("cut")
    kept.faults[f"/{repository}/manifests/slow"] = drip(headers_too=True, every=0.5)
    client = RegistryClient(endpoints={HUB: kept.url}, timeout=1, max_attempts=1)
    try:
        assert client.manifest_head(HUB, repository, "1").digest == digest
        with pytest.raises(RegistryTimeoutError, match=r"did not answer in full within 1\.0s"):
            client.manifest_head(HUB, repository, "slow")  # on the kept connection, which the watchdog cuts
        assert client.manifest_head(HUB, repository, "1").digest == digest  # on a new one
    finally:
        client.close()
    assert kept.connections == 2

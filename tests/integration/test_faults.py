"""Faults injected for real, by a proxy in front of the real registry: the affected image fails with a reason a
person understands, the others are unaffected, requests stay bounded and the run ends before the deadline."""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from devtools.localaws import aws_error
from devtools.registries import Fault, answer, cut_off, drip, hang, huge, redirect_loop, reset
from mirror.registry import ManifestHead, RegistryClient
from tests.integration.conftest import Mirror

TOOMANY = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}'
DEADLINE = 40.0  # the Lambda's remaining time given to each run


@dataclass(frozen=True)
class ForMirror:
    """A fault made for the test's own servers (one that names the test's token realm, say)."""

    make: Callable[[Mirror], Fault]


FaultSpec = Fault | ForMirror
FAULTS: dict[str, tuple[FaultSpec | None, str]] = {
    # name: (fault on the victim's manifest requests, the reason the report gives)
    "429 with Retry-After": (answer(429, {"Retry-After": "1"}, TOOMANY), "source rate limited:"),
    "429 without Retry-After": (answer(429, {}, TOOMANY), "source rate limited:"),
    "429 asking to wait an hour": (answer(429, {"Retry-After": "3600"}), "source rate limited:"),
    # isdigit() takes '²', float() does not: a malformed Retry-After is ignored and the backoff applies
    "429 with a non-ASCII Retry-After": (answer(429, {"Retry-After": "\u00b2"}, TOOMANY), "source rate limited:"),
    "429 with an HTTP-date Retry-After in the past": (
        answer(429, {"Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"}, TOOMANY),
        "source rate limited:",
    ),
    "500": (answer(500), "source upstream error:"),
    "502": (answer(502), "source upstream error:"),
    "503": (answer(503), "source upstream error:"),
    "connection reset": (reset(), "source connection error:"),
    "hang": (hang(20), "source timeout:"),
    "malformed digest": (answer(200, {"Docker-Content-Digest": "sha256:not-hex"}), "source bad response:"),
    "missing digest": (answer(200, {}), "source bad response:"),
    "401 with wrong credentials": (answer(401, {"WWW-Authenticate": 'Basic realm="hub"'}), "source auth:"),
    "403": (answer(403), "source auth:"),
    "404 for the tag": (None, "source not found:"),
    # Redirects are followed only by the trust rule (mirror.trust.redirect_target): a scheme other than http(s), plain
    # http to anything but a configured endpoint, a non-public address, a sixth hop: refused, nothing sent there.
    "redirect to ftp://": (
        answer(302, {"Location": "ftp://files.example.net/x"}),
        r"source bad response: .*redirect refused \(HTTP 302\): a redirect to 'ftp://files\.example\.net/x' is not",
    ),
    "redirect to plain http": (
        answer(307, {"Location": "http://registry.example.net/v2/x/manifests/1"}),
        r"source bad response: .*redirect refused \(HTTP 307\): a redirect to plain http \(registry\.example\.net\)",
    ),
    "redirect to the instance metadata service": (
        answer(307, {"Location": "https://169.254.169.254/latest/meta-data/"}),
        r"source bad response: .*redirect refused .*resolves to 169\.254\.169\.254: not a public address",
    ),
    "redirect to the Lambda runtime API": (
        answer(302, {"Location": "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next"}),
        r"source bad response: .*redirect refused .*a redirect to plain http \(127\.0\.0\.1:9001\)",
    ),
    "redirect loop": (
        redirect_loop(),
        r"source bad response: .*more than 5 redirects \(the last to 127\.0\.0\.1:\d+\)",
    ),
    # Docker Hub's answer for a repository that does not exist: not "credentials were rejected"
    "401 with a Bearer challenge even with a fresh token": (
        ForMirror(lambda m: answer(401, {"WWW-Authenticate": f'Bearer realm="{m.registries.tokens.realm}"'})),
        "source not found or access denied: .*even with a fresh token",
    ),
    "headers sent one byte at a time": (drip(headers_too=True, every=0.5), "source timeout:"),
    "more headers than http.client reads": (
        answer(200, {f"X-Filler-{i}": "x" for i in range(150)}),
        "source connection error: .*broke off the answer",
    ),
}
# Faults of the token endpoint, for the victim's scope only: the other Docker Hub image gets its token.
TOKEN_FAULTS: dict[str, tuple[Fault, str]] = {
    "token body cut off mid-way": (cut_off(), "source connection error: token for docker.io .*broke off"),
    "token body sent one byte a second": (drip(every=1.0), "source timeout: token for docker.io .*in full within"),
    "token body of 100 MiB": (huge(), "source bad response: token for docker.io .*a body of 104857600 bytes"),
    "token body of 100 MiB, chunked": (huge(chunked=True), "source bad response: token .*more than 65536 bytes"),
    "token redirect to ftp://": (
        answer(302, {"Location": "ftp://t.example"}),
        "source bad response: token .*redirect refused \\(HTTP 302\\): a redirect to 'ftp://t.example'",
    ),
    # the token endpoint on loopback is no configured endpoint: its plain-http hop to itself is refused at once
    "token redirect loop": (
        redirect_loop(),
        r"source bad response: token .*redirect refused .*a redirect to plain http",
    ),
}


def run_with_fault(
    mirror: Mirror, fault: FaultSpec | None, *, token_fault: Fault | None = None
) -> tuple[dict[str, Any], float, int]:
    if isinstance(fault, ForMirror):
        fault = fault.make(mirror)
    mirror.seed("victim", "v", tag="1")
    mirror.seed("bystander", "b", tag="1")
    mirror.seed_plain("other", "o", tag="1")
    victim_tag = "1" if fault or token_fault else "404"
    if fault:
        mirror.registries.hub.faults[f"/{mirror.image('victim')}/manifests/"] = fault
    if token_fault:
        mirror.registries.tokens.faults[f"repository:{mirror.image('victim')}:"] = token_fault
    mirror.env["REQUEST_TIMEOUT_SECONDS"] = "2"
    started = time.monotonic()
    report = mirror.invoke(
        {
            "images": [
                f"{mirror.image('victim')}:{victim_tag}",
                f"{mirror.image('bystander')}:1",
                f"quay.io/{mirror.image('other')}:1",
            ]
        },
        timeout=DEADLINE,
    )
    victim_requests = sum(1 for _, p in mirror.hub_requests() if f"/{mirror.image('victim')}/manifests/" in p)
    return report, time.monotonic() - started, victim_requests


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_fails_only_the_affected_image_with_a_clear_reason(mirror: Mirror, name: str) -> None:
    fault, reason = FAULTS[name]

    report, elapsed, victim_requests = run_with_fault(mirror, fault)

    victim, bystander, other = report["images"]
    assert victim["status"] == "failed"
    assert re.match(reason, victim["error"]), victim["error"]
    assert victim["build"] is None
    assert bystander["status"] == other["status"] == "missing"
    assert [len(batch) for batch in mirror.mirror_images()] == [2]
    assert victim_requests <= 8  # at most 4 attempts, each at most once re-sent with fresh credentials
    assert elapsed < DEADLINE - 4
    assert report["summary"]["failed"] == 1


@pytest.mark.parametrize("name", list(TOKEN_FAULTS))
def test_token_endpoint_fault_fails_only_that_repository_and_memory_stays_flat(mirror: Mirror, name: str) -> None:
    fault, reason = TOKEN_FAULTS[name]

    tracemalloc.start()
    try:
        report, elapsed, _ = run_with_fault(mirror, None, token_fault=fault)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    victim, bystander, other = report["images"]
    assert victim["status"] == "failed"
    assert re.match(reason, victim["error"]), victim["error"]
    assert bystander["status"] == other["status"] == "missing"
    assert [len(batch) for batch in mirror.mirror_images()] == [2]
    assert report["summary"] == {**report["summary"], "total": 3, "failed": 1, "missing": 2}
    # 4 attempts of at most 2 s each and their backoff, far from the 200 s the drip would take
    assert elapsed < DEADLINE - 4
    assert peak < 32 * 2**20, f"peak Python memory {peak / 2**20:.0f} MiB"


def test_an_unforeseen_error_in_one_check_is_that_images_record(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch, function_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    real = RegistryClient.manifest_head
    victim = mirror.image("victim")

    def buggy(self: RegistryClient, host: str, repository: str, reference: str) -> ManifestHead:
        if repository == victim:
            raise KeyError("a bug nobody foresaw")
        return real(self, host, repository, reference)

    monkeypatch.setattr(RegistryClient, "manifest_head", buggy)

    report, _, _ = run_with_fault(mirror, None, token_fault=answer(200, times=0))

    first, bystander, other = report["images"]
    assert first["status"] == "failed"
    assert first["error"] == "internal error: KeyError"
    assert bystander["status"] == other["status"] == "missing"
    assert report["summary"]["total"] == 3
    (internal,) = [line for line in function_logs() if line.get("message") == "internal error while checking an image"]
    assert internal["level"] == "ERROR"
    assert internal["entry"] == 1
    assert "Traceback" in internal["exception"]
    assert "a bug nobody foresaw" in internal["exception"]


@pytest.mark.parametrize(
    "fault", [answer(503, times=2), answer(429, {"Retry-After": "1"}, TOOMANY, times=1), reset(times=2)]
)
def test_transient_fault_within_the_retry_budget_ends_as_success(mirror: Mirror, fault: Fault) -> None:
    report, _, victim_requests = run_with_fault(mirror, fault)

    assert [i["status"] for i in report["images"]] == ["missing", "missing", "missing"]
    assert victim_requests >= 2


def test_failing_token_endpoint_fails_docker_hub_images_only(mirror: Mirror) -> None:
    mirror.seed("a", "a")
    mirror.seed_plain("other", "o", tag="1")
    mirror.seed_ecr(f"mirror/quay.io/{mirror.image('other')}", "o", tag="1")
    mirror.registries.tokens.fail_with = 500
    mirror.env["REQUEST_TIMEOUT_SECONDS"] = "2"

    report = mirror.invoke({"images": [mirror.image("a"), f"quay.io/{mirror.image('other')}:1"]}, timeout=DEADLINE)

    hub_image, other = report["images"]
    assert hub_image["status"] == "failed"
    assert hub_image["error"].startswith("source upstream error: token for docker.io")
    assert other["status"] == "unchanged"


def test_token_endpoint_refusing_credentials_is_an_auth_failure(mirror: Mirror) -> None:
    mirror.seed("a", "a")
    mirror.dockerhub_secret(json.dumps({"username": "someone", "password": "wrong-token"}))

    report = mirror.invoke({"images": [mirror.image("a")]})

    (image,) = report["images"]
    assert image["error"].startswith("source auth:")
    assert "refused the credentials" in image["error"]
    assert "wrong-token" not in json.dumps(report)


def test_images_not_checked_before_the_deadline_are_reported_as_deadline(mirror: Mirror) -> None:
    for name in ("slow", "b", "c"):
        mirror.seed(name, name)
    mirror.registries.hub.faults[f"/{mirror.image('slow')}/manifests/"] = hang(20)
    mirror.env["MAX_CONCURRENCY"] = "1"
    timeout = 9.0
    started = time.monotonic()

    report = mirror.invoke({"images": [mirror.image(n) for n in ("slow", "b", "c")]}, timeout=timeout)

    assert time.monotonic() - started < timeout
    slow, b, c = report["images"]
    assert slow["status"] == "failed"
    assert slow["error"].startswith("source timeout:")
    assert [b["status"], c["status"]] == ["failed", "failed"]
    assert b["error"] == c["error"] == "deadline: not checked before the function's deadline"
    assert report["summary"]["total"] == 3


# -- the AWS side ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("AccessDeniedException", "not authorized to perform: ecr:GetAuthorizationToken"),
        ("ThrottlingException", "Rate exceeded"),
    ],
)
def test_ecr_token_refused_fails_fast_with_a_clear_error(mirror: Mirror, code: str, message: str) -> None:
    mirror.seed("a", "a")
    mirror.session.events.register("before-call.ecr.GetAuthorizationToken", aws_error(code, message))

    with pytest.raises(Exception, match=f"cannot get an ECR authorization token: {code}"):
        mirror.invoke({"images": [mirror.image("a")]})
    assert mirror.builds == []
    assert mirror.hub_requests() == []


def test_repository_creation_denied_fails_those_images_and_builds_the_rest(mirror: Mirror) -> None:
    mirror.seed("new", "n")
    mirror.seed("changed", "c2")
    repository = f"mirror/{mirror.image('changed')}"
    mirror.session.client("ecr").create_repository(repositoryName=repository)
    mirror.seed_ecr(repository, "c1")
    mirror.session.events.register(
        "before-call.ecr.CreateRepository", aws_error("AccessDeniedException", "not authorized: ecr:CreateRepository")
    )

    report = mirror.invoke({"images": [mirror.image("new"), mirror.image("changed")]})

    new, changed = report["images"]
    assert new["status"] == "failed"
    assert new["error"].startswith(f"cannot create repository mirror/{mirror.image('new')}: AccessDeniedException")
    assert changed["status"] == "changed"
    assert [e["target"].rsplit("/", 1)[1] for e in mirror.mirror_images()[0]] == ["changed:latest"]


def test_start_build_throttled_once_then_started(mirror: Mirror) -> None:
    mirror.seed("a", "a")
    throttled = aws_error("ThrottlingException", "Rate exceeded")

    def once(**kwargs: Any) -> Any:
        return throttled(**kwargs) if not throttled.calls else None

    mirror.session.events.register("before-call.codebuild.StartBuild", once)

    report = mirror.invoke({"images": [mirror.image("a")]})

    assert report["images"][0]["status"] == "missing"
    assert report["images"][0]["build"]
    assert throttled.calls == ["ThrottlingException"]


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (None, "cannot read the Docker Hub secret: ResourceNotFoundException"),
        ("not json s3cr3t-value", "must be JSON"),
        (json.dumps({"username": "me", "token": "s3cr3t-value"}), "must be JSON"),
        (json.dumps({"username": "me", "password": ""}), "non-empty strings"),
    ],
)
def test_broken_dockerhub_secret_fails_fast(mirror: Mirror, secret: str | None, reason: str) -> None:
    mirror.seed("a", "a")
    if secret is None:
        mirror.env["DOCKERHUB_SECRET_ARN"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf"
    else:
        mirror.dockerhub_secret(secret)

    with pytest.raises(Exception, match=reason) as raised:
        mirror.invoke({"images": [mirror.image("a")]})
    assert "s3cr3t-value" not in str(raised.value)
    assert mirror.builds == []

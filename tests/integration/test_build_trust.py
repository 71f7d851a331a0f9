"""The build trusts only what it derives, through the real build phase of template.yaml against real registries: an
entry's registry comes from its source host (so Docker Hub's credential, quota check and pull count follow the
source, not the entry's word), and this account's registry from CODEBUILD_BUILD_ARN (so where the build writes, and
where its ECR token goes, is not a StartBuild caller's to choose)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.buildspec import run_build_phase
from devtools.images import push, write_image
from devtools.registries import ECR_PASSWORD, ECR_USER, Registry, TokenServer, auth_file
from tests.integration.conftest import Mirror, ecr_digest
from tests.integration.test_buildspec import endpoints, entry

ARN = "arn:aws:codebuild:eu-west-1:123456789012:build/ecr-mirror-copy:0a1b2c3d-4e5f-6789-abcd-ef0123456789"
ACCOUNT = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.fixture
def auth(mirror: Mirror, tmp_path: Path) -> Path:
    return auth_file(tmp_path / "auth.json", {mirror.registries.ecr.location: (ECR_USER, ECR_PASSWORD)})


@pytest.fixture
def other(tmp_path: Path) -> Iterator[tuple[Registry, TokenServer]]:
    """Another registry on loopback, with a token service of its own (as Docker Hub's stand-in has): the host the
    issue's attack names."""
    tokens = TokenServer(tmp_path / "other-tokens")
    registry = Registry(tmp_path / "other", token=tokens)
    try:
        yield registry, tokens
    finally:
        registry.close()
        tokens.close()


def stand_ins(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """`aws` and `skopeo` stand-ins on PATH that log each call and what came on stdin (an ECR host cannot be
    redirected to a local registry: FACTS.md): `aws ecr get-login-password` prints a token, `skopeo login`
    succeeds, `skopeo copy` fails."""
    shim, log = tmp_path / "bin", tmp_path / "calls.log"
    shim.mkdir()
    (shim / "aws").write_text(f'#!/bin/bash\necho "aws $*" >> {log}\necho ecr-token-for-the-account\n')
    (shim / "skopeo").write_text(
        "#!/bin/bash\n"
        f'echo "skopeo $*" >> {log}\n'
        f'if [ "$1" = login ]; then echo "stdin $(cat)" >> {log}; exit 0; fi\n'
        'echo "stand-in: no copy" >&2; exit 1\n'
    )
    for tool in ("aws", "skopeo"):
        (shim / tool).chmod(0o755)
    # python3 itself, not a version manager's shim (which would put its own directory, and its aws, first on PATH)
    (shim / "python3").symlink_to(os.path.realpath(sys.executable))
    return {"PATH": f"{shim}:{os.environ['PATH']}"}, log


def test_an_entry_naming_docker_hub_for_another_host_is_refused_and_that_host_never_gets_the_hub_credential(
    mirror: Mirror, auth: Path, tmp_path: Path, other: tuple[Registry, TokenServer]
) -> None:
    """Issue 15's attack: `{"source": "<any host>/x/y@sha256:…", "registry": "docker.io"}` made the quota check send
    `Basic <hub user>:<token>` to that host's token realm."""
    registry, their_tokens = other
    layout = write_image(tmp_path / f"img-{uuid.uuid4().hex[:8]}", "theirs", tag="1")
    push(layout, f"{registry.location}/x/y:1", creds=f"{their_tokens.username}:{their_tokens.password}")
    seen_before = len(their_tokens.requests)
    hub = mirror.seed("genuine", "g", tag="1")
    hub_tokens = mirror.registries.tokens
    hub_before = len(hub_tokens.requests)
    forged = dict(
        entry(mirror, "genuine", layout.digest, "1", prefix="mirror"),
        source=f"{registry.location}/x/y@{layout.digest}",
        target=f"{mirror.registries.ecr.location}/mirror/{mirror.image('forged')}:1",
    )

    run = run_build_phase(
        [forged, entry(mirror, "genuine", hub.digest, "1")],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
        extra_env={"DOCKERHUB_USERNAME": hub_tokens.username, "DOCKERHUB_PASSWORD": hub_tokens.password},
    )

    assert run.lines(
        f"REFUSED entry 1: registry docker.io is not the registry of the source's host {registry.location} "
        f"({registry.location})"
    ), run.output
    assert their_tokens.requests[seen_before:] == []  # not asked at all, let alone with the Docker Hub credential
    assert ecr_digest(mirror, f"mirror/{mirror.image('forged')}", "1") is None
    # the genuine Docker Hub entry: its quota check went to Docker Hub's endpoint, as the account
    assert len(run.lines("COPIED")) == 1
    assert hub_tokens.username in {r.username for r in hub_tokens.requests[hub_before:]}
    assert hub_tokens.password not in run.output


def test_a_docker_hub_source_named_another_registry_no_longer_skips_the_quota_check_or_the_pull_count(
    mirror: Mirror, auth: Path, tmp_path: Path
) -> None:
    """The same forged `registry` skipped the build's quota check and its pull count (`0 Docker Hub pulls spent`
    while Docker Hub served a manifest): now it is refused, and Docker Hub serves nothing for it."""
    layout = mirror.seed("counted", "c", tag="1")
    mirror.registries.hub.remaining = 11  # one pull above the reserve of 10: not enough for this copy

    run = run_build_phase(
        [entry(mirror, "counted", layout.digest, "1", registry="quay.io", pulls=3)],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
        extra_env={"DOCKERHUB_PULL_RESERVE": "10", "MIRROR_PULLS_FILE": str(tmp_path / "pulls")},
    )

    hub = mirror.registries.hub.location
    assert run.lines(f"REFUSED entry 1: registry quay.io is not the registry of the source's host {hub} (docker.io)")
    assert not [p for m, p in mirror.hub_requests() if m == "GET" and "/manifests/" in p]  # no pull spent unseen
    assert mirror.registries.hub.remaining == 11
    assert ecr_digest(mirror, f"mirror/{mirror.image('counted')}", "1") is None
    assert (tmp_path / "pulls").read_text() == "0"


@pytest.mark.parametrize(
    "endpoints_value",
    ["not json", '{"docker.io": "http://mirror.example"}', '{"docker.io": "https://user:pw@mirror.example"}'],
)
def test_a_malformed_registry_endpoints_fails_the_build_before_any_copy(
    mirror: Mirror, auth: Path, tmp_path: Path, endpoints_value: str
) -> None:
    layout = mirror.seed("early", "e", tag="1")

    run = run_build_phase(
        [entry(mirror, "early", layout.digest, "1")],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints_value,
    )

    assert run.returncode != 0
    (line,) = run.output.splitlines()
    assert line.startswith("FAILED: REGISTRY_ENDPOINTS")
    assert not mirror.hub_requests()


@pytest.mark.parametrize("override", ["{ecr}", "docker.io", "210987654321.dkr.ecr.eu-west-1.amazonaws.com"])
def test_in_codebuild_an_ecr_registry_override_fails_the_build_and_nothing_is_written(
    mirror: Mirror, auth: Path, tmp_path: Path, override: str
) -> None:
    """A StartBuild caller may override ECR_REGISTRY, not CODEBUILD_BUILD_ARN: the build writes to the account and
    region of its ARN or nowhere, and logs in nowhere before it knows."""
    layout = mirror.seed("elsewhere", "x", tag="1")
    ecr = mirror.registries.ecr.location
    path, log = stand_ins(tmp_path)

    run = run_build_phase(
        [entry(mirror, "elsewhere", layout.digest, "1")],
        auth,
        cwd=tmp_path,
        ecr_registry=override.format(ecr=ecr),
        registry_endpoints=endpoints(mirror),
        extra_env={**path, "CODEBUILD_BUILD_ARN": ARN},
    )

    assert run.returncode != 0
    (line,) = run.output.splitlines()
    assert line.startswith(f"FAILED: ECR_REGISTRY '{override.format(ecr=ecr)}' is not this build's registry {ACCOUNT}")
    assert not log.exists()  # no ECR token asked for, no login, no copy
    assert ecr_digest(mirror, f"mirror/{mirror.image('elsewhere')}", "1") is None


def test_in_codebuild_the_ecr_token_goes_only_to_the_derived_registry_and_other_targets_are_refused(
    mirror: Mirror, auth: Path, tmp_path: Path
) -> None:
    layout = mirror.seed("derived", "d", tag="1")
    ecr = mirror.registries.ecr.location
    path, log = stand_ins(tmp_path)
    local = entry(mirror, "derived", layout.digest, "1")  # targets the loopback registry
    ours = dict(local, target=f"{ACCOUNT}/mirror/{mirror.image('derived')}:1")

    run = run_build_phase(
        [local, ours],
        auth,
        cwd=tmp_path,
        ecr_registry="",
        registry_endpoints=endpoints(mirror),
        extra_env={**path, "CODEBUILD_BUILD_ARN": ARN},
    )

    assert run.lines("REFUSED entry 1: target is not <this account's registry>/<the mirror's prefix>/")
    calls = log.read_text().splitlines()
    assert calls[:3] == [
        "aws ecr get-login-password --region eu-west-1",
        f"skopeo login --tls-verify=true --username AWS --password-stdin {ACCOUNT}",
        "stdin ecr-token-for-the-account",  # on stdin, never on a command line
    ]
    copies = [c.split() for c in calls if c.startswith("skopeo copy")]
    assert [c[-1] for c in copies] == [f"docker://{ACCOUNT}/mirror/{mirror.image('derived')}@{layout.digest}"]
    assert not [c for c in calls if ecr in c]  # the loopback registry got nothing, the token least of all
    (failed,) = run.lines("FAILED")
    assert failed.endswith("copy failed: stand-in: no copy")
    assert ecr_digest(mirror, f"mirror/{mirror.image('derived')}", "1") is None
    assert json.loads(auth.read_text())["auths"].keys() == {ecr}  # the stand-in skopeo stored no login

"""Trust boundaries against real registries: a credential goes only where it belongs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devtools.buildspec import run_build_phase
from devtools.images import push, write_image
from devtools.localaws import build_environment
from devtools.registries import ECR_PASSWORD, ECR_USER, Fault, HubProxy, Registry, TokenServer, answer, auth_file
from mirror.registry import AuthError, Credential, RegistryClient
from mirror.registry.auth import basic_auth
from tests.integration.conftest import Mirror


@pytest.fixture(params=[True, False], ids=["anonymous pull allowed", "anonymous pull refused"])
def foreign_realm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TokenServer, Registry]]:
    """A registry on 127.0.0.1 whose challenge names a token realm on `localhost`: another host name."""
    tokens = TokenServer(tmp_path / "tokens", realm_host="localhost", anonymous_pull=request.param)
    registry = Registry(tmp_path / "registry", token=tokens)
    try:
        yield tokens, registry
    finally:
        registry.close()
        tokens.close()


def test_a_token_realm_on_another_host_never_receives_the_credential(
    mirror: Mirror, foreign_realm: tuple[TokenServer, Registry]
) -> None:
    tokens, registry = foreign_realm
    layout = write_image(mirror.workdir / "img", "content")
    push(layout, f"{registry.location}/{mirror.image('app')}:1", creds=f"{tokens.username}:{tokens.password}")
    pushes = len(tokens.requests)
    endpoints = json.loads(mirror.env["REGISTRY_ENDPOINTS"]) | {"docker.io": registry.url}
    mirror.env["REGISTRY_ENDPOINTS"] = json.dumps(endpoints)
    # The Docker Hub credential is the token server's own: sent there, it would be accepted.
    mirror.dockerhub_secret(json.dumps({"username": tokens.username, "password": tokens.password}))

    report = mirror.invoke({"images": [f"{mirror.image('app')}:1"]})

    asked = tokens.requests[pushes:]
    assert asked  # the realm was asked...
    assert all(r.username is None for r in asked)  # ...but never with the credential
    (image,) = report["images"]
    if tokens.anonymous_pull:
        assert image["status"] == "missing"
        assert image["sourceDigest"] == layout.digest
    else:
        assert image["status"] == "failed"
        assert "asked without the credentials configured for docker.io" in image["error"]
        assert "the token realm is on localhost" in image["error"]
    assert tokens.password not in json.dumps(report)


def source_tag(mirror: Mirror, repository: str) -> str | None:
    ecr = mirror.session.client("ecr")
    arn = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryArn"]
    tags = ecr.list_tags_for_resource(resourceArn=arn)["tags"]
    return next((t["Value"] for t in tags if t["Key"] == "mirror-source"), None)


def test_an_invoker_cannot_point_a_mirrored_tag_at_another_upstream(mirror: Mirror) -> None:
    nginx = mirror.seed("nginx", "the real one", tag="1.27")
    payload = mirror.seed("payload", "the attacker's", tag="1")
    mirror.invoke({"images": [f"{mirror.image('nginx')}:1.27"]})
    repository = f"mirror/{mirror.image('nginx')}"
    assert source_tag(mirror, repository) == f"docker.io/{mirror.image('nginx')}"
    builds_before = len(mirror.builds)

    report = mirror.invoke(
        {
            "images": [
                {"source": f"{mirror.image('payload')}:1@{payload.digest}", "target": f"{repository}:1.27"},
                {"source": f"{mirror.image('payload')}:1", "target": f"{repository}:latest"},
            ]
        }
    )

    for image in report["images"]:
        assert image["status"] == "invalid"
        assert image["build"] is None
        assert f"target repository {repository} mirrors docker.io/{mirror.image('nginx')}" in image["error"]
        assert "never copied" in image["error"]
    assert len(mirror.builds) == builds_before  # checked before any build
    assert nginx.digest != payload.digest


@pytest.mark.parametrize(
    "source",
    [
        "attacker.example.net/payload:1@sha256:" + "a" * 64,
        "evil.example.net:5000/x/y:1",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/x:1",
    ],
    ids=["another registry, pinned", "another registry with a port", "this account's ECR"],
)
def test_sources_outside_the_allowed_registries_are_invalid_and_never_asked(mirror: Mirror, source: str) -> None:
    mirror.seed("ok", "ok")

    report = mirror.invoke({"images": [{"source": source, "target": "mirror/library/nginx:1.27"}, mirror.image("ok")]})

    refused, ok = report["images"]
    assert refused["status"] == "invalid"
    assert "is not an allowed source (SOURCE_REGISTRIES" in refused["error"]
    assert ok["status"] == "missing"
    (batch,) = mirror.mirror_images()
    assert [e["target"].split("/", 1)[1] for e in batch] == [f"mirror/{mirror.image('ok')}:latest"]


def test_a_repository_without_a_recorded_source_is_adopted_by_the_first_copy(mirror: Mirror) -> None:
    mirror.seed("legacy", "l", tag="2")
    repository = f"mirror/{mirror.image('legacy')}"
    mirror.session.client("ecr").create_repository(repositoryName=repository)  # by hand, or an older version
    assert source_tag(mirror, repository) is None

    report = mirror.invoke({"images": [f"{mirror.image('legacy')}:2"]})

    assert report["images"][0]["status"] == "missing"
    assert report["images"][0]["build"]
    assert source_tag(mirror, repository) == f"docker.io/{mirror.image('legacy')}"


def test_a_dry_run_reports_the_same_refusal_and_writes_nothing(mirror: Mirror) -> None:
    mirror.seed("nginx", "real", tag="1.27")
    payload = mirror.seed("payload", "bad", tag="1")
    mirror.invoke({"images": [f"{mirror.image('nginx')}:1.27"]})
    repository = f"mirror/{mirror.image('nginx')}"
    mirror.session.client("ecr").create_repository(repositoryName=f"mirror/{mirror.image('legacy')}")
    mirror.seed("legacy", "l")
    builds_before = len(mirror.builds)

    report = mirror.invoke(
        {
            "images": [
                {"source": f"{mirror.image('payload')}:1@{payload.digest}", "target": f"{repository}:1.27"},
                mirror.image("legacy"),
            ],
            "dryRun": True,
        }
    )

    refused, legacy = report["images"]
    assert refused["status"] == "invalid"
    assert f"mirrors docker.io/{mirror.image('nginx')}" in refused["error"]
    assert legacy["status"] == "missing"
    assert source_tag(mirror, f"mirror/{mirror.image('legacy')}") is None  # a dry run adopts nothing
    assert len(mirror.builds) == builds_before


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Registry]:
    """A company registry with Basic auth (its own user), reached as registry.corp.example."""
    registry = Registry(tmp_path / "private", basic=("corp-user", "corp-s3cret-password"))
    try:
        yield registry
    finally:
        registry.close()


def test_a_private_source_with_its_own_secret_is_checked_and_copied(
    mirror: Mirror, private: Registry, tmp_path: Path
) -> None:
    layout = write_image(mirror.workdir / "corp", "corp app")
    push(layout, f"{private.location}/team/app:1", creds="corp-user:corp-s3cret-password")
    mirror.seed("public", "p", tag="1")
    secrets = mirror.session.client("secretsmanager")
    arn = secrets.create_secret(
        Name="ecr-mirror/corp", SecretString=json.dumps({"username": "corp-user", "password": "corp-s3cret-password"})
    )["ARN"]
    endpoints = json.loads(mirror.env["REGISTRY_ENDPOINTS"]) | {"registry.corp.example": private.url}
    mirror.env["REGISTRY_ENDPOINTS"] = json.dumps(endpoints)
    images = ["registry.corp.example/team/app:1", f"{mirror.image('public')}:1"]
    tokens_before = len(mirror.registries.tokens.requests)

    without = mirror.invoke({"images": images, "dryRun": True})
    assert without["images"][0]["status"] == "failed"
    assert "requires credentials and none are configured for registry.corp.example" in without["images"][0]["error"]

    mirror.env["REGISTRY_CREDENTIALS"] = json.dumps({"registry.corp.example": arn})
    report = mirror.invoke({"images": images})

    corp, public = report["images"]
    assert corp["status"] == "missing"
    assert corp["sourceDigest"] == layout.digest
    assert public["status"] == "missing"
    # the corp credential went to the corp registry only: Docker Hub's token service saw no user
    assert all(r.username is None for r in mirror.registries.tokens.requests[tokens_before:])
    (build,) = mirror.builds
    logins = {v["name"]: v for v in build["environmentVariablesOverride"] if v["name"].startswith("REGISTRY_LOGIN")}
    assert logins == {
        "REGISTRY_LOGIN_1_HOST": {"name": "REGISTRY_LOGIN_1_HOST", "value": private.location, "type": "PLAINTEXT"},
        "REGISTRY_LOGIN_1_USERNAME": {
            "name": "REGISTRY_LOGIN_1_USERNAME",
            "value": f"{arn}:username",
            "type": "SECRETS_MANAGER",
        },
        "REGISTRY_LOGIN_1_PASSWORD": {
            "name": "REGISTRY_LOGIN_1_PASSWORD",
            "value": f"{arn}:password",
            "type": "SECRETS_MANAGER",
        },
    }
    assert "corp-s3cret-password" not in json.dumps(report) + json.dumps(mirror.builds)

    # The build, as CodeBuild runs it: the secret resolved into its variables, the copy logged in with them.
    env = build_environment(build, mirror.session)
    auth = auth_file(tmp_path / "auth.json", {mirror.registries.ecr.location: (ECR_USER, ECR_PASSWORD)})
    run = run_build_phase(
        env.pop("MIRROR_IMAGES"),
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=mirror.env["REGISTRY_ENDPOINTS"],
        extra_env=env,
    )
    assert run.returncode == 0, run.output
    assert len(run.lines("COPIED")) == 2
    assert "corp-s3cret-password" not in run.output


def test_upstream_prefixes_name_the_repository_and_record_its_source(mirror: Mirror) -> None:
    mirror.seed_plain("other", "o", tag="1")
    mirror.env["UPSTREAM_PREFIXES"] = json.dumps({"quay.io": "quay"})

    report = mirror.invoke({"images": [f"quay.io/{mirror.image('other')}:1"]})

    (image,) = report["images"]
    assert image["status"] == "missing"
    assert image["target"].endswith(f"/quay/{mirror.image('other')}:1")
    assert source_tag(mirror, f"quay/{mirror.image('other')}") == f"quay.io/{mirror.image('other')}"
    ecr = mirror.session.client("ecr")
    arn = ecr.describe_repositories(repositoryNames=[f"quay/{mirror.image('other')}"])["repositories"][0][
        "repositoryArn"
    ]
    assert {"Key": "managed-by", "Value": "ecr-mirror"} in ecr.list_tags_for_resource(resourceArn=arn)["tags"]
    (batch,) = mirror.mirror_images()
    assert batch[0]["target"].split("/", 1)[1] == f"quay/{mirror.image('other')}:1"


# -- one parser decides where a request goes ------------------------------------------------------------------------


def recording(seen: list[str]) -> Fault:
    """A fault that answers nothing: it records each request's Authorization header and lets it through."""

    def fault(h: BaseHTTPRequestHandler) -> bool:
        seen.append(h.headers.get("Authorization", ""))
        return False

    return fault


@dataclass
class Watched:
    """The client, with the Docker Hub side's credential configured, and every header any server received."""

    client: RegistryClient
    credential: str  # the Basic value of that credential
    hub: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def everything(self) -> list[str]:
        return self.hub + self.tokens + self.elsewhere


@pytest.fixture
def watched(mirror: Mirror) -> Iterator[tuple[Watched, HubProxy]]:
    registries = mirror.registries
    tokens = registries.tokens
    credential = Credential(tokens.username, tokens.password)  # the token server would accept it
    client = RegistryClient(endpoints={"docker.io": registries.hub.url}, credentials={"docker.io": credential})
    elsewhere = HubProxy(registries.plain)  # where a misread realm would send the credential
    seen = Watched(client, basic_auth(credential))
    registries.hub.faults["/v2/"] = recording(seen.hub)
    tokens.faults[""] = recording(seen.tokens)
    elsewhere.faults["/"] = recording(seen.elsewhere)
    try:
        yield seen, elsewhere
    finally:
        client.close()
        elsewhere.close()


@pytest.mark.parametrize(
    "challenge",
    [
        # urlsplit reads host 127.0.0.1 (the endpoint's), urllib3, which connects, reads localhost
        'Bearer realm="http://localhost:{elsewhere}\\\\@127.0.0.1:{tokens}/token",service="x"',
        "Bearer realm=http://localhost:{elsewhere}\\@127.0.0.1:{tokens}/token,service=x",
        # urlsplit reads ghcr.io, urllib3 evil.example
        'Bearer realm="https://evil.example\\\\@ghcr.io/token",service="x"',
        # the quoted-string escape leaves plain userinfo: host 127.0.0.1 to everyone, and refused all the same
        'Bearer realm="http://localhost:{elsewhere}\\@127.0.0.1:{tokens}/token",service="x"',
        'Bearer realm="http://user:pw@127.0.0.1:{tokens}/token",service="x"',
        'Bearer realm="http://127.0.0.1:{tokens}/token#frag",service="x"',
    ],
    ids=["backslash", "backslash, bare", "backslash to evil.example", "userinfo via escape", "userinfo", "fragment"],
)
def test_an_ambiguous_token_realm_is_refused_and_no_credential_leaves(
    mirror: Mirror, watched: tuple[Watched, HubProxy], challenge: str
) -> None:
    seen, elsewhere = watched
    ports = {"elsewhere": elsewhere.location.split(":")[1], "tokens": urlsplit(mirror.registries.tokens.realm).port}
    header = challenge.format(**ports)
    mirror.registries.hub.faults[f"/{mirror.image('app')}/manifests/"] = answer(401, {"WWW-Authenticate": header})

    with pytest.raises(AuthError, match=r"docker\.io: the token realm .*; refused"):
        seen.client.manifest_digest("docker.io", mirror.image("app"), "1")

    assert seen.hub  # the registry was asked, without credentials
    assert seen.tokens == seen.elsewhere == []  # no realm was asked at all
    assert all(seen.credential not in h and mirror.registries.tokens.password not in h for h in seen.everything())


def test_the_plain_token_realm_still_receives_the_credential(mirror: Mirror, watched: tuple[Watched, HubProxy]) -> None:
    seen, _ = watched
    layout = mirror.seed("app", "a", tag="1")
    before = len(mirror.registries.tokens.requests)

    assert seen.client.manifest_digest("docker.io", mirror.image("app"), "1") == layout.digest

    assert seen.credential in seen.tokens  # the realm on the endpoint's host got the credential...
    assert [r.username for r in mirror.registries.tokens.requests[before:]] == [mirror.registries.tokens.username]
    assert seen.credential not in seen.hub + seen.elsewhere  # ...and nothing else did

"""Real registries on loopback (Bearer tokens for the Docker Hub side, Basic for the ECR side), moto for AWS."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from devtools.buildspec import BuildRun, run_build_phase
from devtools.context import FakeLambdaContext
from devtools.images import Layout, push, write_image
from devtools.localaws import PROJECT, create_copy_project, record_builds
from devtools.registries import (
    ECR_ACCOUNT_HOST,
    ECR_PASSWORD,
    ECR_USER,
    HubProxy,
    Registry,
    TokenServer,
    auth_file,
    push_token,
    put_tags,
)
from mirror.registry import MANIFEST_ACCEPT

if not (shutil.which("docker-registry") and shutil.which("skopeo") and shutil.which("htpasswd")):
    raise RuntimeError("integration tests need docker-registry, skopeo and htpasswd (apt, see .ci/run)")


@dataclass
class Registries:
    tokens: TokenServer
    upstream: Registry
    hub: HubProxy
    ecr: Registry
    plain: Registry  # another OCI registry without auth, standing in for quay.io and friends
    workdir: Path


@pytest.fixture(scope="session")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    root = tmp_path_factory.mktemp("registries")
    tokens = TokenServer(root / "tokens")
    upstream = Registry(root / "upstream", token=tokens)
    hub = HubProxy(upstream)
    ecr = Registry(root / "ecr", basic=(ECR_USER, ECR_PASSWORD))
    plain = Registry(root / "plain")
    try:
        yield Registries(tokens, upstream, hub, ecr, plain, root)
    finally:
        hub.close()
        for registry in (upstream, ecr, plain):
            registry.close()
        tokens.close()


def ecr_digest(mirror: Mirror, repository: str, reference: str) -> str | None:
    """The digest `repository:reference` has in the ECR-side registry (HEAD), or None where it is absent."""
    response = requests.head(
        f"{mirror.registries.ecr.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": MANIFEST_ACCEPT},
        auth=(ECR_USER, ECR_PASSWORD),
        timeout=5,
    )
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


def annotated(manifest: bytes, release: str) -> bytes:
    """An image manifest with one more annotation: the same image's layers under a digest of its own."""
    document = json.loads(manifest)
    document.setdefault("annotations", {})["org.example.release"] = release
    return json.dumps(document, separators=(",", ":")).encode()


def copy_entries(mirror: Mirror, entries: list[dict[str, Any]], workdir: Path) -> BuildRun:
    """The real build's copy of MIRROR_IMAGES `entries` into the ECR-side registry, with the deployment's
    endpoints; asserts it succeeded and copied each entry."""
    auth = auth_file(workdir / "auth.json", {mirror.registries.ecr.location: (ECR_USER, ECR_PASSWORD)})
    run = run_build_phase(
        entries,
        auth,
        cwd=workdir,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=mirror.env["REGISTRY_ENDPOINTS"],
    )
    assert run.returncode == 0, run.output
    assert len(run.lines("COPIED")) == len(entries), run.output
    return run


@dataclass
class Mirror:
    """One deployment of the mirror against the local registries: settings, moto, and the captured builds."""

    registries: Registries
    workdir: Path
    namespace: str
    env: dict[str, str]
    builds: list[dict[str, Any]] = field(default_factory=list)
    session: Any = None

    def image(self, name: str) -> str:
        """A Docker Hub-style repository path unique to this test."""
        return f"{self.namespace}/{name}"

    def seed(self, name: str, content: str, *, kind: str = "oci-index", tag: str = "latest", **image: Any) -> Layout:
        """Push an image to the upstream ("Docker Hub") registry as its one authorised user (`image`: write_image's
        arches, attestations)."""
        layout = write_image(self.workdir / f"img-{uuid.uuid4().hex[:8]}", content, kind=kind, tag=tag, **image)
        t = self.registries.tokens
        push(
            layout, f"{self.registries.upstream.location}/{self.image(name)}:{tag}", creds=f"{t.username}:{t.password}"
        )
        return layout

    def seed_tags(
        self, name: str, tags: list[str], content: str = "tagged", *, release: Callable[[str], str] | None = None
    ) -> dict[str, str]:
        """Tags upstream, as one image (the first pushed with skopeo, the rest by the registry API) or, with
        `release` (tag -> its release), one image per release: the same layers, the manifest annotated with the
        release, so each has a digest of its own. Returns each tag's digest."""
        layout = self.seed(name, content, kind="oci-manifest", tag=tags[0])
        manifest = (layout.path / "blobs" / "sha256" / layout.digest.split(":", 1)[1]).read_bytes()
        token = push_token(self.registries.tokens, self.image(name))
        by_release: dict[str, list[str]] = {}
        for tag in tags[1:] if release is None else tags:
            by_release.setdefault(release(tag) if release is not None else "", []).append(tag)
        digests = {tags[0]: layout.digest}
        for key, named in by_release.items():
            body = manifest if release is None else annotated(manifest, key)
            put_tags(
                self.registries.upstream.url,
                self.image(name),
                body,
                layout.media_type,
                named,
                headers={"Authorization": f"Bearer {token}"},
            )
            digests.update(dict.fromkeys(named, "sha256:" + hashlib.sha256(body).hexdigest()))
        return digests

    def seed_ecr(self, repository: str, content: str, *, kind: str = "oci-index", tag: str = "latest") -> Layout:
        """Push an image straight to the "ECR" registry, as an earlier copy would have."""
        layout = write_image(self.workdir / f"img-{uuid.uuid4().hex[:8]}", content, kind=kind, tag=tag)
        push(layout, f"{self.registries.ecr.location}/{repository}:{tag}", creds=f"{ECR_USER}:{ECR_PASSWORD}")
        return layout

    def seed_plain(self, name: str, content: str, *, tag: str = "latest", **image: Any) -> Layout:
        layout = write_image(self.workdir / f"img-{uuid.uuid4().hex[:8]}", content, tag=tag, **image)
        push(layout, f"{self.registries.plain.location}/{self.image(name)}:{tag}")
        return layout

    def hub_requests(self) -> list[tuple[str, str]]:
        """Requests this test's namespace sent to the Docker Hub side."""
        return [(m, p) for m, p in self.registries.hub.requests if f"/{self.namespace}/" in p]

    def report_bucket(self, bucket: str = "mirror-reports") -> Any:
        """A bucket for the reports and the run state, as the stack has; returns its S3 client."""
        s3 = self.session.client("s3")
        s3.create_bucket(Bucket=bucket)
        self.env["REPORT_LOCATION"] = f"s3://{bucket}/reports"
        return s3

    def dockerhub_secret(self, secret_string: str) -> str:
        """Store Docker Hub credentials in (moto's) Secrets Manager and configure the function to use them."""
        arn: str = self.session.client("secretsmanager").create_secret(Name="hub", SecretString=secret_string)["ARN"]
        self.env["DOCKERHUB_SECRET_ARN"] = arn
        return arn

    def mirror_images(self) -> list[list[dict[str, Any]]]:
        """The MIRROR_IMAGES of each captured StartBuild call."""
        out = []
        for build in self.builds:
            (variable,) = [v for v in build["environmentVariablesOverride"] if v["name"] == "MIRROR_IMAGES"]
            assert variable["type"] == "PLAINTEXT"
            out.append(json.loads(variable["value"]))
        return out

    def invoke(
        self, event: dict[str, Any] | None = None, *, timeout: float = 120.0, context: FakeLambdaContext | None = None
    ) -> dict[str, Any]:
        import app

        with pytest.MonkeyPatch.context() as mp:
            for key, value in self.env.items():
                mp.setenv(key, value)
            mp.setattr(app, "session_factory", lambda: self.session)
            context = context or FakeLambdaContext(timeout)
            report: dict[str, Any] = app.handler(event if event is not None else {}, context)
            return report


@pytest.fixture
def mirror(registries: Registries, tmp_path: Path) -> Iterator[Mirror]:
    env = {
        "CODEBUILD_PROJECT": PROJECT,
        "TARGET_PREFIX": "mirror",
        "REGISTRY_ENDPOINTS": json.dumps(
            {"docker.io": registries.hub.url, ECR_ACCOUNT_HOST: registries.ecr.url, "quay.io": registries.plain.url}
        ),
        "REQUEST_TIMEOUT_SECONDS": "5",
    }
    registries.hub.remaining = registries.hub.limit
    registries.hub.faults.clear()
    registries.hub.tags_page = 100
    registries.tokens.fail_with = None
    registries.tokens.faults.clear()
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        m = Mirror(registries, tmp_path, f"t{uuid.uuid4().hex[:10]}", env, session=session)
        record_builds(session, m.builds)
        create_copy_project(session)
        yield m


@pytest.fixture
def function_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The function's JSON log lines of this test (Powertools' handler keeps the stream it was created with)."""
    import app

    logs = io.StringIO()
    handler = app.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(logs)
    try:
        yield lambda: [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    finally:
        handler.setStream(previous)

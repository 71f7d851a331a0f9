"""registry.k8s.io as it answers: its front end redirects every registry request to an Artifact Registry backend
on another host (devtools.registries.K8sFront). The check follows the hop by the trust rule, the build's skopeo
follows the same hop, and everywhere the source stays what the user wrote, registry.k8s.io."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.images import Layout, push, write_image
from devtools.profiles import ARTIFACT_REGISTRY
from devtools.registries import K8sFront
from devtools.standins import RegistryFront
from mirror.registry import RegistryClient
from tests.integration.conftest import Mirror, Registries, copy_entries, ecr_digest

#: the Artifact Registry region archeio sends a caller to (the host differs by region)
BACKEND = ARTIFACT_REGISTRY.name


@pytest.fixture
def backend(registries: Registries) -> Iterator[RegistryFront]:
    """The public Artifact Registry repository behind registry.k8s.io, as Artifact Registry answers (its own
    challenge and anonymous token, blobs on a signed download path)."""
    front = RegistryFront(ARTIFACT_REGISTRY, registries.plain)
    try:
        yield front
    finally:
        front.close()


@pytest.fixture
def k8s(backend: RegistryFront) -> Iterator[K8sFront]:
    front = K8sFront(backend.url)
    try:
        yield front
    finally:
        front.close()


@pytest.fixture
def k8s_mirror(mirror: Mirror, k8s: K8sFront, backend: RegistryFront) -> Mirror:
    """The deployment's endpoints with registry.k8s.io and its backend on loopback (the backend in place of the
    quay.io stand-in, which is on the same server)."""
    endpoints = json.loads(mirror.env["REGISTRY_ENDPOINTS"])
    del endpoints["quay.io"]
    endpoints.update({"registry.k8s.io": k8s.url, BACKEND: backend.url})
    mirror.env["REGISTRY_ENDPOINTS"] = json.dumps(endpoints)
    return mirror


def seed_backend(mirror: Mirror, name: str, tag: str) -> Layout:
    """An image in the backend where archeio's redirect points: k8s-artifacts-prod/images/<repository>."""
    layout = write_image(mirror.workdir / f"img-{uuid.uuid4().hex[:8]}", name, tag=tag)
    push(layout, f"{mirror.registries.plain.location}/k8s-artifacts-prod/images/{mirror.image(name)}:{tag}")
    return layout


def test_an_image_behind_the_redirect_is_checked_copied_and_then_unchanged(
    k8s_mirror: Mirror, k8s: K8sFront, backend: RegistryFront, tmp_path: Path
) -> None:
    mirror = k8s_mirror
    layout = seed_backend(mirror, "pause", "3.10")
    source = f"registry.k8s.io/{mirror.image('pause')}:3.10"
    repository = f"mirror/registry.k8s.io/{mirror.image('pause')}"

    dry = mirror.invoke({"images": [source], "dryRun": True})

    (record,) = dry["images"]
    assert (record["status"], record["sourceDigest"], record["error"]) == ("missing", layout.digest, None)
    assert record["source"] == source
    assert record["target"].endswith(f"/{repository}:3.10")
    assert ("HEAD", f"/v2/{mirror.image('pause')}/manifests/3.10") in k8s.requests  # asked the front, then the hop
    heads = [s for s in backend.seen("registry") if s.method == "HEAD" and "/manifests/" in s.path]
    (hop,) = [s for s in heads if "/manifests/sha256-" not in s.path]  # not the search for its signatures
    assert hop.authorization is None  # one HEAD, no token: the public repository answers it, no 401 round trip
    assert not [s for s in backend.seen("registry") if s.path.startswith("/v2/token")]

    report = mirror.invoke({"images": [source]})
    (record,) = report["images"]
    assert record["status"] == "missing"
    assert record["build"]
    ((entry,),) = mirror.mirror_images()
    assert entry["registry"] == "registry.k8s.io"
    assert entry["source"] == f"{k8s.location}/{mirror.image('pause')}@{layout.digest}"  # the front, never the backend

    copy_entries(mirror, [entry], tmp_path)
    assert ecr_digest(mirror, repository, "3.10") == layout.digest
    assert any(m == "GET" and "/blobs/" in p for m, p in k8s.requests)  # skopeo followed the same hops
    assert any("/artifacts-downloads/" in s.path for s in backend.seen("registry"))  # and the backend's download

    again = mirror.invoke({"images": [source]})
    assert [r["status"] for r in again["images"]] == ["unchanged"]
    for shown in (dry, report, again):
        assert "k8s-artifacts-prod" not in json.dumps(shown)
        assert BACKEND not in json.dumps(shown)


def test_a_redirect_that_breaks_a_rule_fails_that_image_only_and_names_the_rule(
    k8s_mirror: Mirror, k8s: K8sFront
) -> None:
    mirror = k8s_mirror
    seed_backend(mirror, "coredns", "1.11.3")
    mirror.seed("bystander", "b", tag="1")
    k8s.redirect_to = "http://127.0.0.1:9"  # plain http to a port no endpoint names

    report = mirror.invoke(
        {"images": [f"registry.k8s.io/{mirror.image('coredns')}:1.11.3", mirror.image("bystander:1")]}
    )

    refused, bystander = report["images"]
    assert refused["status"] == "failed"
    assert refused["error"] == (
        f"source bad response: registry.k8s.io/{mirror.image('coredns')}:1.11.3: redirect refused (HTTP 307): "
        "a redirect to plain http (127.0.0.1:9), which is not a configured endpoint"
    )
    assert bystander["status"] == "missing"


def test_a_tag_list_follows_the_redirect_and_pages_on_the_backend(mirror: Mirror) -> None:
    # A backend that pages by itself (the Docker-Hub-like proxy: 100 tags a page, whatever `n` says, since archeio
    # drops the query): the next-page Link is resolved against the backend that answered, and read from there with
    # the backend's own (anonymous) token.
    hub = mirror.registries.hub
    tags = [f"1.{i}.0" for i in range(150)]
    mirror.seed_tags("many", tags)
    front = K8sFront(hub.url, path=mirror.namespace)
    client = RegistryClient(endpoints={"registry.k8s.io": front.url, BACKEND: hub.url})
    try:
        listed = client.list_tags("registry.k8s.io", "many")
    finally:
        client.close()
        front.close()

    assert sorted(listed) == sorted(tags)
    assert [p.split("?")[0] for _, p in front.requests] == ["/v2/many/tags/list"]  # one hop, then the backend
    pages = [p for m, p in mirror.hub_requests() if m == "GET" and "/tags/list" in p]
    assert len(pages) == 3  # a 401 (its challenge), then two pages of 100 and 50
    assert "rid=" in pages[0]
    assert "last=" in pages[-1]

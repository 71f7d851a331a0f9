"""Each source registry the mirror names, as that registry answers (devtools.profiles: every behaviour with the
place it is documented), in front of a real registry: the function's dry run, a run, the real build's copy, and the
next run (`unchanged`); tag lists paged as the registry pages them; a missing tag and a missing repository named."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.images import Layout, push, write_image
from devtools.profiles import PROFILES
from devtools.registries import ECR_ACCOUNT_HOST, put_tags
from devtools.standins import RegistryFront
from mirror import trust
from mirror.registry import RegistryClient
from mirror.registry.auth import parse_challenge
from tests.integration.conftest import Mirror, Registries, copy_entries, ecr_digest


@pytest.fixture(params=sorted(PROFILES))
def front(request: pytest.FixtureRequest, registries: Registries) -> Iterator[RegistryFront]:
    standin = RegistryFront(PROFILES[request.param], registries.plain)
    try:
        yield standin
    finally:
        standin.close()


@pytest.fixture
def site(mirror: Mirror, front: RegistryFront) -> Mirror:
    """The deployment with this registry (and ECR) on loopback; the registry joins the allowed sources as the
    host of an endpoint."""
    mirror.env["REGISTRY_ENDPOINTS"] = json.dumps(
        {front.profile.name: front.url, ECR_ACCOUNT_HOST: mirror.registries.ecr.url}
    )
    return mirror


def seed(mirror: Mirror, name: str, tag: str, *, kind: str = "oci-index") -> Layout:
    layout = write_image(mirror.workdir / f"img-{uuid.uuid4().hex[:8]}", name, kind=kind, tag=tag)
    push(layout, f"{mirror.registries.plain.location}/{mirror.image(name)}:{tag}")
    return layout


def test_an_image_is_checked_copied_and_then_unchanged(site: Mirror, front: RegistryFront, tmp_path: Path) -> None:
    mirror, profile = site, front.profile
    layout = seed(mirror, "app", "1.2.3")
    source = f"{profile.name}/{mirror.image('app')}:1.2.3"

    dry = mirror.invoke({"images": [source], "dryRun": True})
    (record,) = dry["images"]
    assert (record["status"], record["sourceDigest"], record["error"]) == ("missing", layout.digest, None)

    report = mirror.invoke({"images": [source]})
    (record,) = report["images"]
    assert (record["status"], record["source"]) == ("missing", source)
    repository = record["target"].split("/", 1)[1].rsplit(":", 1)[0]  # docker.io's without a registry part
    assert repository == f"mirror/{'' if profile.name == 'docker.io' else profile.name + '/'}{mirror.image('app')}"
    ((entry,),) = mirror.mirror_images()
    assert entry["registry"] == profile.name
    assert entry["source"] == f"{front.location}/{mirror.image('app')}@{layout.digest}"
    if profile.auth and not profile.anonymous_reads:  # the check asked with a token of this registry's own
        heads = [s for s in front.seen("registry") if s.method == "HEAD" and "/manifests/" in s.path]
        assert heads
        assert (heads[-1].authorization or "").startswith("Bearer ")

    before = front.pulls
    copy_entries(mirror, [entry], tmp_path)
    assert ecr_digest(mirror, repository, "1.2.3") == layout.digest
    blobs = [s for s in front.seen("registry") if s.method == "GET" and "/blobs/" in s.path]
    assert blobs, "the build read no blob through the registry"
    if profile.blob_redirect is not None and profile.blob_host == "cdn":  # followed there, without credentials
        cdn = [s for s in front.seen("cdn") if s.method == "GET"]
        assert len(cdn) >= len(blobs)
        assert all(s.authorization is None for s in cdn)
    if profile.rate_limit:  # an index and its two platform manifests: three pulls, none of them the check's
        assert front.pulls - before == 3

    again = mirror.invoke({"images": [source]})
    assert [r["status"] for r in again["images"]] == ["unchanged"]


def test_a_tag_list_is_read_whole_however_the_registry_pages_it(registries: Registries, front: RegistryFront) -> None:
    name = f"t{uuid.uuid4().hex[:10]}/many"
    tags = [f"1.{i}.{j}" for i in range(25) for j in range(10)]  # 250: more than one page everywhere
    layout = write_image(registries.workdir / f"img-{uuid.uuid4().hex[:8]}", "many", kind="oci-manifest", tag="0")
    push(layout, f"{registries.plain.location}/{name}:0")
    manifest = (layout.path / "blobs" / "sha256" / layout.digest.split(":", 1)[1]).read_bytes()
    put_tags(registries.plain.url, name, manifest, layout.media_type, tags, headers={})
    client = RegistryClient(endpoints={front.profile.name: front.url})
    try:
        listed = client.list_tags(front.profile.name, name)
    finally:
        client.close()

    assert sorted(listed) == sorted([*tags, "0"])
    pages = [s for s in front.seen("registry") if s.method == "GET" and "/tags/list" in s.path]
    rules = front.profile.tags
    size = rules.default if not rules.honours_n else min(100, rules.maximum or 100)
    expected = 1 if size is None else -(-251 // size)
    anonymous = not front.profile.auth or front.profile.anonymous_reads
    answered = [s for s in pages if s.authorization or anonymous]
    assert len(answered) == expected


def test_a_missing_tag_and_a_missing_repository_fail_with_their_reason(site: Mirror, front: RegistryFront) -> None:
    mirror, profile = site, front.profile
    seed(mirror, "present", "1", kind="oci-manifest")
    report = mirror.invoke(
        {"images": [f"{profile.name}/{mirror.image('present')}:2", f"{profile.name}/{mirror.image('absent')}:1"]}
    )

    tag, repository = report["images"]
    assert (tag["status"], repository["status"]) == ("failed", "failed")
    assert tag["error"] == f"source not found: {profile.name}/{mirror.image('present')}:2 does not exist"
    if profile.missing_repository == "unauthorized":
        assert repository["error"].startswith("source not found or access denied: ")
    else:
        assert repository["error"] == f"source not found: {profile.name}/{mirror.image('absent')}:1 does not exist"
    assert mirror.builds == []


def test_each_stand_in_answers_the_raw_requests_as_its_registry_does(
    registries: Registries, front: RegistryFront
) -> None:
    # The stand-in itself, asked as a client that knows nothing: what the profile says is what goes on the wire.
    profile = front.profile
    name = f"t{uuid.uuid4().hex[:10]}/raw"
    layout = write_image(registries.workdir / f"img-{uuid.uuid4().hex[:8]}", "raw", kind="oci-manifest", tag="1")
    push(layout, f"{registries.plain.location}/{name}:1")
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    with requests.Session() as http:
        ping = http.get(f"{front.url}/v2/", timeout=5)
        manifest = f"{front.url}/v2/{name}/manifests/1"
        if not profile.auth:
            assert ping.status_code == 200
            assert "WWW-Authenticate" not in ping.headers
            headers = accept
        else:
            assert ping.status_code == 401
            challenge = parse_challenge(ping.headers["WWW-Authenticate"])
            assert (challenge.scheme, challenge.params["realm"]) == ("bearer", front.realm)
            assert challenge.params.get("service") == (profile.service if profile.ping_service else None)
            assert challenge.params.get("scope") == profile.ping_scope
            if not profile.anonymous_reads:
                refused = http.head(manifest, headers=accept, timeout=5)
                assert refused.status_code == 401
                scoped = parse_challenge(refused.headers["WWW-Authenticate"])
                assert scoped.params.get("scope") == f"repository:{name}:pull"
                bad = http.head(manifest, headers={**accept, "Authorization": "Bearer forged"}, timeout=5)
                assert bad.status_code == profile.error(profile.invalid_token)[0]
            answer = http.get(
                front.realm, params={"service": profile.service, "scope": f"repository:{name}:pull"}, timeout=5
            )
            assert answer.status_code == 200
            body = answer.json()
            assert set(body) == set(profile.token_body("x"))
            headers = {**accept, "Authorization": f"Bearer {body.get('token') or body['access_token']}"}
            if not profile.anonymous_reads:  # a good token for another repository
                other = http.head(f"{front.url}/v2/{name}x/manifests/1", headers=headers, timeout=5)
                assert other.status_code == profile.error(profile.wrong_scope)[0]
                if profile.wrong_scope == "unauthorized":
                    assert 'error="insufficient_scope"' in other.headers["WWW-Authenticate"]
        head = http.head(manifest, headers=headers, timeout=5)
        assert head.status_code == 200
        assert head.headers["Docker-Content-Digest"] == layout.digest
        assert ("ratelimit-limit" in head.headers) == profile.rate_limit
        config = json.loads(http.get(manifest, headers=headers, timeout=5).content)["config"]["digest"]
        hop = http.get(f"{front.url}/v2/{name}/blobs/{config}", headers=headers, allow_redirects=False, timeout=5)
        assert hop.status_code == (profile.blob_redirect or 200)
        if profile.blob_redirect and profile.blob_host == "cdn":
            location = hop.headers["Location"]
            assert location.startswith(front.cdn_url + "/")
            with_token = http.get(location, headers={"Authorization": "Bearer x"}, timeout=5)
            assert with_token.status_code == (400 if profile.cdn_refuses_authorization else 200)
            assert http.get(location, timeout=5).status_code == 200
            assert http.get(location.split("?")[0], timeout=5).status_code == 403  # unsigned
        unknown = http.get(f"{front.url}/v2/{name}/manifests/nosuch", headers=headers, timeout=5)
        status, error = profile.error("manifest_unknown")
        assert unknown.status_code == status
        assert unknown.json()["errors"][0]["code"] == error["code"]


@pytest.mark.parametrize("name", ["mirrortest.azurecr.io", "registry.gitlab.com", "ghcr.io"])
def test_a_private_repository_is_read_with_its_registrys_credential_only(
    mirror: Mirror, registries: Registries, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Azure Container Registry without anonymous pull, a private GitLab project, a private ghcr.io package: the token
    # endpoint wants the registry's Basic login; without it the image fails naming what is missing.
    front = RegistryFront(PROFILES[name], registries.plain, login=("mirror-bot", "registry-s3cret"))
    try:
        mirror.env["REGISTRY_ENDPOINTS"] = json.dumps({name: front.url, ECR_ACCOUNT_HOST: registries.ecr.url})
        layout = seed(mirror, "private", "1")
        source = f"{name}/{mirror.image('private')}:1"

        without = mirror.invoke({"images": [source], "dryRun": True})
        (record,) = without["images"]
        assert record["status"] == "failed"
        assert record["error"].startswith("source auth: token for ")
        assert record["error"].endswith(
            "the token endpoint refused an anonymous request (HTTP 401); the repository may need credentials, "
            "and none were sent"
        )

        arn = mirror.session.client("secretsmanager").create_secret(
            Name="ecr-mirror/private",
            SecretString=json.dumps({"username": "mirror-bot", "password": "registry-s3cret"}),
        )["ARN"]
        mirror.env["REGISTRY_CREDENTIALS"] = json.dumps({name: arn})
        if front.profile.token_path is None:
            # GitLab.com's token service is another host (gitlab.com; here `localhost`): the credential goes there
            # only by trust.TOKEN_SERVICES, which names it for registry.gitlab.com's own host (here 127.0.0.1).
            withheld = mirror.invoke({"images": [source], "dryRun": True})["images"][0]
            assert withheld["status"] == "failed"
            assert "so it was asked without the credentials configured for registry.gitlab.com" in withheld["error"]
            monkeypatch.setitem(trust.TOKEN_SERVICES, "127.0.0.1", "localhost")
        dry = mirror.invoke({"images": [source], "dryRun": True})
        (record,) = dry["images"]
        assert (record["status"], record["sourceDigest"]) == ("missing", layout.digest)
        logins = [s.authorization for s in front.requests if s.host in ("auth", "registry") and "token" in s.path]
        assert logins[-1] == "Basic " + base64.b64encode(b"mirror-bot:registry-s3cret").decode()
        assert all(s.authorization is None for s in front.seen("cdn"))
        assert "registry-s3cret" not in json.dumps(dry)
    finally:
        front.close()

"""The source registries the mirror names, each as it answers the registry API (`devtools.standins.Profile`).

Every behaviour carries where it is documented: the vendor's documentation, the registry's own source, or an
established client's code or fixtures. The tests run the function and the build against each
(tests/integration/test_source_registries.py)."""

from __future__ import annotations

import datetime
from typing import Any

from devtools.standins import Profile, Tags


def _issued_at() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _docker_hub_token(value: str) -> dict[str, Any]:
    # auth.docker.io answers both names (the token spec: `access_token` for OAuth2 compatibility), 300 s, issued_at
    # (distribution docs/spec/auth/token.md "Token Response Fields"; seen in regclient's and renovate's fixtures).
    return {"token": value, "access_token": value, "expires_in": 300, "issued_at": _issued_at()}


def _gcr_extra(tags: list[str]) -> dict[str, Any]:
    # gcr.io's tag list carries `child` (sub-repositories) and `manifest` (digest -> tags, times, media type) beside
    # `tags` (go-containerregistry pkg/v1/google/list.go `rawManifestInfo`, `tags` struct; #897).
    return {"child": [], "manifest": {}}


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            name="docker.io",
            # registry-1.docker.io challenges for auth.docker.io, a host of its own (FACTS.md; distribution docs
            # spec/auth/token.md's example is Docker Hub's own exchange).
            service="registry.docker.io",
            token_path=None,
            token_body=_docker_hub_token,
            # Manifest answers carry ratelimit-limit/-remaining; a GET counts, a HEAD does not (docker/docs
            # manuals/docker-hub/usage/pulls.md).
            rate_limit=True,
            # Blobs are a 307 to Cloudflare (production.cloudflare.docker.com), a signed URL.
            blob_redirect=307,
            blob_path="/registry-v2/docker/registry/v2/blobs/sha256/{digest}/data",
            tags=Tags(default=None, maximum=None),
            # A repository that does not exist is 401, as a private one (distribution/distribution#2376).
            missing_repository="unauthorized",
        ),
        Profile(
            name="ghcr.io",
            service="ghcr.io",
            token_path="/token",
            blob_redirect=307,
            blob_path="/ghcr1/blobs/sha256:{digest}",
        ),
        Profile(
            name="quay.io",
            service="quay.io",
            token_path="/v2/auth",
            blob_redirect=302,
            tags=Tags(default=50, maximum=100, cursor="next_page"),
        ),
        Profile(
            name="public.ecr.aws",
            service="public.ecr.aws",
            token_path="/token/",
            ping_scope="aws",
            blob_redirect=307,
            tags=Tags(default=None, maximum=1000),
        ),
        Profile(
            name="gcr.io",
            service="gcr.io",
            token_path="/v2/token",
            token_body=lambda t: {"expires_in": 43200, "issued_at": _issued_at(), "token": t},
            blob_redirect=302,
            tags=Tags(honours_n=False, extra=_gcr_extra),
        ),
        Profile(
            name="mcr.microsoft.com",
            service=None,
            ping_status=200,
            anonymous_reads=True,
            blob_redirect=307,
        ),
    ]
}

"""The source registries the mirror names, each as it answers the registry API (`devtools.standins.Profile`).

Every behaviour carries where it is documented: the vendor's documentation, the registry's own source, or an
established client's code, fixtures or a maintainer's trace in its issues. Where nothing documents a detail, the
comment says so and the stand-in takes the spec's answer. Every one of them answers a manifest HEAD with
`Docker-Content-Digest`, as the function needs (distribution's spec; gitlab-org/container-registry
registry/handlers/manifests.go; Chainguard's docs resolve digests with `curl -sI`): the stand-in passes the real
registry's through. The tests run the function and the build against each
(tests/integration/test_source_registries.py); registry.k8s.io's front end is `devtools.registries.K8sFront`, in
front of `ARTIFACT_REGISTRY` (tests/integration/test_redirects.py)."""

from __future__ import annotations

import datetime
from typing import Any

from devtools.standins import SPEC_ERRORS, Profile, Tags


def _issued_at() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _docker_hub_token(value: str) -> dict[str, Any]:
    # auth.docker.io answers `token` and `access_token` (the token spec's OAuth2 name), `expires_in: 300` and
    # `issued_at` (distribution docs/spec/auth/token.md, "Token Response Fields", whose example is Docker Hub's).
    return {"token": value, "access_token": value, "expires_in": 300, "issued_at": _issued_at()}


def _gcr_extra(tags: list[str]) -> dict[str, Any]:
    # gcr.io's tag list carries `child` (sub-repositories) and `manifest` (digest -> size, media type, times as
    # strings, tags) beside `tags` (go-containerregistry pkg/v1/google/list.go `rawManifestInfo`, list_test.go's
    # "gcr success" fixture; maintainer's note in go-containerregistry#897). Empty here: the client reads `tags`.
    return {"child": [], "manifest": {}}


_GCR_DENIED = (
    "You don't have the needed permissions to perform this operation, and you may have invalid credentials. To "
    "authenticate your request, follow the steps in: https://cloud.google.com/container-registry/docs/advanced-authentication"
)

DOCKER_HUB = Profile(
    name="docker.io",
    # registry-1.docker.io challenges `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`,
    # with `scope="repository:<name>:pull"` on repository requests: the token service is a host of its own
    # (distribution docs/spec/auth/token.md; ../shared/FACTS.md).
    service="registry.docker.io",
    token_path=None,
    token_body=_docker_hub_token,
    # A manifest answer carries `ratelimit-limit`/`ratelimit-remaining` (`;w=21600`) and `docker-ratelimit-source`;
    # a GET counts as a pull, a HEAD does not (docker/docs content/manuals/docker-hub/usage/pulls.md).
    rate_limit=True,
    # A blob GET is a 307 to Cloudflare's production.cloudflare.docker.com, a signed, expiring URL
    # (docker/docs manuals/docker-hub/usage, "allowlist": production.cloudflare.docker.com serves layers).
    blob_redirect=307,
    blob_path="/registry-v2/docker/registry/v2/blobs/sha256/{hex}/data",
    # Without `n`, every tag in one body; with it, pages and a relative Link `?last=…&n=…`
    # (docker/hub-feedback#1960; regclient's fixtures).
    tags=Tags(default=None, maximum=None, link="last={last}&n={n}"),
    # A repository that does not exist is 401 UNAUTHORIZED, as a private one, even with a fresh token, and the
    # challenge says `error="insufficient_scope"` (distribution/distribution#2376); an unknown tag is 404
    # MANIFEST_UNKNOWN with the tag in `detail` as a string.
    missing_repository="unauthorized",
    errors={
        **SPEC_ERRORS,
        "manifest_unknown": (
            404,
            {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": "unknown tag={reference}"},
        ),
    },
)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        DOCKER_HUB,
        Profile(
            name="ghcr.io",
            # `Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:<name>:pull"`; an anonymous
            # token is needed even for a public image (../shared/FACTS.md; GitHub docs, "Working with the Container
            # registry", as clients quote it). The token answer is `{"token": …}` alone, no lifetime.
            service="ghcr.io",
            token_path="/token",
            # A blob GET is a 307 to pkg-containers.githubusercontent.com, signed (`se=`, `sig=`).
            blob_redirect=307,
            blob_path="/ghcr1/blobs/sha256:{hex}",
            # tags/list: pages of at most 100, and a relative Link that says `n=0` (read as the default page)
            # (renovate lib/modules/datasource/docker fixtures; ../shared/FACTS.md).
            tags=Tags(default=100, maximum=100, link="last={last}&n=0"),
            # Error objects carry no `detail` ({"errors":[{"code":"UNAUTHORIZED","message":"authentication
            # required"}]}, as clients quote it).
            errors={
                key: (status, {"code": e["code"], "message": e["message"]}) for key, (status, e) in SPEC_ERRORS.items()
            },
        ),
        Profile(
            name="quay.io",
            # `Bearer realm="https://quay.io/v2/auth",service="quay.io"`; public repositories anonymous; the token
            # answer is `{"token": …}` alone, good for an hour (quay/quay endpoints/v2/v2auth.py,
            # TOKEN_VALIDITY_LIFETIME_S; auth/registry_jwt_auth.py).
            service="quay.io",
            token_path="/v2/auth",
            token_lifetime=3600,
            # `/v2/`'s 401 body is the JSON `true` (quay/quay endpoints/v2/__init__.py `v2_support_enabled`).
            ping_body=b"true",
            # A blob GET is a 302 to the storage's signed URL (quay/quay storage, `get_direct_download_url`: S3 or
            # CloudFront).
            # From inside AWS (where the build runs) the redirect is to S3 itself, whose presigned URLs refuse a
            # request that also carries an Authorization header; cdn0N.quay.io elsewhere.
            blob_redirect=302,
            blob_path="/quayio-production-s3/sha256/{hex}",
            cdn_refuses_authorization=True,
            # tags/list pages of 100 (a larger `n` is cut to 100) with a relative Link `?n=…&last=…` (quay/quay
            # endpoints/v2/tag.py since June 2024; before, an opaque `next_page` and pages of 50).
            tags=Tags(default=100, maximum=100),
            # A missing (or private) repository is 401 UNAUTHORIZED; an unknown tag is 404 MANIFEST_UNKNOWN with an
            # empty `detail` object (quay/quay endpoints/v2/errors.py).
            missing_repository="unauthorized",
            errors={
                **SPEC_ERRORS,
                "manifest_unknown": (404, {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {}}),
            },
            # Quay.io serves OCI 1.1's referrers API (Red Hat, "Announcing the OCI Referrers API on Quay.io", 2024;
            # PROJQUAY-10176: "the backend quay.io already supports the OCI 1.1 Referrers API").
            referrers=True,
        ),
        Profile(
            name="public.ecr.aws",
            # `Bearer realm="https://public.ecr.aws/token/",service="public.ecr.aws",scope="aws"` on `/v2/` (the
            # string clients quote; ../shared/FACTS.md); anonymous tokens from `/token/`, `{"token": …}` alone,
            # good for an hour (oras-project/oras-go#1227); every manifest request needs one (AWS docs, ECR Public
            # "Registry authentication"; aws/containers-roadmap#1806).
            service="public.ecr.aws",
            token_path="/token/",
            ping_scope="aws",
            token_lifetime=3600,
            # A token that is invalid or expired is 400 DENIED with no challenge, not 401 (oras-project/oras-go#1227,
            # aws/containers-roadmap#2835, lablup/backend.ai#2549).
            invalid_token="invalid_token",
            # A blob GET is a 307 to blob storage; a blob HEAD is 401 even with a token (aws/containers-roadmap#2671,
            # distribution/distribution#4383).
            blob_redirect=307,
            blob_head_status=401,
            # tags/list is the spec's body; paging undocumented beyond private ECR's (`last`, at most 1000 a page:
            # renovate lib/modules/datasource/docker, google/go-containerregistry#681).
            tags=Tags(default=100, maximum=1000),
            errors={
                **SPEC_ERRORS,
                "invalid_token": (400, {"code": "DENIED", "message": "Your Authorization Token is invalid."}),
            },
        ),
        Profile(
            name="gcr.io",
            # `/v2/` is 401 `Bearer realm="https://gcr.io/v2/token",service="gcr.io"` (containerd/containerd#4379's
            # trace; kubernetes-sigs/promo-tools#632); repository requests add `scope="repository:<name>:pull"`
            # (clients' fixtures).
            service="gcr.io",
            token_path="/v2/token",
            # The token answer's fields are not documented; go-containerregistry reads `token`, `access_token` and
            # `expires_in` (pkg/v1/remote/transport/bearer.go); the stand-in answers `token` and `expires_in`.
            token_body=lambda t: {"token": t, "expires_in": 3600},
            token_lifetime=3600,
            # A public repository is read without any token (../shared/FACTS.md; ahmetb/serverless-registry-proxy
            # adds auth only for private ones), as Artifact Registry's are.
            anonymous_reads=True,
            # gcr.io is served by Artifact Registry, whose blob GET is a 302 to a relative, signed download path on
            # the same host, readable without a token (ahmetb/serverless-registry-proxy#8, on pkg.dev); that gcr.io
            # answers the same is not documented, and assumed here.
            blob_redirect=302,
            blob_host="self",
            blob_path="/artifacts-downloads/namespaces/gcr/repositories/{name}/downloads/{digest}",
            # tags/list ignores pagination and adds `child` and `manifest` (go-containerregistry#897).
            tags=Tags(honours_n=False, extra=_gcr_extra),
            # A private or missing repository: the same 401 (keel-hq/keel#546, promo-tools#632).
            missing_repository="unauthorized",
            errors={**SPEC_ERRORS, "unauthorized": (401, {"code": "UNAUTHORIZED", "message": _GCR_DENIED})},
        ),
        Profile(
            name="mcr.microsoft.com",
            # Anonymous: `_catalog` and tags/list readable with no credential at all (microsoft/containerregistry
            # README; docs/mcr-endpoints-guidance.md). Whether `/v2/` challenges is not documented: no challenge here.
            auth=False,
            # Content comes from the data endpoints `*.data.mcr.microsoft.com` (Azure Front Door): a blob GET is
            # redirected there (microsoft/containerregistry docs/client-firewall-rules.md, #55). The status is not
            # documented; 307 here (Go's client and skopeo follow either).
            blob_redirect=307,
            blob_path="/blobs/{digest}",
            # The catalog is not paginated (microsoft/containerregistry#96); tags/list paging is not documented:
            # the spec's `n`/`last` here.
            tags=Tags(default=None, maximum=None),
        ),
        # -- upstreams of ECR's pull-through cache beyond the defaults above (docs.aws.amazon.com AmazonECR
        # userguide pull-through-cache.html; botocore's ecr model, CreatePullThroughCacheRule upstreamRegistryUrl)
        Profile(
            name="registry.gitlab.com",
            # `Bearer realm="https://gitlab.com/jwt/auth",service="container_registry"`: the token service is
            # GitLab itself, another host; repository requests add the scope (gitlab-org/container-registry
            # registry/auth/token/accesscontroller.go `challengeParams`; deitch/docker_registry2#14's capture).
            service="container_registry",
            token_path=None,
            # `{"token": …}` alone, good for 15 minutes on GitLab.com (gitlabhq app/controllers/jwt_controller.rb;
            # docs.gitlab.com user/gitlab_com, "Container registry"); anonymous tokens for public projects.
            token_lifetime=900,
            # A blob GET is a 307 to Google Cloud CDN, cdn.registry.gitlab-static.net, signed for 20
            # minutes (container-registry registry/storage/blobserver.go `ServeBlob`, googlecdn middleware).
            blob_redirect=307,
            blob_path="/gitlab/docker/registry/v2/blobs/sha256/{hex}/data",
            # tags/list: 100 a page without `n`, `n` honoured, a relative Link `?last=…&n=…` (container-registry
            # registry/handlers/catalog.go `createLinkEntry`, `defaultMaximumReturnedEntries`).
            tags=Tags(default=100, maximum=None, link="last={last}&n={n}"),
            # A private or missing project: an anonymous token without access, then 401 UNAUTHORIZED with
            # `error="insufficient_scope"`, never 404 (jwt_controller.rb, container_registry_authentication_service.rb);
            # an unknown tag is 404 MANIFEST_UNKNOWN with `{"Tag": …}` (registry/handlers/manifests.go).
            missing_repository="unauthorized",
            errors={
                **SPEC_ERRORS,
                "unauthorized": (
                    401,
                    {
                        "code": "UNAUTHORIZED",
                        "message": "authentication required",
                        "detail": [
                            {"Type": "repository", "Class": "", "Name": "{name}", "ProjectPath": "", "Action": "pull"}
                        ],
                    },
                ),
                "manifest_unknown": (
                    404,
                    {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": "{reference}"}},
                ),
            },
        ),
        Profile(
            name="cgr.dev",
            # Chainguard: the token endpoint is https://cgr.dev/token, anonymous for the public catalog, its answer
            # read as `.token` (edu.chainguard.dev, "Using the Tag History API" and "registry errors"); the
            # challenge `Bearer realm="https://cgr.dev/token",service="cgr.dev"` as clients' fixtures quote it.
            service="cgr.dev",
            token_path="/token",
            # A token is good for one repository only: reused on another, 403 (clowdhaus ocync docs, "Chainguard").
            wrong_scope="denied",
            # Blobs come from Cloudflare R2 (`<account>.r2.cloudflarestorage.com`, edu.chainguard.dev
            # "network requirements"); the redirect's status is not documented: 307 here.
            blob_redirect=307,
            blob_path="/cgr/blobs/{digest}",
            # Paging is not documented: the spec's `n`/`last`.
            tags=Tags(default=None, maximum=None),
        ),
        Profile(
            name="mirrortest.azurecr.io",
            # Azure Container Registry with anonymous pull enabled (learn.microsoft.com azure/container-registry
            # anonymous-pull-access): `Bearer realm="https://<r>.azurecr.io/oauth2/token",service="<r>.azurecr.io"`,
            # with the scope on repository requests (Azure/acr docs/Token-BasicAuth.md).
            service="mirrortest.azurecr.io",
            token_path="/oauth2/token",
            # The answer is `{"access_token": …}`, not `token`, and has no lifetime (Token-BasicAuth.md,
            # AAD-OAuth.md); the JWT inside lives about 75 minutes.
            token_body=lambda t: {"access_token": t},
            token_lifetime=4500,
            # A blob GET is a 307 to storage (`*.blob.core.windows.net`) or the registry's data endpoint, a link
            # good for 20 minutes (container-registry-dedicated-data-endpoints).
            blob_redirect=307,
            blob_path="/mirrortest/docker/registry/v2/blobs/sha256/{hex}/data",
            # tags/list honours `n` and `last`; the relative Link ends with an empty `orderby=` (AAD-OAuth.md,
            # "Pagination").
            tags=Tags(default=None, maximum=None, link="last={last}&n={n}&orderby="),
            # A 401's detail has no `Class` (Token-BasicAuth.md).
            errors={
                **SPEC_ERRORS,
                "unauthorized": (
                    401,
                    {
                        "code": "UNAUTHORIZED",
                        "message": "authentication required",
                        "detail": [{"Type": "repository", "Name": "{name}", "Action": "pull"}],
                    },
                ),
            },
        ),
    ]
}

#: Artifact Registry (`<region>-docker.pkg.dev`), registry.k8s.io's backend: `/v2/` challenges
#: `Bearer realm="https://us-docker.pkg.dev/v2/token"` without a service; repository requests add the service and
#: the scope (apple/container#2274's trace); a public repository is read without any token, which archeio relies on
#: (kubernetes/registry.k8s.io cmd/archeio/internal/app/handlers.go: the client's Authorization is dropped on the
#: hop, golang/go#65065); blobs are a 302 to a same-host download path (ahmetb/serverless-registry-proxy#8).
ARTIFACT_REGISTRY = Profile(
    name="us-central1-docker.pkg.dev",
    service="us-central1-docker.pkg.dev",
    token_path="/v2/token",
    ping_service=False,
    anonymous_reads=True,
    token_body=lambda t: {"token": t, "expires_in": 3600},
    token_lifetime=3600,
    blob_redirect=302,
    blob_host="self",
    blob_path="/artifacts-downloads/namespaces/k8s-artifacts-prod/repositories/images/downloads/{digest}",
)

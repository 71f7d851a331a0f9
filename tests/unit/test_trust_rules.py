"""One table of trust cases, run against mirror.trust (the function's rule) and against the copy program as
template.yaml's buildspec carries it (trust.py inlined by the embed step), so that both are shown to hold one rule:
which realm may take a registry's credential, which registry a host belongs to, what is loopback."""

from __future__ import annotations

import re
import types
from typing import Any

import pytest

import mirror.trust
from copier import copy_images
from devtools.buildspec import copy_module

REFUSED = "refused"
HUB = "https://registry-1.docker.io"

REALMS = [
    # (the registry's endpoint, the realm it names, whether the realm takes its credential or is refused outright)
    ("https://ghcr.io", "https://ghcr.io/token", True),  # the endpoint's own host
    ("https://GHCR.io", "https://ghcr.io/token?scope=x", True),
    ("https://ghcr.io", "https://auth.docker.io/token", False),  # another host: asked anonymously
    ("https://quay.io", "https://evil.example/token", False),
    (HUB, "https://auth.docker.io/token", True),  # Docker Hub's token service, for Docker Hub's own API host only
    (HUB, "https://registry-1.docker.io/token", True),
    ("https://mirror.gcr.io", "https://auth.docker.io/token", False),  # not Docker Hub's host: no exception
    ("https://registry.gitlab.com", "https://gitlab.com/jwt/auth", True),  # GitLab.com's token service
    ("https://registry.gitlab.com", "https://auth.docker.io/token", False),  # another registry's: no
    ("https://gitlab.example.com", "https://gitlab.com/jwt/auth", False),  # a self-managed GitLab: its own host
    (HUB, "https://evil.example/token", False),
    (HUB, "http://auth.docker.io/token", REFUSED),  # plain http outside loopback
    ("https://ghcr.io", "http://ghcr.io/token", REFUSED),
    (HUB, "https://127.0.0.1:9001/token", REFUSED),  # a loopback realm named by a registry outside loopback
    ("https://ghcr.io", "http://localhost:9001/token", REFUSED),
    ("https://ghcr.io", "https://[::1]:9001/token", REFUSED),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5001/token", True),  # tests and sandboxes
    ("http://127.0.0.1:5000", "http://localhost:5001/token", False),  # another host name, even on loopback
    # two parsers, two hosts (urlsplit reads 127.0.0.1 and ghcr.io, urllib3 connects to localhost and evil.example)
    ("http://127.0.0.1:5000", "http://localhost:5000\\@127.0.0.1/token", REFUSED),
    ("https://ghcr.io", "https://evil.example\\@ghcr.io/token", REFUSED),
    ("https://ghcr.io", "https://user:secret@ghcr.io/token", REFUSED),  # userinfo
    ("https://ghcr.io", "https://ghcr.io@evil.example/token", REFUSED),
    ("https://ghcr.io", "https://ghcr.io/token#fragment", REFUSED),
    ("https://ghcr.io", "https://ghcr.io/t\u00f6ken", REFUSED),  # non-ASCII
    ("https://ghcr.io", "https://\uff47hcr.io/token", REFUSED),  # a full-width letter some parsers fold to ASCII
    ("https://ghcr.io", "https://ghcr.io /token", REFUSED),
    ("https://ghcr.io", "https://ghcr.io/token\r\nX: y", REFUSED),
    (HUB, "file:///etc/passwd", REFUSED),
    (HUB, "", REFUSED),
]

REGISTRY_OF = [
    # (the host[:port] a copy reads from, REGISTRY_ENDPOINTS, the registry it belongs to)
    ("docker.io", {}, "docker.io"),
    ("registry-1.docker.io", {}, "docker.io"),
    ("index.docker.io", {}, "docker.io"),
    ("ghcr.io", {}, "ghcr.io"),
    ("GHCR.io", {}, "ghcr.io"),
    ("127.0.0.1:5000", {"docker.io": "http://127.0.0.1:5000"}, "docker.io"),  # the endpoint configured for it
    ("127.0.0.1:5001", {"docker.io": "http://127.0.0.1:5000"}, "127.0.0.1:5001"),  # another port: another host
    ("mirror.gcr.io", {"docker.io": "https://mirror.gcr.io"}, "docker.io"),
    ("mirror.example:8443", {"quay.io": "https://mirror.example:8443"}, "quay.io"),
    ("evil.example", {"docker.io": "https://mirror.gcr.io"}, "evil.example"),  # never Docker Hub on its own word
    ("docker.io.evil.example", {}, "docker.io.evil.example"),
]

ENDPOINT_URL = [
    ("docker.io", {}, HUB),
    ("docker.io", {"docker.io": "http://127.0.0.1:5000"}, "http://127.0.0.1:5000"),
    ("ghcr.io", {}, "https://ghcr.io"),
    ("localhost:5000", {}, "http://localhost:5000"),
    ("127.0.0.1.evil.example:5000", {}, "https://127.0.0.1.evil.example:5000"),
]

LOOPBACK = [
    ("127.0.0.1", True),
    ("127.0.0.1:5000", True),
    ("127.9.8.7", True),
    ("localhost", True),
    ("localhost:5001", True),
    ("[::1]:5000", True),
    ("::1", True),
    ("127.0.0.1.evil.com:5000", False),
    ("localhost.evil.com", False),
    ("10.0.0.1:5000", False),
    ("evil.com/127.0.0.1", False),
    ("[::2]:5000", False),
    ("0.0.0.0", False),
    ("docker.io", False),
]


K8S = "https://registry.k8s.io/v2/pause/manifests/3.10"
#: registry.k8s.io's answer to every /v2/ request but `GET /v2/` (kubernetes/registry.k8s.io, cmd/archeio: a 307
#: to the Artifact Registry region nearest the caller)
BACKEND = "https://us-central1-docker.pkg.dev/v2/k8s-artifacts-prod/images/pause/manifests/3.10"
#: what each name resolves to here (an IP address resolves to itself, as getaddrinfo has it)
ADDRESSES = {
    "registry.k8s.io": ["34.96.108.209", "2600:1901:0:bbc4::"],
    "us-central1-docker.pkg.dev": ["142.250.1.82"],
    "metadata.example": ["169.254.169.254"],
    "split.example": ["93.184.215.14", "10.0.0.7"],  # one public address and one private: refused
    "cgnat.example": ["100.64.0.9"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "unique-local.example": ["fd00::1"],
}
LOCAL = ["http://127.0.0.1:5000", "http://127.0.0.1:5010"]  # the deployment's endpoints (tests stand in so)

REDIRECTS = [
    # (the URL that answered, its Location, the configured endpoints, where the redirect goes, or why it may not)
    (K8S, BACKEND, [], BACKEND),
    (K8S, "/v2/pause/manifests/3.10?x=1", [], "https://registry.k8s.io/v2/pause/manifests/3.10?x=1"),  # a path
    (
        K8S,
        "HTTPS://US-Central1-Docker.pkg.dev/v2/x/manifests/1",
        [],
        "https://us-central1-docker.pkg.dev/v2/x/manifests/1",
    ),
    (K8S, BACKEND.replace("https", "http"), [], "plain http"),
    (K8S, "https://169.254.169.254/latest/meta-data/", [], "not a public address"),
    (K8S, "https://metadata.example/latest/meta-data/", [], "resolves to 169.254.169.254"),
    (K8S, "https://split.example/v2/", [], "resolves to 10.0.0.7"),  # every address is checked
    (K8S, "https://cgnat.example/v2/", [], "resolves to 100.64.0.9"),
    (K8S, "https://mapped.example/v2/", [], "resolves to ::ffff:127.0.0.1"),
    (K8S, "https://unique-local.example/v2/", [], "resolves to fd00::1"),
    (K8S, "https://127.0.0.1:9001/2018-06-01/runtime/invocation/next", [], "not a public address"),  # Lambda's API
    (K8S, "https://[::1]:5000/v2/", [], "not a public address"),
    (K8S, "https://0.0.0.0/v2/", [], "not a public address"),
    (K8S, "https://nowhere.example/v2/", [], "does not resolve"),
    (K8S, "http://127.0.0.1:5010/v2/x/manifests/1", LOCAL, "http://127.0.0.1:5010/v2/x/manifests/1"),  # configured
    (K8S, "http://127.0.0.1:5011/v2/x/manifests/1", LOCAL, "plain http"),  # another port is another host
    (K8S, "http://localhost:5010/v2/", LOCAL, "plain http"),  # another name, even for the same server
    (K8S, "https://evil.example\\@us-central1-docker.pkg.dev/v2/", [], "is not a plain http(s) URL"),
    (K8S, "https://user:pw@us-central1-docker.pkg.dev/v2/", [], "is not a plain http(s) URL"),
    (K8S, "//us-central1-docker.pkg.dev/v2/", [], "is not a plain http(s) URL"),  # scheme-relative
    (K8S, "v2/x/manifests/1", [], "is not a plain http(s) URL"),  # a relative path: no registry sends one
    (K8S, "ftp://files.example/x", [], "is not a plain http(s) URL"),
    (K8S, "", [], "without a Location"),
]


def lookup(host: str, port: int) -> list[str]:
    import ipaddress

    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return ADDRESSES.get(host, [])


@pytest.fixture(scope="module", params=["mirror.trust", "the copy program as template.yaml embeds it"])
def rules(request: pytest.FixtureRequest) -> types.ModuleType:
    return mirror.trust if request.param == "mirror.trust" else copy_module()


@pytest.mark.parametrize(("endpoint", "realm", "takes"), REALMS)
def test_a_realm_takes_a_credential_only_on_the_registrys_own_host(
    rules: Any, endpoint: str, realm: str, takes: bool | str
) -> None:
    if takes == REFUSED:
        with pytest.raises(rules.UntrustedURLError):
            rules.realm_takes_credentials(endpoint, realm)
    else:
        assert rules.realm_takes_credentials(endpoint, realm) is takes


@pytest.mark.parametrize(("host", "endpoints", "registry"), REGISTRY_OF)
def test_a_hosts_registry_is_derived_from_the_host_and_the_configured_endpoints(
    rules: Any, host: str, endpoints: dict[str, str], registry: str
) -> None:
    assert rules.registry_of(host, endpoints) == registry


@pytest.mark.parametrize(("registry", "endpoints", "url"), ENDPOINT_URL)
def test_a_registry_is_reached_at_its_endpoint_plain_http_only_on_loopback(
    rules: Any, registry: str, endpoints: dict[str, str], url: str
) -> None:
    assert rules.endpoint_url(registry, endpoints) == url


@pytest.mark.parametrize(("host", "loopback"), LOOPBACK)
def test_loopback_is_localhost_or_a_loopback_address_and_nothing_that_merely_looks_like_one(
    rules: Any, host: str, loopback: bool
) -> None:
    assert rules.is_loopback(host) is loopback


@pytest.mark.parametrize(("answered", "location", "endpoints", "expected"), REDIRECTS)
def test_a_redirect_goes_only_where_the_rule_allows(
    rules: Any, answered: str, location: str, endpoints: list[str], expected: str
) -> None:
    if expected.startswith(("http://", "https://")):
        assert str(rules.redirect_target(rules.parse_url(answered), location, endpoints, lookup)) == expected
    else:
        with pytest.raises(rules.UntrustedURLError, match=re.escape(expected)):
            rules.redirect_target(rules.parse_url(answered), location, endpoints, lookup)


def test_a_redirect_target_is_resolved_for_real_and_loopback_is_refused(rules: Any) -> None:
    # The default lookup asks the resolver: localhost is loopback whatever the name says.
    with pytest.raises(rules.UntrustedURLError, match=r"resolves to (127\.0\.0\.1|::1): not a public address"):
        rules.redirect_target(rules.parse_url(K8S), "https://localhost/v2/", [])


def test_the_copy_program_has_no_trust_rule_of_its_own() -> None:
    """The module imports the rules (the embed step inlines that very text): nothing it defines shadows them."""
    for name in ("realm_takes_credentials", "registry_of", "endpoint_url", "is_loopback", "parse_url"):
        assert getattr(copy_images, name) is getattr(mirror.trust, name)
    embedded = copy_module()
    for name in ("realm_takes_credentials", "registry_of", "endpoint_url", "is_loopback", "parse_url"):
        assert getattr(embedded, name).__code__.co_code == getattr(mirror.trust, name).__code__.co_code
    # skopeo's TLS flag follows the same loopback rule
    assert [embedded.tls(host) for host, _ in LOOPBACK] == ["false" if lo else "true" for _, lo in LOOPBACK]

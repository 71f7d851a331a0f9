"""One table of trust cases, run against mirror.trust (the function's rule) and against the copy program as
template.yaml's buildspec carries it (trust.py inlined by the embed step), so that both are shown to hold one rule:
which realm may take a registry's credential, which registry a host belongs to, what is loopback."""

from __future__ import annotations

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


def test_the_copy_program_has_no_trust_rule_of_its_own() -> None:
    """The module imports the rules (the embed step inlines that very text): nothing it defines shadows them."""
    for name in ("realm_takes_credentials", "registry_of", "endpoint_url", "is_loopback", "parse_url"):
        assert getattr(copy_images, name) is getattr(mirror.trust, name)
    embedded = copy_module()
    for name in ("realm_takes_credentials", "registry_of", "endpoint_url", "is_loopback", "parse_url"):
        assert getattr(embedded, name).__code__.co_code == getattr(mirror.trust, name).__code__.co_code
    # skopeo's TLS flag follows the same loopback rule
    assert [embedded.tls(host) for host, _ in LOOPBACK] == ["false" if lo else "true" for _, lo in LOOPBACK]

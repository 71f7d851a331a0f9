"""Which URLs a server names may be followed, where a registry's credentials may go, and which tags an artifact
(a signature, attestation or SBOM) may be written under: one rule, used by the function (registry/auth.py,
registry/client.py, artifacts.py) and by the copy program (copier/copy_images.py, whose buildspec embed inlines
this module). Standard library only, since the build image has python3 and nothing else.

A URL is accepted only in one unambiguous form, so that every parser reads the same host: `urllib.parse` and
urllib3 (which `requests` connects with) disagree on some (`http://localhost:1\\@127.0.0.1/` is 127.0.0.1 to one,
localhost to the other), and userinfo, backslashes, whitespace, control or non-ASCII characters are where they do.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
#: the registry API host of docker.io, and the host its token service is on (the one cross-host realm trusted)
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
DOCKER_HUB_AUTH = "auth.docker.io"
#: registry API hosts whose token service is on a host of its own, named by the registry's own documentation: the
#: only realms on another host that receive the registry's credentials (Docker Hub's; GitLab.com's, whose registry
#: challenges for https://gitlab.com/jwt/auth: gitlab-org/container-registry's token access controller)
TOKEN_SERVICES = {DOCKER_HUB_REGISTRY: DOCKER_HUB_AUTH, "registry.gitlab.com": "gitlab.com"}
#: names that mean Docker Hub in an image reference or a copy's source
DOCKER_HUB_HOSTS = frozenset({DOCKER_HUB, "index.docker.io", DOCKER_HUB_REGISTRY})
#: the longest URL a server may name
URL_MAX = 2048
#: the most redirects one request follows (registry.k8s.io sends one; Go's client stops at 10, curl at 50)
REDIRECTS_MAX = 5

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?P<name>{_LABEL}(?:\.{_LABEL})*)|\[(?P<ipv6>[0-9A-Fa-f:.]+)\]"
# RFC 3986's path and query characters, percent-escapes included; no '\', '#', '"', '<', '>', '{', '}', '|', '^',
# '`', space, control or non-ASCII character.
_PCHARS = r"[A-Za-z0-9\-._~!$&'()*+,;=:@%/]"
_URL = re.compile(
    rf"(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://(?:{_HOST})(?::(?P<port>[0-9]{{1,5}}))?"
    rf"(?P<path>/{_PCHARS}*)?(?P<query>\?(?:{_PCHARS}|\?)*)?"
)


class UntrustedURLError(ValueError):
    """A URL a server named is ambiguous, malformed, or may not be followed; the message says why."""


@dataclass(frozen=True)
class URL:
    """A URL in its one accepted form: scheme and host lower case, an IPv6 host without brackets."""

    scheme: str
    host: str
    port: int | None
    target: str  # path and query, at least "/"

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def __str__(self) -> str:
        return self.origin + self.target


def parse_url(url: str) -> URL:
    """`url` as a URL value, or UntrustedURLError: http(s) only, a host name or an IP address, an optional port,
    path and query of RFC 3986 characters; no userinfo, fragment, backslash, whitespace or non-ASCII character."""
    shown = url[:100] if isinstance(url, str) else type(url).__name__
    if not isinstance(url, str) or len(url) > URL_MAX or not url.isascii():
        raise UntrustedURLError(f"{shown!r} is not a URL of at most {URL_MAX} ASCII characters")
    match = _URL.fullmatch(url)
    if match is None:
        raise UntrustedURLError(
            f"{shown!r} is not a plain http(s) URL (no credentials, backslashes, spaces or fragments)"
        )
    host = (match.group("name") or "").lower()
    if match.group("ipv6") is not None:
        try:
            host = str(ipaddress.IPv6Address(match.group("ipv6")))
        except ValueError:
            raise UntrustedURLError(f"{shown!r} has a malformed IPv6 address") from None
    elif host.replace(".", "").isdigit():
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise UntrustedURLError(f"{shown!r} has a malformed IPv4 address") from None
    port = int(match.group("port")) if match.group("port") is not None else None
    if port is not None and not 0 < port < 65536:
        raise UntrustedURLError(f"{shown!r} has a port out of range")
    target = (match.group("path") or "/") + (match.group("query") or "")
    return URL(match.group("scheme").lower(), host, port, target)


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (`127.0.0.0/8`, `::1`), with or without brackets or a port."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def realm_takes_credentials(endpoint: str, realm: str) -> bool:
    """Whether a token realm that the registry at `endpoint` names may receive that registry's credentials.

    A remote server names the realm, so it is trusted no further than the endpoint the deployment chose: plain http
    and loopback realms only for a loopback endpoint (inside Lambda, loopback is the runtime API); credentials only
    to a realm on the endpoint's own host name (and, for Docker Hub or GitLab.com reached directly, their token
    services: TOKEN_SERVICES). A realm elsewhere is asked anonymously (False). Raises UntrustedURLError for a realm
    refused outright.
    """
    where = parse_url(endpoint)
    try:
        named = parse_url(realm)
    except UntrustedURLError as e:
        raise UntrustedURLError(f"the token realm {e}") from None
    local = is_loopback(where.host)
    if named.scheme == "http" and not (local and is_loopback(named.host)):
        raise UntrustedURLError(f"the token realm is plain http outside loopback ({named.host[:100]})")
    if is_loopback(named.host) and not local:
        raise UntrustedURLError("the token realm is on loopback, named by a registry outside loopback")
    if named.host == where.host:
        return True
    return TOKEN_SERVICES.get(where.host) == named.host


def endpoint_url(registry: str, endpoints: Mapping[str, str]) -> str:
    """The base URL a registry is reached at: the configured endpoint, Docker Hub's API host for docker.io, https
    elsewhere, plain http only for a loopback host."""
    if registry in endpoints:
        return endpoints[registry]
    if registry in DOCKER_HUB_HOSTS:
        return f"https://{DOCKER_HUB_REGISTRY}"
    return f"{'http' if is_loopback(registry) else 'https'}://{registry}"


def registry_of(host: str, endpoints: Mapping[str, str]) -> str:
    """The registry name users write (`docker.io`, `ghcr.io`) for the host[:port] a copy reads from: the registry
    whose configured endpoint is on that host, Docker Hub for its own hosts, else the host itself. Derived, never
    taken on a caller's word: Docker Hub's credentials and quota follow this name."""
    host = host.lower()
    for name, base in sorted(endpoints.items()):
        try:
            if parse_url(base).netloc == host:
                return DOCKER_HUB if name in DOCKER_HUB_HOSTS else name
        except UntrustedURLError:
            continue
    return DOCKER_HUB if host in DOCKER_HUB_HOSTS else host


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone index is no part of the address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP address resolves to itself); [] when it does not resolve."""
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})
    except (OSError, UnicodeError):
        return []


def redirect_target(
    answered: URL,
    location: str,
    endpoints: Iterable[str],
    lookup: Callable[[str, int], list[str]] = resolve,
) -> URL:
    """Where a redirect from `answered` may go, or UntrustedURLError naming the rule it breaks.

    `location` is an absolute URL or an absolute path (resolved against the URL that answered). A configured
    endpoint (`endpoints`: the deployment's base URLs) may be reached as configured, plain http or loopback
    included; anywhere else only over https, and only to a host whose every address is public: never loopback,
    link-local (169.254.169.254, the instance metadata service), private, shared or reserved space. Credentials are
    not this rule's business: a caller drops them whenever the host changes.
    """
    location = location.strip() if isinstance(location, str) else ""
    if not location:
        raise UntrustedURLError("a redirect without a Location")
    if location.startswith("/") and not location.startswith("//"):
        location = answered.origin + location
    try:
        target = parse_url(location)
    except UntrustedURLError as e:
        raise UntrustedURLError(f"a redirect to {e}") from None
    configured = set()
    for base in endpoints:
        try:
            configured.add(parse_url(base).origin)
        except UntrustedURLError:
            continue
    if target.origin in configured:
        return target
    if target.scheme != "https":
        raise UntrustedURLError(f"a redirect to plain http ({target.netloc[:100]}), which is not a configured endpoint")
    addresses = lookup(target.host, target.port or 443)
    if not addresses:
        raise UntrustedURLError(f"a redirect to {target.host[:100]}, which does not resolve")
    for address in addresses:
        if not _public(address):
            raise UntrustedURLError(
                f"a redirect to {target.host[:100]}, which resolves to {address}: not a public address"
            )
    return target


# -- artifacts: the only tags a signature, attestation or SBOM is written under ------------------------------------

#: cosign's tag suffixes and what each holds (cosign specs/SIGNATURE_SPEC.md, "Tag-based Discovery")
COSIGN_SUFFIXES = (("sig", "signature"), ("att", "attestation"), ("sbom", "sbom"))
#: the tags an artifact is kept under: cosign's, and the OCI fallback tag (distribution-spec v1.1, "Referrers Tag
#: Schema"), both derived from the digest it refers to
ARTIFACT_TAG_RE = re.compile(r"sha256-[a-f0-9]{64}(?:\.(?:sig|att|sbom))?")
#: the most artifacts one image brings (a real one has a few)
ARTIFACTS_MAX = 50
#: what an index under the fallback tag is assumed to cost to copy from Docker Hub before its referrers are counted:
#: the index and two referrers (every other artifact is one manifest: one pull)
REFERRERS_PULLS = 3


def digest_tag(digest: str) -> str:
    """The tag form of a digest (`sha256:<hex>` -> `sha256-<hex>`): the OCI fallback tag, and the stem of cosign's."""
    return digest.replace(":", "-", 1)


def is_artifact_tag(tag: str, subject: str) -> bool:
    """Whether `tag` is one an artifact of `subject` is kept under (and so one a copy of it may write)."""
    return ARTIFACT_TAG_RE.fullmatch(tag) is not None and tag.partition(".")[0] == digest_tag(subject)

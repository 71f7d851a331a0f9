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
import json
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


# -- platforms: which of an index's manifests a filtered copy keeps, and the index the mirror writes of them --------

#: the most platforms one list may name
PLATFORMS_MAX = 16
#: the most manifests an upstream index may list for a filtered copy (registry.client's INDEX_MAX bounds its count)
INDEX_ENTRIES_MAX = 1000
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
#: the annotations of an index the mirror writes of some platforms of an upstream one: the upstream index's digest and
#: the platforms it was made from (this project's own keys: not org.opencontainers ones, which mean something else)
UPSTREAM_DIGEST = "ecr-mirror.upstream-digest"
#: a manifest's digest as a filtered copy accepts one from upstream (sha256, the only one registries serve here)
_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")
PLATFORM_LIST = "ecr-mirror.platforms"
#: Docker's build attestations inside an index: `unknown/unknown` manifests naming the platform manifest they describe
#: (docker/buildx docs/reference/attestation-storage: `vnd.docker.reference.type`, `vnd.docker.reference.digest`)
ATTESTATION_TYPE = "vnd.docker.reference.type"
ATTESTATION_OF = "vnd.docker.reference.digest"
# containerd/platforms's specifier grammar, `<os>[(<os.version>[+<os.feature>]*)]/<arch>[/<variant>]`, read in
# any case and normalised to lower case
_NAME = r"[A-Za-z0-9_-]{1,32}"
_PLATFORM = re.compile(
    rf"(?P<os>{_NAME})(?:\((?P<version>[A-Za-z0-9._-]{{0,64}})(?P<features>(?:\+[A-Za-z0-9._-]{{1,64}}){{0,8}})\))?"
    rf"/(?P<arch>{_NAME})(?:/(?P<variant>[A-Za-z0-9._-]{{1,16}}))?"
)


class PlatformError(ValueError):
    """A platform that cannot be read; the message says why."""


@dataclass(frozen=True, order=True)
class Platform:
    """A platform as the OCI image spec describes it (index descriptors' `platform`), normalised as containerd does
    (platforms.Normalize: `aarch64` and `arm64/v8` are `arm64`, `x86_64` is `amd64`, a bare `arm` is `arm/v7`)."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        options = self.os_version + "".join(f"+{f}" for f in self.os_features)
        text = f"{self.os}({options})" if options else self.os
        return f"{text}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    def matches(self, other: Platform) -> bool:
        """Whether `other` (an index's platform) is one this (a list's) selects: os, architecture and variant equal;
        an os.version, where this names one, equal or a more precise release of it (`10.0.17763` selects
        `10.0.17763.6659`); os.features, where the index names some, among this one's (containerd's NewMatcher).
        What a list does not write is not asked: `linux/amd64` selects every os.version and os.features."""
        if (self.os, self.architecture, self.variant) != (other.os, other.architecture, other.variant):
            return False
        if self.os_version and not (other.os_version + ".").startswith(self.os_version.rstrip(".") + "."):
            return False
        return not self.os_features or set(other.os_features) <= set(self.os_features)


def normalize(
    os: str, architecture: str, variant: str = "", os_version: str = "", features: tuple[str, ...] = ()
) -> Platform:
    """containerd/platforms's normalizeOS and normalizeArch, as its matcher applies them to both sides."""
    os, architecture, variant = os.lower(), architecture.lower(), variant.lower()
    os = "darwin" if os == "macos" else os
    if architecture == "i386":
        architecture, variant = "386", ""
    elif architecture in ("x86_64", "x86-64", "amd64"):
        architecture, variant = "amd64", "" if variant == "v1" else variant
    elif architecture in ("aarch64", "arm64"):
        architecture = "arm64"
        variant = {"8": "", "v8": "", "v8.0": "", "9": "v9", "9.0": "v9", "v9.0": "v9"}.get(variant, variant)
    elif architecture == "armhf":
        architecture, variant = "arm", "v7"
    elif architecture == "armel":
        architecture, variant = "arm", "v6"
    elif architecture == "arm":
        variant = {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"}.get(variant, variant)
    return Platform(os, architecture, variant, os_version, tuple(sorted(set(features))))


def parse_platform(text: object) -> Platform:
    """A list's platform (`linux/amd64`, `linux/arm64/v8`, `windows(10.0.17763)/amd64`), normalised; raises
    PlatformError saying why it is not one."""
    if not isinstance(text, str):
        raise PlatformError(f"a platform is a string such as linux/amd64, not {type(text).__name__}")
    match = _PLATFORM.fullmatch(text.strip())
    if match is None:
        raise PlatformError(
            f"{text[:80]!r} is not a platform: <os>/<architecture>[/<variant>], such as linux/amd64 or "
            "linux/arm64/v8 (an os.version as windows(10.0.17763)/amd64)"
        )
    features = tuple(f for f in (match["features"] or "").split("+") if f)
    return normalize(match["os"], match["arch"], match["variant"] or "", match["version"] or "", features)


def parse_platforms(items: object) -> tuple[Platform, ...]:
    """A list of platforms, each once (in their canonical order); raises PlatformError naming the one that is not."""
    if isinstance(items, str):
        items = [p for p in items.split(",") if p.strip()]
    if not isinstance(items, list | tuple) or not items:
        raise PlatformError("platforms must be a non-empty list such as [linux/amd64, linux/arm64]")
    if len(items) > PLATFORMS_MAX:
        raise PlatformError(f"platforms names {len(items)} platforms (at most {PLATFORMS_MAX})")
    return tuple(sorted({parse_platform(p) for p in items}))


def platform_list(platforms: Iterable[Platform]) -> str:
    """The canonical text of a list of platforms (sorted, comma-separated), as the mirror's index records it."""
    return ",".join(str(p) for p in sorted(set(platforms)))


def descriptor_platform(descriptor: Mapping[str, object]) -> Platform | None:
    """The platform an index descriptor names, normalised; None when it names none (or not as the spec says)."""
    raw = descriptor.get("platform")
    if not isinstance(raw, dict):
        return None
    os, arch, variant = raw.get("os"), raw.get("architecture"), raw.get("variant", "")
    version, features = raw.get("os.version", ""), raw.get("os.features", [])
    if not all(isinstance(v, str) for v in (os, arch, variant, version)) or not isinstance(features, list):
        return None
    if not all(isinstance(f, str) for f in features):
        return None
    return normalize(str(os), str(arch), str(variant), str(version), tuple(str(f) for f in features))


def is_attestation(descriptor: Mapping[str, object]) -> bool:
    """Whether an index descriptor is one of Docker's build attestation manifests (not a platform's image)."""
    annotations = descriptor.get("annotations")
    return isinstance(annotations, dict) and annotations.get(ATTESTATION_TYPE) == "attestation-manifest"


@dataclass(frozen=True)
class Selected:
    """What a list's platforms keep of an index: the descriptors kept, in the index's order (each selected platform
    manifest, then the attestation manifests that describe one of them), and every platform the index lists."""

    manifests: tuple[dict[str, object], ...]
    platforms: tuple[Platform, ...]

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(str(m["digest"]) for m in self.manifests)


def select_platforms(index: object, wanted: Iterable[Platform]) -> Selected:
    """The descriptors of `index` (a parsed image index) whose platform one of `wanted` selects, with the attestation
    manifests that describe them, each once; raises PlatformError when it is no index of at most INDEX_ENTRIES_MAX
    descriptors."""
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or len(manifests) > INDEX_ENTRIES_MAX:
        raise PlatformError(f"not an index of at most {INDEX_ENTRIES_MAX} manifests")
    if not all(
        isinstance(m, dict) and isinstance(d := m.get("digest"), str) and _SHA256.fullmatch(d) for m in manifests
    ):
        raise PlatformError("the index lists something that is not a manifest descriptor with a sha256 digest")
    wanted = tuple(wanted)
    platforms: list[Platform] = []
    kept: dict[int, None] = {}  # positions, in the index's order
    selected: set[str] = set()
    described: dict[int, str] = {}
    for n, m in enumerate(manifests):
        if is_attestation(m):
            of = m["annotations"].get(ATTESTATION_OF)
            if isinstance(of, str):
                described[n] = of
            continue
        platform = descriptor_platform(m)
        if platform is None:
            continue
        platforms.append(platform)
        if any(w.matches(platform) for w in wanted) and m["digest"] not in selected:
            kept[n] = None
            selected.add(m["digest"])
    attestations = {n for n, of in described.items() if of in selected}
    seen: set[str] = set()
    chosen = []
    for n, m in enumerate(manifests):  # one descriptor per digest: the index lists each manifest once
        if (n in kept or n in attestations) and m["digest"] not in seen:
            seen.add(m["digest"])
            chosen.append(m)
    return Selected(tuple(chosen), tuple(dict.fromkeys(platforms)))


def filtered_index(selected: Selected, upstream_digest: str, wanted: Iterable[Platform]) -> bytes:
    """The index the mirror writes of the selected manifests of an upstream index: an OCI image index (the one kind
    with annotations) of those descriptors as upstream wrote them, annotated with the upstream digest and the
    platforms it was made from. The same selection of the same upstream index always makes the same bytes."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": list(selected.manifests),
        "annotations": {UPSTREAM_DIGEST: upstream_digest, PLATFORM_LIST: platform_list(wanted)},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def empty_index(upstream_digest: str, wanted: Iterable[Platform]) -> bytes:
    """What a build that found none of `wanted` in the upstream index leaves in the mirror, untagged, by digest: the
    mirror's index of nothing. Its digest follows from the upstream digest and the list alone, so the next check
    knows it and fails the entry without a build (the repository's expiry of untagged images ends it)."""
    return filtered_index(Selected((), ()), upstream_digest, wanted)


def filtered_from(index: object) -> tuple[str, str] | None:
    """(the upstream digest, the platform list) an index the mirror wrote records; None for any other manifest."""
    annotations = index.get("annotations") if isinstance(index, dict) else None
    if not isinstance(annotations, dict):
        return None
    upstream, platforms = annotations.get(UPSTREAM_DIGEST), annotations.get(PLATFORM_LIST)
    if not isinstance(upstream, str) or not _SHA256.fullmatch(upstream) or not isinstance(platforms, str):
        return None
    return upstream, platforms


def config_platform(config: object) -> Platform | None:
    """The platform an image's config names (its os, architecture, variant, os.version and os.features)."""
    return descriptor_platform({"platform": config}) if isinstance(config, dict) else None


#: the most platforms a reason names (an index lists at most a few dozen; its strings are upstream's)
SHOWN_PLATFORMS = 24


def describe_platforms(platforms: Iterable[Platform]) -> str:
    """Platforms as a person reads them in a reason: `linux/amd64, linux/arm64`, or `no platform`; upstream's
    strings, so each is cut to 80 characters and escaped, and at most SHOWN_PLATFORMS are named."""
    named = [ascii(str(p))[1:-1][:80] for p in platforms]
    more = f" and {len(named) - SHOWN_PLATFORMS} more" if len(named) > SHOWN_PLATFORMS else ""
    return ", ".join(named[:SHOWN_PLATFORMS]) + more or "no platform"

"""Image references: parse, validate against the distribution reference grammar, and normalise."""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
# Docker Hub's legacy aliases; every one of them means docker.io.
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

# The grammar of github.com/distribution/reference (reference.go), restricted to ASCII and to sha256 digests.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
REPOSITORY_PATH = rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]{{1,5}})?"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
DIGEST = r"sha256:[a-f0-9]{64}"
# ECR repository names (CreateRepository's pattern), 2 to 256 characters.
ECR_REPOSITORY = r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"

_PATH_RE = re.compile(REPOSITORY_PATH)
_DOMAIN_RE = re.compile(DOMAIN)
_TAG_RE = re.compile(TAG)
_DIGEST_RE = re.compile(DIGEST)
_ECR_REPOSITORY_RE = re.compile(ECR_REPOSITORY)

PATH_MAX = 255  # distribution/reference v0.6 RepositoryNameTotalLengthMax: the path, without the registry
HOST_MAX = 255
ECR_REPOSITORY_MAX = 256
REFERENCE_MAX = HOST_MAX + 1 + PATH_MAX + 1 + 128 + 1 + 71
# A bare 64-hex string is an image ID, not a name: upstream refuses it (ParseNormalizedNamed).
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")


class ReferenceError(ValueError):
    """A string that is not a valid image reference; the message says why."""


def is_digest(value: str) -> bool:
    return _DIGEST_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class ImageRef:
    """A normalised image reference: `registry/repository[:tag][@digest]`; at least one of tag and digest is set."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _check_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise ReferenceError(f"{what} must be a string, got {type(text).__name__}")
    if not text:
        raise ReferenceError(f"{what} is empty")
    if len(text) > REFERENCE_MAX:
        raise ReferenceError(f"{what} is {len(text)} characters long (at most {REFERENCE_MAX})")
    if not text.isascii():
        raise ReferenceError(f"{what} contains non-ASCII characters (look-alike letters are not allowed)")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ReferenceError(f"{what} contains whitespace or control characters")
    return text


def _split_tag(remainder: str) -> tuple[str, str | None]:
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        return remainder[:colon], remainder[colon + 1 :]
    return remainder, None


def has_tag_or_digest(text: str) -> bool:
    """Whether a reference string names a tag or a digest (`nginx:1`, `nginx@sha256:…`), not only a repository."""
    name, at, _ = text.partition("@")
    return bool(at) or _split_tag(name)[1] is not None


def parse_reference(text: object) -> ImageRef:
    """Parse `[registry/]repository[:tag][@sha256:digest]`, normalising Docker Hub names.

    A reference without tag and digest means `latest`. Raises ReferenceError with the reason.
    """
    text = _check_text(text, "image reference")
    if _IDENTIFIER_RE.fullmatch(text):
        raise ReferenceError("a 64-character hexadecimal string is an image ID, not a repository name")
    name_and_tag, at, digest = text.partition("@")
    if at and not is_digest(digest):
        raise ReferenceError(f"digest {digest[:80]!r} is not sha256: followed by 64 lower-case hex digits")
    name, tag = _split_tag(name_and_tag)
    if tag is not None and not _TAG_RE.fullmatch(tag):
        raise ReferenceError(f"tag {tag[:80]!r} is not valid (letters, digits, '_', '.', '-'; at most 128)")

    first, slash, rest = name.partition("/")
    # As upstream's splitDockerDomain: a first component with '.' or ':', `localhost`, or upper case is a host.
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, path = first, rest
        if not _DOMAIN_RE.fullmatch(registry):
            raise ReferenceError(f"registry host {registry[:80]!r} is not a valid host name")
        registry = registry.lower()
    else:
        registry, path = DOCKER_HUB, name
    if registry in _DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"

    if not path:
        raise ReferenceError("repository name is empty")
    if path != path.lower() and _PATH_RE.fullmatch(path.lower()):
        raise ReferenceError(f"repository name {path[:80]!r} must be lower case")
    if ".." in path.split("/") or not _PATH_RE.fullmatch(path):
        raise ReferenceError(
            f"repository name {path[:80]!r} is not valid (lower-case letters and digits, separated by "
            "'.', '_', '__' or '-', in '/'-separated components)"
        )
    if len(path) > PATH_MAX:
        raise ReferenceError(f"repository name is longer than {PATH_MAX} characters")
    if tag is None and not at:
        tag = "latest"
    return ImageRef(registry, path, tag, digest if at else None)


@dataclass(frozen=True)
class Target:
    """An ECR repository and the tag to write there."""

    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


def check_repository_name(repository: str) -> str:
    if not 2 <= len(repository) <= ECR_REPOSITORY_MAX:
        raise ReferenceError(f"repository {repository[:80]!r} must be 2 to {ECR_REPOSITORY_MAX} characters long")
    if not _ECR_REPOSITORY_RE.fullmatch(repository):
        raise ReferenceError(f"repository {repository[:80]!r} is not a valid ECR repository name")
    return repository


def parse_target(text: object, *, default_tag: str | None) -> Target:
    """Parse an ECR target `repository[:tag]`; without a tag, the source's tag (`default_tag`) is used."""
    text = _check_text(text, "target")
    repository, tag = _split_tag(text)
    if tag is not None and not _TAG_RE.fullmatch(tag):
        raise ReferenceError(f"target tag {tag[:80]!r} is not valid (letters, digits, '_', '.', '-'; at most 128)")
    tag = tag or default_tag
    if tag is None:
        raise ReferenceError("a source pinned only by digest needs a target with a tag (untagged images expire)")
    return Target(check_repository_name(repository), tag)


@dataclass(frozen=True)
class Naming:
    """Where images go in ECR: `<prefix>/<path>` for Docker Hub, `<prefix>/<host>/<path>` for other registries, and
    `<upstream prefix>/<path>` for a registry mapped in UPSTREAM_PREFIXES (the names ECR's pull-through cache gives,
    `ghcr/org/app`, for teams migrating from one)."""

    prefix: str
    upstream: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, prefix: str | Naming) -> Naming:
        return prefix if isinstance(prefix, Naming) else cls(prefix)

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Every prefix the mirror writes under."""
        return (self.prefix, *(p for _, p in self.upstream))

    def allows(self, repository: str) -> bool:
        return any(repository.startswith(p + "/") for p in self.prefixes)

    def default_target(self, source: ImageRef) -> Target:
        mapped = dict(self.upstream).get(source.registry)
        if mapped is None:
            return default_target(source, self.prefix)
        if source.tag is None:
            raise ReferenceError("a source pinned only by digest needs a target with a tag (untagged images expire)")
        return Target(check_repository_name(f"{mapped}/{source.repository}"), source.tag)


def default_target(source: ImageRef, prefix: str) -> Target:
    """`<prefix>/<path>` for Docker Hub, `<prefix>/<host>/<path>` elsewhere; the source's tag."""
    if source.registry == DOCKER_HUB:
        repository = f"{prefix}/{source.repository}"
    else:
        # ECR names cannot hold ':' or brackets: a port becomes '-' ("localhost-5000").
        host = re.sub(r"[^a-z0-9.]+", "-", source.registry).strip("-.")
        repository = f"{prefix}/{host}/{source.repository}"
    if source.tag is None:
        raise ReferenceError("a source pinned only by digest needs a target with a tag (untagged images expire)")
    return Target(check_repository_name(repository), source.tag)

"""The function's settings, read once from the environment into a frozen value; nothing else reads os.environ."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .references import DOCKER_HUB, DOMAIN, ECR_REPOSITORY, Naming
from .trust import Platform, PlatformError, UntrustedURLError, is_loopback, parse_platforms, parse_url

_PREFIX_RE = re.compile(ECR_REPOSITORY)
_HOST_RE = re.compile(DOMAIN)
# A full ARN, with the six characters Secrets Manager appends: IAM grants access to exactly that resource.
_SECRET_ARN_RE = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}"
)
_S3_LOCATION_RE = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)")


#: the public registries people mirror; SOURCE_REGISTRIES replaces the list (the hosts of REGISTRY_ENDPOINTS join it)
DEFAULT_SOURCE_REGISTRIES = (
    "docker.io",
    "ghcr.io",
    "quay.io",
    "public.ecr.aws",
    "registry.k8s.io",
    "gcr.io",
    "mcr.microsoft.com",
    "registry.gitlab.com",
    "cgr.dev",
)


class ConfigurationError(Exception):
    """The deployment is misconfigured: the run stops before any repository is created or build started."""


def parse_endpoint(host: str, url: str) -> str:
    """Validate a registry base URL: https, or plain http only for loopback; no path, query or credentials; in the
    one form `mirror.trust` reads (the copy program derives a copy's registry from it). Returns `scheme://host[:port]`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"REGISTRY_ENDPOINTS[{host!r}]: {url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise ConfigurationError(f"REGISTRY_ENDPOINTS[{host!r}]: credentials do not belong in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(f"REGISTRY_ENDPOINTS[{host!r}]: {url!r} must be a base URL without a path")
    try:
        parsed = parse_url(url)
    except UntrustedURLError as e:
        raise ConfigurationError(f"REGISTRY_ENDPOINTS[{host!r}]: {e}") from None
    if parsed.scheme == "http" and not is_loopback(parsed.host):
        raise ConfigurationError(
            f"REGISTRY_ENDPOINTS[{host!r}]: plain http is allowed only for loopback addresses; use https"
        )
    return parsed.origin


def _host_port(endpoint: str) -> tuple[str, int]:
    url = parse_url(endpoint)
    return url.host, url.port if url.port is not None else (443 if url.scheme == "https" else 80)


def _distinct_hosts(endpoints: Mapping[str, str]) -> None:
    """A copy's registry is derived from the host[:port] it reads from (`mirror.trust.registry_of`), and a 429 holds
    a host[:port] for every request to it: two registries on one would be confused for each other."""
    owner: dict[tuple[str, int], str] = {}
    for host, endpoint in sorted(endpoints.items()):
        other = owner.setdefault(_host_port(endpoint), host)
        if other != host:
            raise ConfigurationError(
                f"REGISTRY_ENDPOINTS: {other!r} and {host!r} share the endpoint host {parse_url(endpoint).netloc}; "
                "give each registry its own host:port"
            )


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise ConfigurationError(f"{name} must be true or false, got {raw[:40]!r}")
    return raw == "true"


def _platforms(raw: str) -> tuple[Platform, ...]:
    if not raw:
        return ()
    try:
        return parse_platforms(raw)
    except PlatformError as e:
        raise ConfigurationError(f"PLATFORMS: {e} (comma-separated, such as linux/amd64,linux/arm64)") from None


#: the name prefix of REGISTRY_CREDENTIALS secrets: IAM grants GetSecretValue on it alone (ECR's pull-through cache
#: does the same with ecr-pullthroughcache/), since a JSON map cannot become exact IAM resources
SECRET_PREFIX = "ecr-mirror/"  # noqa: S105 (a name prefix, not a password)


def _host_map(raw: str, name: str, values: str) -> dict[str, str]:
    """A setting that is a JSON object of registry host -> string (hosts lower case, index.docker.io as docker.io)."""
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"{name} is not valid JSON: {e.msg}") from None
    if not isinstance(parsed, dict):
        raise ConfigurationError(f"{name} must be a JSON object of registry host -> {values}")
    found: dict[str, str] = {}
    for host, value in parsed.items():
        if not isinstance(host, str) or not _HOST_RE.fullmatch(host) or not isinstance(value, str):
            raise ConfigurationError(f"{name}[{str(host)[:100]!r}] must map a registry host to {values}")
        host = host.lower()
        found[DOCKER_HUB if host == "index.docker.io" else host] = value
    return found


def _credentials_map(raw: str) -> dict[str, str]:
    """REGISTRY_CREDENTIALS: `{"ghcr.io": "arn:aws:secretsmanager:…:secret:ecr-mirror/ghcr-AbCdEf"}`."""
    found = _host_map(raw, "REGISTRY_CREDENTIALS", "a secret ARN")
    for host, arn in found.items():
        if not _SECRET_ARN_RE.fullmatch(arn):
            raise ConfigurationError(
                f"REGISTRY_CREDENTIALS[{host!r}] is not the full ARN of a Secrets Manager secret "
                "(…:secret:<name>-AbCdEf)"
            )
        if not arn.split(":secret:", 1)[1].startswith(SECRET_PREFIX):
            raise ConfigurationError(
                f"REGISTRY_CREDENTIALS[{host!r}]: the secret's name must start with {SECRET_PREFIX} (the function may "
                "read only those)"
            )
    return found


def _upstream_prefixes(raw: str, target_prefix: str) -> dict[str, str]:
    """UPSTREAM_PREFIXES: `{"ghcr.io": "ghcr", "quay.io": "quay"}`, ECR pull-through cache's names. Prefixes may not
    overlap each other or TARGET_PREFIX: each repository name must belong to one naming rule."""
    found: dict[str, str] = {}
    taken = [target_prefix]
    for host, mapped in _host_map(raw, "UPSTREAM_PREFIXES", "a repository prefix").items():
        if host == DOCKER_HUB:
            raise ConfigurationError("UPSTREAM_PREFIXES: Docker Hub images go under TARGET_PREFIX (set it instead)")
        mapped = mapped.strip("/")
        if not _PREFIX_RE.fullmatch(mapped) or len(mapped) > 200:
            raise ConfigurationError(
                f"UPSTREAM_PREFIXES[{host!r}]: {mapped[:100]!r} is not a valid ECR repository prefix"
            )
        for other in taken:
            if f"{mapped}/".startswith(f"{other}/") or f"{other}/".startswith(f"{mapped}/"):
                raise ConfigurationError(f"UPSTREAM_PREFIXES[{host!r}]: {mapped!r} overlaps the prefix {other!r}")
        taken.append(mapped)
        found[host] = mapped
    return found


@dataclass(frozen=True)
class Settings:
    codebuild_project: str
    image_list: str = "images.yaml"
    target_prefix: str = "mirror"
    images_per_build: int = 20
    max_concurrency: int = 8
    request_timeout: float = 10.0
    registry_endpoints: Mapping[str, str] = field(default_factory=dict)
    dockerhub_secret_arn: str | None = None
    registry_credentials: Mapping[str, str] = field(default_factory=dict)
    upstream_prefixes: Mapping[str, str] = field(default_factory=dict)
    report_location: str | None = None
    source_registries: frozenset[str] = frozenset(DEFAULT_SOURCE_REGISTRIES)
    dockerhub_pull_reserve: int = 10
    #: whether the signatures, attestations and SBOMs that refer to an image are mirrored with it (COPY_ARTIFACTS)
    copy_artifacts: bool = True
    #: the platforms every entry that names none of its own copies (PLATFORMS); empty: every platform, as upstream
    platforms: tuple[Platform, ...] = ()

    @property
    def dockerhub_credentials(self) -> bool:
        """Whether Docker Hub is asked with an account's credentials: its quota is then the account's, the same
        figure for the function and the builds."""
        return bool(self.dockerhub_secret_arn) or DOCKER_HUB in self.registry_credentials

    @property
    def naming(self) -> Naming:
        return Naming(self.target_prefix, tuple(sorted(self.upstream_prefixes.items())))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting (from os.environ unless `env` is given); errors name the setting."""
        env = os.environ if env is None else env
        project = env.get("CODEBUILD_PROJECT", "").strip()
        if not project:
            raise ConfigurationError("CODEBUILD_PROJECT is not set: the function cannot start builds")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{1,254}", project):
            raise ConfigurationError(f"CODEBUILD_PROJECT {project!r} is not a valid project name")

        prefix = env.get("TARGET_PREFIX", "").strip().strip("/") or "mirror"
        if not _PREFIX_RE.fullmatch(prefix) or len(prefix) > 200:
            raise ConfigurationError(f"TARGET_PREFIX {prefix!r} is not a valid ECR repository prefix")

        image_list = env.get("IMAGE_LIST", "").strip() or "images.yaml"
        if image_list.startswith("s3://") and not _S3_LOCATION_RE.fullmatch(image_list):
            raise ConfigurationError(f"IMAGE_LIST {image_list!r} is not s3://bucket/key")
        if image_list.startswith("ssm:") and not re.fullmatch(r"ssm:/[A-Za-z0-9_.\-/]{1,2047}", image_list):
            raise ConfigurationError(f"IMAGE_LIST {image_list!r} is not ssm:/parameter/name")

        endpoints: dict[str, str] = {}
        raw_endpoints = env.get("REGISTRY_ENDPOINTS", "").strip()
        if raw_endpoints:
            try:
                parsed = json.loads(raw_endpoints)
            except json.JSONDecodeError as e:
                raise ConfigurationError(f"REGISTRY_ENDPOINTS is not valid JSON: {e.msg}") from None
            if not isinstance(parsed, dict):
                raise ConfigurationError("REGISTRY_ENDPOINTS must be a JSON object of registry host -> base URL")
            for host, url in parsed.items():
                if not isinstance(url, str) or not _HOST_RE.fullmatch(host):
                    raise ConfigurationError(f"REGISTRY_ENDPOINTS[{host!r}] must map a registry host to a URL")
                host = host.lower()
                endpoints[DOCKER_HUB if host == "index.docker.io" else host] = parse_endpoint(host, url)
            _distinct_hosts(endpoints)

        secret = env.get("DOCKERHUB_SECRET_ARN", "").strip() or None
        if secret and not _SECRET_ARN_RE.fullmatch(secret):
            raise ConfigurationError(
                "DOCKERHUB_SECRET_ARN is not the full ARN of a Secrets Manager secret (…:secret:<name>-AbCdEf)"
            )

        credentials = _credentials_map(env.get("REGISTRY_CREDENTIALS", "").strip())
        if secret and DOCKER_HUB in credentials:
            raise ConfigurationError("docker.io has a secret in both DOCKERHUB_SECRET_ARN and REGISTRY_CREDENTIALS")

        upstream = _upstream_prefixes(env.get("UPSTREAM_PREFIXES", "").strip(), prefix)

        sources = set(DEFAULT_SOURCE_REGISTRIES)
        raw_sources = env.get("SOURCE_REGISTRIES", "").strip()
        if raw_sources:
            sources = set()
            for host in re.split(r"[\s,]+", raw_sources):
                if host and not _HOST_RE.fullmatch(host):
                    raise ConfigurationError(f"SOURCE_REGISTRIES: {host[:100]!r} is not a registry host")
                if host:
                    sources.add(DOCKER_HUB if host.lower() == "index.docker.io" else host.lower())
        sources |= set(endpoints) | set(credentials)

        report = env.get("REPORT_LOCATION", "").strip() or None
        if report and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9_.\-/]*)?", report):
            raise ConfigurationError(f"REPORT_LOCATION {report!r} is not s3://bucket[/prefix]")

        return cls(
            codebuild_project=project,
            image_list=image_list,
            target_prefix=prefix,
            images_per_build=_int(env, "IMAGES_PER_BUILD", 20, 1, 100),
            max_concurrency=_int(env, "MAX_CONCURRENCY", 8, 1, 64),
            request_timeout=_float(env, "REQUEST_TIMEOUT_SECONDS", 10.0, 0.1, 120.0),
            registry_endpoints=endpoints,
            dockerhub_secret_arn=secret,
            registry_credentials=credentials,
            upstream_prefixes=upstream,
            source_registries=frozenset(sources),
            report_location=report,
            dockerhub_pull_reserve=_int(env, "DOCKERHUB_PULL_RESERVE", 10, 0, 100_000),
            copy_artifacts=_bool(env, "COPY_ARTIFACTS", True),
            platforms=_platforms(env.get("PLATFORMS", "").strip()),
        )

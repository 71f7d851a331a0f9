"""A small OCI Distribution client: manifest digests by HEAD, auth discovered from challenges; knows no cloud."""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests

from ..references import TAG, is_digest
from ..trust import URL, UntrustedURLError, endpoint_url, parse_url
from .auth import Challenge, Token, basic_auth, fetch_token, parse_challenge, vet_realm
from .backoff import RetryPolicy
from .errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    NotFoundOrDeniedError,
    RegistryConnectionError,
    TooLargeError,
    UnsupportedError,
    UpstreamError,
)
from .hosts import Credential, HostConfig
from .httplink import next_link, next_page
from .limitread import BODY_CAP
from .ratelimit import RateLimit
from .redirects import REDIRECTS, follow, repository_in
from .transport import Reply, Transport

__all__ = ["MANIFEST_ACCEPT", "ManifestHead", "RegistryClient", "default_base_url", "next_link"]

# All four, always: without them a registry answers 404 for OCI content or down-converts to a schema1 manifest
# whose digest differs from the one a client pulls (docker/hub-feedback#2391).
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)
#: tag listing: asked per page, pages followed by their Link header; all of it bounded
TAGS_PAGE = 100
TAGS_MAX_PAGES = 100
TAGS_MAX = 10_000
#: Docker Hub has been seen ignoring `n` and sending thousands of tags at once (docker/hub-feedback#1960)
TAGS_BODY_CAP = 2 * 2**20
#: the most manifests an index may list before it is not believed (a real one lists a few dozen platforms)
INDEX_MAX = 1000
#: the most of a blob read (an image's config, which a long history or many labels grow past the body cap)
BLOB_CAP = 2**20
_TAG_RE = re.compile(TAG)


@dataclass(frozen=True)
class ManifestHead:
    """What a HEAD of a manifest tells: its digest, and whether it is an index (None: the type was not given)."""

    digest: str
    index: bool | None


def default_base_url(host: str) -> str:
    """The base URL of a registry no endpoint is configured for (`mirror.trust.endpoint_url`'s rule)."""
    return endpoint_url(host, {})


def count_manifests(body: bytes, what: str) -> int:
    """How many manifests a copy of this manifest fetches: an index and each manifest it lists, or one. Strict: a
    JSON object of schemaVersion 1 or 2 whose `manifests`, if present, is a bounded list of descriptors with a
    digest; anything else is BadResponseError."""
    try:
        manifest = json.loads(body)
    except (ValueError, RecursionError):
        raise BadResponseError(f"{what}: the manifest is not JSON") from None
    if not isinstance(manifest, dict):
        raise BadResponseError(f"{what}: the manifest is not a JSON object")
    version = manifest.get("schemaVersion")
    if type(version) is not int or version not in (1, 2):
        raise BadResponseError(f"{what}: the manifest has no schemaVersion 1 or 2")
    manifests = manifest.get("manifests")
    if manifests is None:
        return 1
    if not isinstance(manifests, list):
        raise BadResponseError(f"{what}: the index's 'manifests' is not a list")
    if len(manifests) > INDEX_MAX:
        raise BadResponseError(f"{what}: the index lists more than {INDEX_MAX} manifests")
    if not all(isinstance(m, dict) and isinstance(m.get("digest"), str) and is_digest(m["digest"]) for m in manifests):
        raise BadResponseError(f"{what}: the index lists something that is not a manifest descriptor")
    return 1 + len(manifests)


class RegistryClient:
    """Asks registries for manifest digests; one pooled transport, bounded retries, never past the deadline.

    `remaining_seconds` is the time this client's requests may still use (the run's budget has kept back its own
    margins); no request or backoff is started that would end after it. `session` replaces the HTTP session
    (tests); its connections are then cut at their limit only if it mounts `watchdog.WatchedAdapter`.
    """

    def __init__(
        self,
        *,
        endpoints: Mapping[str, str] | None = None,
        credentials: Mapping[str, Credential] | None = None,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        pool_size: int = 8,
        remaining_seconds: Callable[[], float] = lambda: math.inf,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self._endpoints = dict(endpoints or {})
        self._credentials = dict(credentials or {})
        self._clock = clock
        self._transport = Transport(
            RetryPolicy(timeout=timeout, max_attempts=max_attempts, backoff=backoff),
            pool_size=pool_size,
            remaining_seconds=remaining_seconds,
            sleep=sleep,
            clock=clock,
            session=session,
        )
        self._lock = threading.Lock()
        self._hosts: dict[str, HostConfig] = {}
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str], Token] = {}
        self._token_locks: dict[tuple[str, str], threading.Lock] = {}
        #: registries whose token realm is on another host: asked without their credentials
        self._withheld: dict[str, str] = {}
        #: hosts a redirect led to that no endpoint names, by origin
        self._hops: dict[str, HostConfig] = {}

    @property
    def requests_sent(self) -> int:
        return self._transport.requests_sent

    def close(self) -> None:
        self._transport.close()

    def _host(self, name: str) -> HostConfig:
        """The registry `name` as requests reach it, resolved once."""
        host = self._hosts.get(name)
        if host is None:
            base = endpoint_url(name, self._endpoints)
            try:
                url = parse_url(base)
            except UntrustedURLError:
                raise RegistryConnectionError(f"{name[:100]}: {base[:100]!r} is not a URL requests can go to") from None
            host = self._config(name, url, self._credentials.get(name))
            with self._lock:
                host = self._hosts.setdefault(name, host)
        return host

    def _config(self, name: str, url: URL, credential: Credential | None) -> HostConfig:
        return HostConfig(name, url.origin, url.netloc, credential, self._transport.backoff(url.netloc))

    def base_url(self, host: str) -> str:
        return self._host(host).base_url

    def location(self, host: str) -> str:
        """The host[:port] a copy tool must reach for `host` (the mapped endpoint's, where one is configured)."""
        return self._host(host).netloc if host in self._endpoints else host

    def rate_limits(self) -> dict[str, RateLimit]:
        """Per registry host, the limit and the lowest remaining count seen in this run."""
        return self._transport.rate_limits()

    def manifest_digest(self, host: str, repository: str, reference: str) -> str:
        """The digest of `repository:reference` on `host`, learnt with HEAD (not a counted pull on Docker Hub)."""
        return self.manifest_head(host, repository, reference).digest

    def manifest_head(self, host: str, repository: str, reference: str) -> ManifestHead:
        """The digest of `repository:reference` on `host` and whether it is an index, learnt with HEAD (not a
        counted pull on Docker Hub)."""
        registry = self._host(host)
        url = f"{registry.base_url}/v2/{repository}/manifests/{reference}"
        what = f"{host}/{repository}:{reference}" if not is_digest(reference) else f"{host}/{repository}@{reference}"
        reply, _ = self._request(registry, repository, "HEAD", url, {"Accept": MANIFEST_ACCEPT}, what)
        digest = reply.headers.get("Docker-Content-Digest")
        if digest is None:
            raise BadResponseError(f"{what}: the registry answered without a Docker-Content-Digest header")
        digest = digest.strip()
        if not is_digest(digest):
            raise BadResponseError(f"{what}: malformed Docker-Content-Digest {digest[:80]!r}")
        media_type = (reply.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        return ManifestHead(digest, None if not media_type else media_type in INDEX_TYPES)

    def manifest(self, host: str, repository: str, reference: str) -> bytes:
        """The manifest `repository:reference` as stored, its digest checked where `reference` is one. A GET: meant
        for this account's ECR, or a registry that counts no pulls (never for Docker Hub)."""
        registry = self._host(host)
        url = f"{registry.base_url}/v2/{repository}/manifests/{reference}"
        what = f"{host}/{repository}@{reference}" if is_digest(reference) else f"{host}/{repository}:{reference}"
        reply, _ = self._request(registry, repository, "GET", url, {"Accept": MANIFEST_ACCEPT}, what)
        if is_digest(reference) and "sha256:" + hashlib.sha256(reply.body).hexdigest() != reference:
            raise BadResponseError(f"{what}: the registry served a manifest of another digest")
        return reply.body

    def blob(self, host: str, repository: str, digest: str) -> bytes:
        """The blob `repository@digest` (an image's config: a few KiB, at most BLOB_CAP), its digest checked. A
        registry may redirect it to storage on another host (ECR to S3), followed by the trust rule without the
        registry's credentials. Blobs are no pulls on Docker Hub, which counts manifests."""
        registry = self._host(host)
        url = f"{registry.base_url}/v2/{repository}/blobs/{digest}"
        what = f"{host}/{repository} blob {digest}"
        reply, _ = self._request(registry, repository, "GET", url, {}, what, cap=BLOB_CAP)
        if "sha256:" + hashlib.sha256(reply.body).hexdigest() != digest:
            raise BadResponseError(f"{what}: the registry served a blob of another digest")
        return reply.body

    def manifest_count(self, host: str, repository: str, digest: str) -> int:
        """How many manifests a copy of `repository@digest` fetches: an index and each of its manifests, or one.
        A GET (`manifest`). A manifest of any other shape, or over the body cap, is a RegistryError: the count is
        then unknown."""
        return count_manifests(self.manifest(host, repository, digest), f"{host}/{repository}@{digest}")

    def referrers(self, host: str, repository: str, digest: str) -> bytes | None:
        """The index of the manifests that refer to `repository@digest` (OCI 1.1's referrers API: a listing, not a
        pull), or None where the registry has no such API (it answers 404 or 405; the spec says a registry that
        has it never answers 404). One page: a registry that pages it names the rest in a `Link`, not followed."""
        registry = self._host(host)
        url = f"{registry.base_url}/v2/{repository}/referrers/{digest}"
        what = f"{host}/{repository}@{digest} referrers"
        accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
        try:
            reply, _ = self._request(registry, repository, "GET", url, accept, what)
        except (NotFoundError, UnsupportedError):
            return None
        return reply.body

    def list_tags(self, host: str, repository: str) -> list[str]:
        """Every tag of `repository` on `host`, page by page (`n`, then the `Link: <…>; rel="next"` header).

        Bounded: at most TAGS_MAX_PAGES pages and TAGS_MAX tags; a next page must stay on the host that answered
        the page before (after a redirect, the backend). Not a counted pull on Docker Hub, but each page is a
        request with the usual retries, redirects and deadline.
        """
        registry = self._host(host)
        url = f"{registry.base_url}/v2/{repository}/tags/list?n={TAGS_PAGE}"
        what = f"{host}/{repository} tags"
        tags: list[str] = []
        seen = {url}
        accept = {"Accept": "application/json"}
        for _ in range(TAGS_MAX_PAGES):
            reply, answered = self._request(registry, repository, "GET", url, accept, what, TAGS_BODY_CAP)
            try:
                page = json.loads(reply.body).get("tags") or []
            except (ValueError, AttributeError, RecursionError):
                raise BadResponseError(f"{what}: the tag list is not JSON") from None
            if not isinstance(page, list):
                raise BadResponseError(f"{what}: the tag list's 'tags' is not a list")
            tags.extend(t for t in page if isinstance(t, str) and _TAG_RE.fullmatch(t))
            if len(tags) > TAGS_MAX:
                raise TooLargeError(f"{what}: more than {TAGS_MAX} tags")
            following = next_page(reply.url, reply.headers.get("Link"), answered.base_url, what)
            if following is None:
                return list(dict.fromkeys(tags))
            if following in seen:
                raise BadResponseError(f"{what}: the Link header points back to a page already read")
            seen.add(following)
            url = following
        raise TooLargeError(f"{what}: more than {TAGS_MAX_PAGES} pages of tags")

    # -- redirects ----------------------------------------------------------------------------------------------

    def _request(
        self,
        registry: HostConfig,
        repository: str,
        method: str,
        url: str,
        headers: dict[str, str],
        what: str,
        cap: int = BODY_CAP,
    ) -> tuple[Reply, HostConfig]:
        """The answer to `url` after the redirects the trust rule allows, and the host that gave it. Each hop is
        asked with its own host's credentials only (none for a host nothing is configured for). The hops after the
        first end within one request timeout of the first's start (the first has its own, and its retries)."""
        until = self._clock() + self._transport.policy.timeout
        answered = registry

        def send(target: str, hop: URL | None) -> Reply:
            nonlocal answered
            if hop is None and target.startswith(registry.base_url + "/"):  # the registry's own URL: no parse
                return self._authorized(registry, repository, method, target, headers, what, cap)
            if hop is None:  # a next page on the host a redirect led to
                try:
                    hop = parse_url(target)
                except UntrustedURLError as e:
                    raise BadResponseError(f"{what}: {e}") from None
            answered = self._hop_host(registry, hop)
            scope = repository if answered is registry else repository_in(hop.target) or repository
            return self._authorized(answered, scope, method, target, headers, what, cap, until)

        reply = follow(url, send, self._endpoints.values(), what)
        return reply, answered

    def _hop_host(self, registry: HostConfig, url: URL) -> HostConfig:
        """The host a hop goes to: the registry itself, a registry whose endpoint is there, or a host nothing is
        configured for (credentials only if some are configured for that very host)."""
        if url.origin == registry.base_url:
            return registry
        for name, base in self._endpoints.items():
            try:
                if parse_url(base).origin == url.origin:
                    return self._host(name)
            except UntrustedURLError:
                continue
        with self._lock:
            host = self._hops.get(url.origin)
        if host is None:
            host = self._config(url.netloc, url, self._credentials.get(url.netloc))
            with self._lock:
                host = self._hops.setdefault(url.origin, host)
        return host

    # -- auth ---------------------------------------------------------------------------------------------------

    def _authorized(
        self,
        host: HostConfig,
        repository: str,
        method: str,
        url: str,
        headers: dict[str, str],
        what: str,
        cap: int = BODY_CAP,
        until: float | None = None,
    ) -> Reply:
        try:
            return self._authorized_once(host, repository, method, url, headers, what, cap, until)
        except AuthError as e:
            realm_host = self._withheld.get(host.name)
            if realm_host is None:
                raise
            e.message += (
                f" (the token realm is on {realm_host}, not on {host.name}'s endpoint, so it was asked without the "
                f"credentials configured for {host.name})"
            )
            raise

    def _authorized_once(
        self,
        host: HostConfig,
        repository: str,
        method: str,
        url: str,
        headers: dict[str, str],
        what: str,
        cap: int,
        until: float | None,
    ) -> Reply:
        scope = f"repository:{repository}:pull"
        for attempt in range(2):
            auth = self._auth_header(host, scope)
            request_headers = dict(headers, **({"Authorization": auth} if auth else {}))
            reply = self._transport.send(method, url, request_headers, what, host=host, cap=cap, until=until)
            if reply.status != 401:
                return self._check(reply, what)
            if attempt:
                break
            challenge = parse_challenge(reply.headers.get("WWW-Authenticate", ""))
            if challenge.scheme not in ("bearer", "basic"):
                raise AuthError(f"{what}: unsupported authentication challenge {challenge.scheme[:40]!r}")
            with self._lock:
                self._challenges[host.name] = challenge
                cached = self._tokens.get((host.name, scope))
                # Drop the token only if it is the one just refused; another thread may have fetched a good one.
                if cached is not None and auth == f"Bearer {cached.value}":
                    del self._tokens[(host.name, scope)]
            if challenge.scheme == "basic" and host.credential is None:
                raise AuthError(f"{what}: the registry requires credentials and none are configured for {host.name}")
        if challenge.scheme == "bearer":
            # Docker Hub answers 401, not 404, for a repository that does not exist (distribution#2376).
            raise NotFoundOrDeniedError(f"{what}: HTTP 401 even with a fresh token (no such repository, or private)")
        raise AuthError(f"{what}: credentials were rejected (HTTP 401)")

    def _auth_header(self, host: HostConfig, scope: str) -> str | None:
        """The Authorization value for a request, once the host's challenge is known (saves a 401 per image)."""
        key = (host.name, scope)
        with self._lock:
            challenge = self._challenges.get(host.name)
            token = self._tokens.get(key)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return basic_auth(host.credential) if host.credential else None
        if token and token.expires_at > self._clock():
            return f"Bearer {token.value}"
        # One fetch per scope: concurrent checks of one repository wait for it rather than each asking.
        with self._lock:
            scope_lock = self._token_locks.setdefault(key, threading.Lock())
        with scope_lock:
            with self._lock:
                token = self._tokens.get(key)
            if token is None or token.expires_at <= self._clock():
                token = self._fetch_token(host, challenge, scope)
                with self._lock:
                    self._tokens[key] = token
        return f"Bearer {token.value}"

    def _fetch_token(self, host: HostConfig, challenge: Challenge, scope: str) -> Token:
        """A token from the challenge's realm, once it is vetted: refused outright (AuthError, nothing sent), asked
        anonymously when it is on another host, or asked with the registry's credential."""
        realm, takes_credentials = vet_realm(host.name, host.base_url, challenge.params.get("realm", ""))
        credential = host.credential if takes_credentials else None
        if host.credential is not None and credential is None:
            with self._lock:
                self._withheld[host.name] = realm.host[:100]
        realm_host = host if realm.netloc == host.netloc else self._config(realm.netloc, realm, None)
        now = self._clock()
        return fetch_token(
            self._transport,
            host.name,
            realm,
            realm_host,
            challenge,
            scope,
            credential,
            now=now,
            endpoints=list(self._endpoints.values()),
            hop_host=lambda url: self._hop_host(realm_host, url),
        )

    @staticmethod
    def _check(reply: Reply, what: str) -> Reply:
        status = reply.status
        if 200 <= status < 300 or status in REDIRECTS:  # a redirect is followed, or refused, by `_request`
            return reply
        if status == 404:
            raise NotFoundError(f"{what} does not exist")
        if status in (401, 403):
            raise AuthError(f"{what}: access denied (HTTP {status})")
        if status == 405:
            raise UnsupportedError(f"{what}: the registry does not offer this (HTTP 405)")
        raise UpstreamError(f"{what}: unexpected HTTP {status}")

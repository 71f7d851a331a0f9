"""A small OCI Distribution client: manifest digests by HEAD, auth discovered from challenges; knows no cloud."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from ..references import DOCKER_HUB, is_digest
from .auth import Challenge, Credential, Token, basic_auth, fetch_token, parse_challenge, realm_takes_credentials
from .errors import AuthError, BadResponseError, NotFoundError, NotFoundOrDeniedError, UpstreamError
from .transport import RateLimit, Reply, Transport

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
DOCKER_HUB_URL = "https://registry-1.docker.io"


def default_base_url(host: str) -> str:
    return DOCKER_HUB_URL if host == DOCKER_HUB else f"https://{host}"


class RegistryClient:
    """Asks registries for manifest digests; one pooled transport, bounded retries, never past the deadline.

    `remaining_seconds` tells how long the caller may still run (the Lambda's remaining time); no request or
    backoff is started that would end after it.
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
    ) -> None:
        self._endpoints = dict(endpoints or {})
        self._credentials = dict(credentials or {})
        self._clock = clock
        self._transport = Transport(
            timeout=timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            pool_size=pool_size,
            remaining_seconds=remaining_seconds,
            sleep=sleep,
            name_of=self._registry_of,
        )
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str], Token] = {}
        self._token_locks: dict[tuple[str, str], threading.Lock] = {}
        #: registries whose token realm is on another host: asked without their credentials
        self._withheld: dict[str, str] = {}

    @property
    def requests_sent(self) -> int:
        return self._transport.requests_sent

    def close(self) -> None:
        self._transport.close()

    def base_url(self, host: str) -> str:
        return self._endpoints.get(host) or default_base_url(host)

    def location(self, host: str) -> str:
        """The host[:port] a copy tool must reach for `host` (the mapped endpoint's, where one is configured)."""
        mapped = self._endpoints.get(host)
        return urlsplit(mapped).netloc if mapped else host

    def rate_limits(self) -> dict[str, RateLimit]:
        """Per registry host, the limit and the lowest remaining count seen in this run."""
        return self._transport.rate_limits()

    def _registry_of(self, url: str) -> str:
        """Rate limits are reported under the registry's name, not its endpoint URL."""
        host = next((h for h, base in self._endpoints.items() if url.startswith(base + "/")), None)
        if host is not None:
            return host
        netloc = urlsplit(url).netloc
        return DOCKER_HUB if netloc == urlsplit(DOCKER_HUB_URL).netloc else netloc

    def manifest_digest(self, host: str, repository: str, reference: str) -> str:
        """The digest of `repository:reference` on `host`, learnt with HEAD (not a counted pull on Docker Hub)."""
        url = f"{self.base_url(host)}/v2/{repository}/manifests/{reference}"
        what = f"{host}/{repository}:{reference}" if not is_digest(reference) else f"{host}/{repository}@{reference}"
        reply = self._authorized(host, repository, "HEAD", url, {"Accept": MANIFEST_ACCEPT}, what)
        digest = reply.headers.get("Docker-Content-Digest")
        if digest is None:
            raise BadResponseError(f"{what}: the registry answered without a Docker-Content-Digest header")
        digest = digest.strip()
        if not is_digest(digest):
            raise BadResponseError(f"{what}: malformed Docker-Content-Digest {digest[:80]!r}")
        return digest

    # -- auth ---------------------------------------------------------------------------------------------------

    def _authorized(
        self, host: str, repository: str, method: str, url: str, headers: dict[str, str], what: str
    ) -> Reply:
        try:
            return self._authorized_once(host, repository, method, url, headers, what)
        except AuthError as e:
            realm_host = self._withheld.get(host)
            if realm_host is None:
                raise
            e.message += (
                f" (the token realm is on {realm_host}, not on {host}'s endpoint, so it was asked without the "
                f"credentials configured for {host})"
            )
            raise

    def _authorized_once(
        self, host: str, repository: str, method: str, url: str, headers: dict[str, str], what: str
    ) -> Reply:
        scope = f"repository:{repository}:pull"
        for attempt in range(2):
            auth = self._auth_header(host, scope)
            request_headers = dict(headers, **({"Authorization": auth} if auth else {}))
            reply = self._transport.send(method, url, request_headers, what)
            if reply.status != 401:
                return self._check(reply, what)
            if attempt:
                break
            challenge = parse_challenge(reply.headers.get("WWW-Authenticate", ""))
            if challenge.scheme not in ("bearer", "basic"):
                raise AuthError(f"{what}: unsupported authentication challenge {challenge.scheme[:40]!r}")
            with self._lock:
                self._challenges[host] = challenge
                cached = self._tokens.get((host, scope))
                # Drop the token only if it is the one just refused; another thread may have fetched a good one.
                if cached is not None and auth == f"Bearer {cached.value}":
                    del self._tokens[(host, scope)]
            if challenge.scheme == "basic" and host not in self._credentials:
                raise AuthError(f"{what}: the registry requires credentials and none are configured for {host}")
        if challenge.scheme == "bearer":
            # Docker Hub answers 401, not 404, for a repository that does not exist (distribution#2376).
            raise NotFoundOrDeniedError(f"{what}: HTTP 401 even with a fresh token (no such repository, or private)")
        raise AuthError(f"{what}: credentials were rejected (HTTP 401)")

    def _auth_header(self, host: str, scope: str) -> str | None:
        """The Authorization value for a request, once the host's challenge is known (saves a 401 per image)."""
        with self._lock:
            challenge = self._challenges.get(host)
            token = self._tokens.get((host, scope))
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            credential = self._credentials.get(host)
            return basic_auth(credential) if credential else None
        if token and token.expires_at > self._clock():
            return f"Bearer {token.value}"
        # One fetch per scope: concurrent checks of one repository wait for it rather than each asking.
        with self._lock:
            scope_lock = self._token_locks.setdefault((host, scope), threading.Lock())
        with scope_lock:
            with self._lock:
                token = self._tokens.get((host, scope))
            if token is None or token.expires_at <= self._clock():
                realm = challenge.params.get("realm", "")
                credential = self._credentials.get(host)
                if not realm_takes_credentials(host, self.base_url(host), realm) and credential is not None:
                    with self._lock:
                        self._withheld[host] = (urlsplit(realm).hostname or "?")[:100]
                    credential = None
                token = fetch_token(self._transport, host, challenge, scope, credential, now=self._clock())
                with self._lock:
                    self._tokens[(host, scope)] = token
        return f"Bearer {token.value}"

    @staticmethod
    def _check(reply: Reply, what: str) -> Reply:
        status = reply.status
        if 200 <= status < 300:
            return reply
        if status == 404:
            raise NotFoundError(f"{what} does not exist")
        if status in (401, 403):
            raise AuthError(f"{what}: access denied (HTTP {status})")
        raise UpstreamError(f"{what}: unexpected HTTP {status}")

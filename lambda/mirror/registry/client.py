"""A small OCI Distribution client: manifest digests by HEAD, auth discovered from challenges; knows no cloud."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from ..references import DOCKER_HUB, TAG, is_digest
from .auth import Challenge, Credential, Token, basic_auth, fetch_token, parse_challenge, realm_takes_credentials
from .errors import AuthError, BadResponseError, NotFoundError, NotFoundOrDeniedError, TooLargeError, UpstreamError
from .transport import BODY_CAP, RateLimit, Reply, Transport

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
DOCKER_HUB_URL = "https://registry-1.docker.io"
#: tag listing: asked per page, pages followed by their Link header; all of it bounded
TAGS_PAGE = 100
TAGS_MAX_PAGES = 100
TAGS_MAX = 10_000
#: Docker Hub has been seen ignoring `n` and sending thousands of tags at once (docker/hub-feedback#1960)
TAGS_BODY_CAP = 2 * 2**20
_TAG_RE = re.compile(TAG)
_LINK_RE = re.compile(r'\s*<([^<>]*)>\s*((?:;\s*[A-Za-z0-9_.-]+\s*=\s*(?:"[^"]*"|[^;,"]*)\s*)*)(?:,|$)')


@dataclass(frozen=True)
class ManifestHead:
    """What a HEAD of a manifest tells: its digest, and whether it is an index (None: the type was not given)."""

    digest: str
    index: bool | None


def next_link(header: str) -> str | None:
    """The target of `rel="next"` in a Link header (RFC 8288), or None; BadResponseError when it is malformed."""
    pos, found = 0, None
    header = header.strip()[:8192]
    while pos < len(header):
        match = _LINK_RE.match(header, pos)
        if match is None or match.end() == pos:
            raise BadResponseError(f"malformed Link header {header[:80]!r}")
        rels = re.findall(r';\s*rel\s*=\s*"?([^";,]*)"?', match.group(2), re.I)
        if any("next" in rel.lower().split() for rel in rels):
            found = match.group(1).strip()
        pos = match.end()
    return found


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
        return self.manifest_head(host, repository, reference).digest

    def manifest_head(self, host: str, repository: str, reference: str) -> ManifestHead:
        """The digest of `repository:reference` on `host` and whether it is an index, learnt with HEAD (not a
        counted pull on Docker Hub)."""
        url = f"{self.base_url(host)}/v2/{repository}/manifests/{reference}"
        what = f"{host}/{repository}:{reference}" if not is_digest(reference) else f"{host}/{repository}@{reference}"
        reply = self._authorized(host, repository, "HEAD", url, {"Accept": MANIFEST_ACCEPT}, what)
        digest = reply.headers.get("Docker-Content-Digest")
        if digest is None:
            raise BadResponseError(f"{what}: the registry answered without a Docker-Content-Digest header")
        digest = digest.strip()
        if not is_digest(digest):
            raise BadResponseError(f"{what}: malformed Docker-Content-Digest {digest[:80]!r}")
        media_type = (reply.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        return ManifestHead(digest, None if not media_type else media_type in INDEX_TYPES)

    def manifest_count(self, host: str, repository: str, digest: str) -> int:
        """How many manifests a copy of `repository@digest` fetches: an index and each of its manifests, or one.
        A GET: meant for this account's ECR, where reading a manifest costs nothing (never for Docker Hub)."""
        url = f"{self.base_url(host)}/v2/{repository}/manifests/{digest}"
        what = f"{host}/{repository}@{digest}"
        reply = self._authorized(host, repository, "GET", url, {"Accept": MANIFEST_ACCEPT}, what)
        try:
            manifests = json.loads(reply.body).get("manifests")
        except (ValueError, AttributeError, RecursionError):
            raise BadResponseError(f"{what}: the manifest is not a JSON object") from None
        if manifests is None:
            return 1
        if not isinstance(manifests, list):
            raise BadResponseError(f"{what}: the index's 'manifests' is not a list")
        return 1 + len(manifests)

    def list_tags(self, host: str, repository: str) -> list[str]:
        """Every tag of `repository` on `host`, page by page (`n`, then the `Link: <…>; rel="next"` header).

        Bounded: at most TAGS_MAX_PAGES pages and TAGS_MAX tags; a next page must stay on the registry's endpoint.
        Not a counted pull on Docker Hub, but each page is a request with the usual retries and deadline.
        """
        base = self.base_url(host)
        url = f"{base}/v2/{repository}/tags/list?n={TAGS_PAGE}"
        what = f"{host}/{repository} tags"
        tags: list[str] = []
        seen = {url}
        for _ in range(TAGS_MAX_PAGES):
            reply = self._authorized(host, repository, "GET", url, {"Accept": "application/json"}, what, TAGS_BODY_CAP)
            try:
                page = json.loads(reply.body).get("tags") or []
            except (ValueError, AttributeError, RecursionError):
                raise BadResponseError(f"{what}: the tag list is not JSON") from None
            if not isinstance(page, list):
                raise BadResponseError(f"{what}: the tag list's 'tags' is not a list")
            tags.extend(t for t in page if isinstance(t, str) and _TAG_RE.fullmatch(t))
            if len(tags) > TAGS_MAX:
                raise TooLargeError(f"{what}: more than {TAGS_MAX} tags")
            link = reply.headers.get("Link")
            target = next_link(link) if link else None
            if target is None:
                return list(dict.fromkeys(tags))
            following = urljoin(url, target)
            if urlsplit(following)[:2] != urlsplit(base)[:2]:
                raise BadResponseError(f"{what}: the next page is on another host ({urlsplit(following).netloc[:80]})")
            if following in seen:
                raise BadResponseError(f"{what}: the Link header points back to a page already read")
            seen.add(following)
            url = following
        raise TooLargeError(f"{what}: more than {TAGS_MAX_PAGES} pages of tags")

    # -- auth ---------------------------------------------------------------------------------------------------

    def _authorized(
        self,
        host: str,
        repository: str,
        method: str,
        url: str,
        headers: dict[str, str],
        what: str,
        cap: int = BODY_CAP,
    ) -> Reply:
        try:
            return self._authorized_once(host, repository, method, url, headers, what, cap)
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
        self, host: str, repository: str, method: str, url: str, headers: dict[str, str], what: str, cap: int
    ) -> Reply:
        scope = f"repository:{repository}:pull"
        for attempt in range(2):
            auth = self._auth_header(host, scope)
            request_headers = dict(headers, **({"Authorization": auth} if auth else {}))
            reply = self._transport.send(method, url, request_headers, what, cap=cap)
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

"""A small OCI Distribution client: manifest digests by HEAD, auth discovered from challenges; knows no cloud."""

from __future__ import annotations

import base64
import email.utils
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .references import DOCKER_HUB, is_digest
from .settings import is_loopback

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
USER_AGENT = "ecr-mirror/1.0 (+https://github.com/)"


class RegistryError(Exception):
    """A registry request failed; `reason` is a short category a person understands."""

    reason = "registry error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class NotFoundError(RegistryError):
    reason = "not found"


class AuthError(RegistryError):
    reason = "auth"


class RateLimitedError(RegistryError):
    reason = "rate limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(RegistryError):
    reason = "upstream error"


class RegistryTimeoutError(RegistryError):
    reason = "timeout"


class RegistryConnectionError(RegistryError):
    reason = "connection error"


class BadResponseError(RegistryError):
    reason = "bad response"


class DeadlineError(RegistryError):
    reason = "deadline"


@dataclass(frozen=True)
class Credential:
    username: str
    password: str = field(repr=False)


def _basic(credential: Credential) -> str:
    pair = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: Mapping[str, str]


_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


def parse_challenge(header: str) -> Challenge:
    """Parse `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` (or Basic) into scheme + params."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _CHALLENGE_PARAM.match(rest, pos)
        if not match:
            break
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
        params[match.group(1).lower()] = value
        pos = match.end()
    return Challenge(scheme.lower(), params)


@dataclass(frozen=True)
class RateLimit:
    limit: int | None
    remaining: int | None


def _ratelimit_value(raw: str | None) -> int | None:
    # "100;w=21600" -> 100
    if raw is None:
        return None
    match = re.match(r"\s*(\d+)", raw)
    return int(match.group(1)) if match else None


def parse_ratelimit(headers: Mapping[str, str]) -> RateLimit | None:
    limit = _ratelimit_value(headers.get("ratelimit-limit"))
    remaining = _ratelimit_value(headers.get("ratelimit-remaining"))
    if limit is None and remaining is None:
        return None
    return RateLimit(limit, remaining)


def parse_retry_after(raw: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not raw:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def default_base_url(host: str) -> str:
    return DOCKER_HUB_URL if host == DOCKER_HUB else f"https://{host}"


@dataclass
class _Token:
    value: str = field(repr=False)
    expires_at: float


class RegistryClient:
    """Asks registries for manifest digests; one pooled HTTP session, bounded retries, never past the deadline.

    `remaining_seconds` tells how long the caller may still run (the Lambda's remaining time); no request or
    backoff is started that would end after it.
    """

    #: seconds kept free before the deadline, so the caller can still report
    DEADLINE_MARGIN = 1.0
    #: a Retry-After longer than this is not waited for
    MAX_RETRY_AFTER = 30.0

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
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._remaining = remaining_seconds
        self._sleep = sleep
        self._clock = clock
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=max(4, pool_size), pool_maxsize=max(4, pool_size), max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers["User-Agent"] = USER_AGENT
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._token_locks: dict[tuple[str, str], threading.Lock] = {}
        self._rate_limits: dict[str, RateLimit] = {}
        self.requests_sent = 0

    def close(self) -> None:
        self._session.close()

    def base_url(self, host: str) -> str:
        return self._endpoints.get(host) or default_base_url(host)

    def location(self, host: str) -> str:
        """The host[:port] a copy tool must reach for `host` (the mapped endpoint's, where one is configured)."""
        mapped = self._endpoints.get(host)
        return urlsplit(mapped).netloc if mapped else host

    def rate_limits(self) -> dict[str, RateLimit]:
        """Per registry host, the limit and the lowest remaining count seen in this run."""
        with self._lock:
            return dict(self._rate_limits)

    def manifest_digest(self, host: str, repository: str, reference: str) -> str:
        """The digest of `repository:reference` on `host`, learnt with HEAD (not a counted pull on Docker Hub)."""
        url = f"{self.base_url(host)}/v2/{repository}/manifests/{reference}"
        what = f"{host}/{repository}:{reference}" if not is_digest(reference) else f"{host}/{repository}@{reference}"
        response = self._authorized(host, repository, "HEAD", url, {"Accept": MANIFEST_ACCEPT}, what)
        digest = response.headers.get("Docker-Content-Digest")
        if digest is None:
            raise BadResponseError(f"{what}: the registry answered without a Docker-Content-Digest header")
        digest = digest.strip()
        if not is_digest(digest):
            raise BadResponseError(f"{what}: malformed Docker-Content-Digest {digest[:80]!r}")
        return digest

    # -- auth ---------------------------------------------------------------------------------------------------

    def _authorized(
        self, host: str, repository: str, method: str, url: str, headers: dict[str, str], what: str
    ) -> requests.Response:
        scope = f"repository:{repository}:pull"
        for attempt in range(2):
            auth = self._auth_header(host, scope)
            request_headers = dict(headers, **({"Authorization": auth} if auth else {}))
            response = self._send(method, url, request_headers, what)
            if response.status_code != 401:
                return self._check(response, what)
            if attempt:
                break
            header = response.headers.get("WWW-Authenticate", "")
            challenge = parse_challenge(header)
            if challenge.scheme not in ("bearer", "basic"):
                raise AuthError(f"{what}: unsupported authentication challenge {challenge.scheme!r}")
            with self._lock:
                self._challenges[host] = challenge
                cached = self._tokens.get((host, scope))
                # Drop the token only if it is the one just refused; another thread may have fetched a good one.
                if cached is not None and auth == f"Bearer {cached.value}":
                    del self._tokens[(host, scope)]
            if challenge.scheme == "basic" and host not in self._credentials:
                raise AuthError(f"{what}: the registry requires credentials and none are configured for {host}")
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
            return _basic(credential) if credential else None
        if token and token.expires_at > self._clock():
            return f"Bearer {token.value}"
        # One fetch per scope: concurrent checks of one repository wait for it rather than each asking.
        with self._lock:
            scope_lock = self._token_locks.setdefault((host, scope), threading.Lock())
        with scope_lock:
            with self._lock:
                token = self._tokens.get((host, scope))
            if token is None or token.expires_at <= self._clock():
                token = self._fetch_token(host, challenge, scope)
                with self._lock:
                    self._tokens[(host, scope)] = token
        return f"Bearer {token.value}"

    def _fetch_token(self, host: str, challenge: Challenge, scope: str) -> _Token:
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise AuthError(f"{host}: the token realm {realm[:100]!r} is not a URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise AuthError(f"{host}: refusing a plain-http token realm outside loopback ({parts.hostname})")
        params = {"scope": scope}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        credential = self._credentials.get(host)
        headers = {}
        if credential:
            headers["Authorization"] = _basic(credential)
        what = f"token for {host} ({scope})"
        started = self._clock()
        response = self._send("GET", realm, headers, what, params=params)
        if response.status_code in (401, 403):
            raise AuthError(f"{what}: the token endpoint refused the credentials (HTTP {response.status_code})")
        response = self._check(response, what)
        try:
            body = response.json()
            value = body.get("token") or body.get("access_token")
            expires_in = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            raise BadResponseError(f"{what}: the token endpoint did not answer with JSON") from None
        if not isinstance(value, str) or not value:
            raise BadResponseError(f"{what}: the token endpoint answered without a token")
        # Renew a little early so a token never expires between the cache check and the request.
        return _Token(value, started + max(1.0, expires_in * 0.9 - 5))

    # -- transport ------------------------------------------------------------------------------------------------

    def _check(self, response: requests.Response, what: str) -> requests.Response:
        status = response.status_code
        if 200 <= status < 300:
            return response
        if status == 404:
            raise NotFoundError(f"{what} does not exist")
        if status in (401, 403):
            raise AuthError(f"{what}: access denied (HTTP {status})")
        raise UpstreamError(f"{what}: unexpected HTTP {status}")

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], what: str, params: Mapping[str, str] | None = None
    ) -> requests.Response:
        host = urlsplit(url).netloc
        last: RegistryError | None = None
        for attempt in range(self._max_attempts):
            if attempt:
                assert last is not None
                self._wait_before_retry(attempt, last)
            timeout = self._request_timeout(last, what)
            try:
                with self._lock:
                    self.requests_sent += 1
                response = self._session.request(
                    method, url, headers=dict(headers), params=params, timeout=timeout, allow_redirects=True
                )
            except requests.Timeout:
                last = RegistryTimeoutError(f"{what}: no answer from {host} within {timeout:.1f}s")
                continue
            except requests.ConnectionError as e:
                last = RegistryConnectionError(f"{what}: {host}: {type(e).__name__}")
                continue
            self._record_ratelimit(url, response)
            if response.status_code == 429:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                detail = "TOOMANYREQUESTS" if b"TOOMANYREQUESTS" in (response.content or b"") else "HTTP 429"
                last = RateLimitedError(f"{what}: {host} answered {detail}", retry_after)
                continue
            if response.status_code >= 500:
                last = UpstreamError(f"{what}: {host} answered HTTP {response.status_code}")
                continue
            return response
        assert last is not None
        raise last

    def _request_timeout(self, last: RegistryError | None, what: str) -> float:
        left = self._remaining() - self.DEADLINE_MARGIN
        if left < 0.2:
            if last is not None:
                raise last  # what went wrong, rather than the deadline it ran into
            raise DeadlineError(f"{what}: no time left before the function's deadline")
        return min(self._timeout, left)

    def _wait_before_retry(self, attempt: int, last: RegistryError) -> None:
        retry_after = last.retry_after if isinstance(last, RateLimitedError) else None
        if retry_after is not None and retry_after > self.MAX_RETRY_AFTER:
            raise last
        delay = retry_after if retry_after is not None else self._backoff * 2 ** (attempt - 1) * random.uniform(1, 1.5)  # noqa: S311 (jitter, not crypto)
        # Give up rather than sleep into the deadline: the error says what went wrong, not "deadline".
        if self._remaining() - self.DEADLINE_MARGIN - delay < min(self._timeout, 1.0):
            raise last
        self._sleep(delay)

    def _record_ratelimit(self, url: str, response: requests.Response) -> None:
        seen = parse_ratelimit(response.headers)
        if seen is None:
            return
        # Reported under the registry's name, not its endpoint URL.
        host = next((h for h, base in self._endpoints.items() if url.startswith(base + "/")), None)
        if host is None:
            netloc = urlsplit(url).netloc
            host = DOCKER_HUB if netloc == urlsplit(DOCKER_HUB_URL).netloc else netloc
        with self._lock:
            old = self._rate_limits.get(host)
            limit, remaining = seen.limit, seen.remaining
            if old is not None:
                limit = old.limit if limit is None else limit
                if old.remaining is not None and (remaining is None or old.remaining < remaining):
                    remaining = old.remaining
            self._rate_limits[host] = RateLimit(limit, remaining)

"""HTTP for registry requests: each exchange bounded in wall-clock time (`watchdog`), bytes (`limitread`) and
redirects; retried by a `RetryPolicy`, a 429 holding its host for every thread (`backoff`); every failure typed.

Redirects are never followed (a registry that points elsewhere must be configured there), and whatever `requests`,
urllib3 or `http.client` raise becomes a `RegistryError`.
"""

from __future__ import annotations

import http.client
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests
import urllib3.exceptions

from .backoff import HostBackoff, RetryPolicy
from .errors import (
    BadResponseError,
    DeadlineError,
    RateLimitedError,
    RegistryConnectionError,
    RegistryError,
    RegistryTimeoutError,
    UpstreamError,
)
from .hosts import HostConfig
from .limitread import BODY_CAP, read_body
from .ratelimit import RateLimit, RateLimits, parse_retry_after
from .watchdog import Watchdog, WatchedAdapter

USER_AGENT = "ecr-mirror/1.0"
#: a request is not begun with less time than this left: it could not finish
MIN_REQUEST_SECONDS = 0.2


@dataclass(frozen=True)
class Reply:
    """A whole, bounded answer: status, headers and (for GET) a body of at most the cap."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


def new_session(pool_size: int) -> requests.Session:
    """The session a transport sends with when none is injected: watched connections, nothing from the environment."""
    session = requests.Session()
    # No proxies, .netrc or CA bundles from the environment: credentials go only where the client sends them.
    session.trust_env = False
    adapter = WatchedAdapter(pool_connections=max(4, pool_size), pool_maxsize=max(4, pool_size), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept-Encoding"] = "identity"
    return session


# -- the error chain -----------------------------------------------------------------------------------------------

_BROKEN = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.ProtocolError,
    http.client.HTTPException,
)


def _chain(e: BaseException, depth: int = 8) -> list[BaseException]:
    """`e` and what it wraps: requests wraps urllib3, which wraps http.client (in `args`, or as `__cause__`)."""
    chain = [e]
    while len(chain) < depth:
        last = chain[-1]
        inner = next((a for a in last.args if isinstance(a, BaseException)), None) or last.__cause__
        if inner is None:
            break
        chain.append(inner)
    return chain


def _broken_answer(e: BaseException) -> str | None:
    """The innermost cause's type, when `e` is an answer that broke off."""
    chain = _chain(e)
    return type(chain[-1]).__name__ if any(isinstance(c, _BROKEN) for c in chain) else None


def _translate(e: BaseException, what: str, host: str, limit: float) -> RegistryError:
    """Every failure of `requests`, urllib3 and http.client, typed; the reason names the host, never a header."""
    if isinstance(e, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
        return RegistryConnectionError(f"{what}: TLS with {host} failed")
    if isinstance(e, requests.Timeout | urllib3.exceptions.TimeoutError | socket.timeout):
        return RegistryTimeoutError(f"{what}: no answer from {host} within {limit:.1f}s")
    if isinstance(e, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return BadResponseError(f"{what}: {host}: not a usable URL ({type(e).__name__})")
    if isinstance(e, requests.exceptions.InvalidHeader | urllib3.exceptions.LocationParseError):
        return BadResponseError(f"{what}: {host}: malformed request or answer ({type(e).__name__})")
    broken = _broken_answer(e)
    if broken is not None:
        # A body cut off mid-way, a broken chunk, a malformed status line or too many headers: often a flaky link.
        return RegistryConnectionError(f"{what}: {host} broke off the answer ({broken})")
    if isinstance(e, requests.ConnectionError | urllib3.exceptions.HTTPError | OSError):
        return RegistryConnectionError(f"{what}: {host}: {type(e).__name__}")
    if isinstance(e, requests.RequestException | ValueError):
        return BadResponseError(f"{what}: {host}: {type(e).__name__}")
    raise TypeError(f"not a transport error: {type(e).__name__}") from e


_TRANSPORT_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


# -- the transport -------------------------------------------------------------------------------------------------


class Transport:
    """Pooled HTTP with bounded retries, never past the deadline; answers are `Reply` values, failures typed.

    `remaining_seconds` is the time the caller lets its requests use (the run's budget keeps its own margins): no
    request or backoff is started that would end after it, and no request is allowed to run past it. A 429 holds
    its host (Retry-After, within the policy's bound, else the exponential backoff): every thread's next request to
    that host waits for it.
    """

    def __init__(
        self,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen)
        *,
        pool_size: int = 8,
        remaining_seconds: Callable[[], float] = lambda: math.inf,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self.policy = policy
        self._remaining = remaining_seconds
        self._sleep = sleep
        self._clock = clock
        self._session = session if session is not None else new_session(pool_size)
        self._watchdog = Watchdog()
        self._lock = threading.Lock()
        self._backoffs: dict[str, HostBackoff] = {}
        self._rate_limits = RateLimits()
        self.requests_sent = 0

    def close(self) -> None:
        self._session.close()
        self._watchdog.close()

    def clock(self) -> float:
        """The transport's clock (monotonic; the tests' fake one): the time `send`'s `until` is read on."""
        return self._clock()

    def backoff(self, netloc: str) -> HostBackoff:
        """The one backoff of `netloc`, for every HostConfig that sends there."""
        with self._lock:
            return self._backoffs.setdefault(netloc, HostBackoff())

    def rate_limits(self) -> dict[str, RateLimit]:
        """Per registry, the limit and the lowest remaining count seen in this run."""
        return self._rate_limits.snapshot()

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        what: str,
        *,
        host: HostConfig,
        params: Mapping[str, str] | None = None,
        cap: int = BODY_CAP,
        until: float | None = None,
    ) -> Reply:
        """One request to `host` with retries: 429, 5xx, timeouts and broken connections are retried, within the
        deadline (and by `until` on the transport's clock, when given: the end of a request that began on an earlier
        hop); a 429 holds the host for every thread."""
        policy = self.policy
        last: RegistryError | None = None
        for attempt in range(policy.max_attempts):
            if attempt and not isinstance(last, RateLimitedError):  # a 429's wait is its host's hold, below
                assert last is not None
                self._pause(policy.delay(attempt), last)
            if host.backoff.until:
                self._wait_for(host, last, what)
            limit = self._request_limit(last, what, until)
            try:
                reply = self._exchange(method, url, headers, params, limit, cap, what, host)
            except (RegistryTimeoutError, RegistryConnectionError) as e:
                last = e
                continue
            if reply.status == 429:
                retry_after = parse_retry_after(reply.headers.get("Retry-After"))
                detail = "TOOMANYREQUESTS" if b"TOOMANYREQUESTS" in reply.body else "HTTP 429"
                last = RateLimitedError(f"{what}: {host.netloc} answered {detail}", retry_after)
                if retry_after is not None and retry_after <= policy.max_retry_after:
                    host.backoff.hold(self._clock() + retry_after)
                    continue
                host.backoff.hold(self._clock() + policy.delay(attempt + 1))
                if retry_after is not None:
                    raise last  # asked to wait longer than is worth it: the others wait the backoff, not an hour
                continue
            if reply.status >= 500:
                last = UpstreamError(f"{what}: {host.netloc} answered HTTP {reply.status}")
                continue
            return reply
        assert last is not None
        raise last

    def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        limit: float,
        cap: int,
        what: str,
        host: HostConfig,
    ) -> Reply:
        """One request, all within `limit` seconds of wall-clock time. A redirect is an answer like any other: the
        caller follows it, or not (`redirects.follow`)."""
        exchange = self._watchdog.start(limit)
        netloc = host.netloc
        try:
            with self._lock:
                self.requests_sent += 1
            response = self._session.request(
                method,
                url,
                headers=headers,
                params=params,
                timeout=(limit, limit),
                allow_redirects=False,
                stream=True,
            )
            with response:
                self._rate_limits.record(host.name, response.headers)
                # A body read to its end returns the connection to the pool (one handshake per host, not per
                # request); one left unread (refused, too long, cut) is closed with the response.
                if method == "HEAD":
                    response.raw.read()
                    body = b""
                else:
                    body = read_body(response, cap, what, netloc)
                if not exchange.expired:
                    return Reply(response.status_code, response.headers, body, url)  # read whole: no copy needed
            raise self._timed_out(what, netloc, limit)
        except (RegistryError, *_TRANSPORT_ERRORS) as e:
            # Whatever ends an exchange that ran out of time (a cut socket, a short body), the reason is the time.
            if exchange.expired:
                raise self._timed_out(what, netloc, limit) from None
            if isinstance(e, RegistryError):
                raise
            raise _translate(e, what, netloc, limit) from None
        finally:
            self._watchdog.finish(exchange)

    @staticmethod
    def _timed_out(what: str, netloc: str, limit: float) -> RegistryTimeoutError:
        return RegistryTimeoutError(f"{what}: {netloc} did not answer in full within {limit:.1f}s")

    def _request_limit(self, last: RegistryError | None, what: str, until: float | None) -> float:
        left = self._remaining()
        if left < MIN_REQUEST_SECONDS:
            if last is not None:
                raise last  # what went wrong, rather than the deadline it ran into
            raise DeadlineError(f"{what}: no time left before the function's deadline")
        if until is not None:
            hops_left = until - self._clock()
            if hops_left < MIN_REQUEST_SECONDS:
                raise last or RegistryTimeoutError(
                    f"{what}: not answered within {self.policy.timeout:.1f}s over its redirects"
                )
            left = min(left, hops_left)
        return min(self.policy.timeout, left)

    def _pause(self, delay: float, last: RegistryError) -> None:
        # Give up rather than sleep into the deadline: the error says what went wrong, not "deadline".
        if not self.policy.wait_fits(delay, self._remaining()):
            raise last
        self._sleep(delay)

    def _wait_for(self, host: HostConfig, last: RegistryError | None, what: str) -> None:
        """Wait while `host` is held after a 429, however many holds follow one another; no wait that would pass
        the deadline is begun (the request gives up, rate limited)."""
        waited = 0.0
        while (until := host.backoff.until) > waited:
            delay = until - self._clock()
            if delay <= 0:
                return
            if not self.policy.wait_fits(delay, self._remaining()):
                raise last or RateLimitedError(f"{what}: {host.netloc} is rate limited for another {delay:.1f}s")
            self._sleep(delay)
            waited = until  # a hold set while this one was waited for is waited for in turn; this one is done

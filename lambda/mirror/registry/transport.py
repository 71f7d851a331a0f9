"""HTTP for registry requests: each exchange bounded in wall-clock time, bytes and redirects; every failure typed.

`requests` bounds each socket operation, not an exchange: a server that sends one byte a second never times out,
and a 100 MiB token body is read whole. Here a watchdog thread ends any exchange that outlives its limit by shutting
down its socket, bodies are streamed and capped, redirects are never followed (a registry that points elsewhere
must be configured there), and whatever `requests`, urllib3 or `http.client` raise becomes a `RegistryError`.
"""

from __future__ import annotations

import http.client
import math
import os
import random
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .errors import (
    BadResponseError,
    DeadlineError,
    RateLimitedError,
    RegistryConnectionError,
    RegistryError,
    RegistryTimeoutError,
    TooLargeError,
    UpstreamError,
)

USER_AGENT = "ecr-mirror/1.0"
#: a token answer is a few KiB; error bodies are read only for their error code
BODY_CAP = 64 * 1024
_CHUNK = 16 * 1024


@dataclass(frozen=True)
class Reply:
    """A whole, bounded answer: status, headers and (for GET) a body of at most the cap."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


# -- the watchdog: a wall-clock limit over a whole exchange ----------------------------------------------------------


class _SocketGuard:
    """A duplicate of a connection's socket descriptor, so another thread can shut the socket down at any phase
    (connect, TLS handshake, headers, body) without racing the owner's close: the duplicate is never reused."""

    def __init__(self, sock: socket.socket) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = os.dup(sock.fileno())

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            sock = socket.socket(fileno=self._fd)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer
            finally:
                sock.detach()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class _Exchange:
    """One request's wall-clock budget and the connections it has used so far."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._lock = threading.Lock()
        self._guards: list[_SocketGuard] = []

    def attach(self, guard: _SocketGuard) -> None:
        with self._lock:
            if guard not in self._guards:
                self._guards.append(guard)
            expired = self.expired
        if expired:
            guard.shutdown()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            guards = list(self._guards)
        for guard in guards:
            guard.shutdown()


_current = threading.local()


def _attach(guard: _SocketGuard | None) -> None:
    exchange: _Exchange | None = getattr(_current, "exchange", None)
    if exchange is not None and guard is not None:
        exchange.attach(guard)


class _Watchdog:
    """One thread that ends every exchange still running at its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active: set[_Exchange] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, exchange: _Exchange) -> None:
        with self._cond:
            self._active.add(exchange)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="exchange-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def unwatch(self, exchange: _Exchange) -> None:
        with self._cond:
            self._active.discard(exchange)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for exchange in [e for e in self._active if e.deadline <= now]:
                    self._active.discard(exchange)
                    exchange.expire()
                wake = min((e.deadline for e in self._active), default=None)
                self._cond.wait(None if wake is None else max(0.01, wake - now))


class _Watched:
    """Mixed into urllib3's connections: each socket they open gets a guard, attached to the current exchange."""

    _guard: _SocketGuard | None = None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        if self._guard is not None:
            self._guard.close()
        self._guard = _SocketGuard(sock)
        _attach(self._guard)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self._guard)  # a pooled connection, reused by a new exchange
        super().request(*args, **kwargs)  # type: ignore[misc]

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        if self._guard is not None:
            self._guard.close()


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


# -- rate-limit headers --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    limit: int | None
    remaining: int | None


def _ratelimit_value(raw: str | None) -> int | None:
    # "100;w=21600" -> 100
    if raw is None:
        return None
    match = re.match(r"\s*(\d{1,12})", raw)
    return int(match.group(1)) if match else None


def parse_ratelimit(headers: Mapping[str, str]) -> RateLimit | None:
    limit = _ratelimit_value(headers.get("ratelimit-limit"))
    remaining = _ratelimit_value(headers.get("ratelimit-remaining"))
    if limit is None and remaining is None:
        return None
    return RateLimit(limit, remaining)


def parse_retry_after(raw: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    import email.utils

    if not raw:
        return None
    raw = raw.strip()[:100]
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# -- the transport -------------------------------------------------------------------------------------------------


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).netloc[:255] or "?"
    except ValueError:
        return "?"


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


def _decoder(encoding: str, what: str, host: str) -> Any:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise BadResponseError(f"{what}: {host} answered with an unsupported content-encoding {encoding[:40]!r}")


def _read_body(response: requests.Response, cap: int, what: str, host: str) -> bytes:
    """At most `cap` bytes of the body, decoded; a longer body is not read past the cap."""
    length = response.headers.get("Content-Length", "").strip()
    if length.isdigit() and int(length) > cap:
        raise TooLargeError(f"{what}: {host} sent a body of {int(length)} bytes (at most {cap} are read)")
    decoder = _decoder(response.headers.get("Content-Encoding", ""), what, host)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.raw.stream(_CHUNK, decode_content=False):
            if decoder is not None:
                chunk = decoder.decompress(chunk, cap + 1 - size)
                if decoder.unconsumed_tail:
                    size = cap + 1
            size += len(chunk)
            if size > cap:
                raise TooLargeError(f"{what}: {host} sent a body of more than {cap} bytes")
            chunks.append(chunk)
    except zlib.error:
        raise BadResponseError(f"{what}: {host} sent a body that does not decompress") from None
    return b"".join(chunks)


class Transport:
    """Pooled HTTP with bounded retries, never past the deadline; answers are `Reply` values, failures typed.

    `remaining_seconds` tells how long the caller may still run (the Lambda's remaining time); no request or
    backoff is started that would end after it, and no request is allowed to run past it.
    """

    #: seconds kept free before the deadline, so the caller can still report
    DEADLINE_MARGIN = 1.0
    #: a Retry-After longer than this is not waited for
    MAX_RETRY_AFTER = 30.0

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        pool_size: int = 8,
        remaining_seconds: Callable[[], float] = lambda: math.inf,
        sleep: Callable[[float], None] = time.sleep,
        name_of: Callable[[str], str] = _host_of,
    ) -> None:
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._remaining = remaining_seconds
        self._sleep = sleep
        self._name_of = name_of
        self._session = requests.Session()
        # No proxies, .netrc or CA bundles from the environment: credentials go only where the client sends them.
        self._session.trust_env = False
        adapter = _WatchedAdapter(pool_connections=max(4, pool_size), pool_maxsize=max(4, pool_size), max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.headers["Accept-Encoding"] = "identity"
        self._watchdog = _Watchdog()
        self._lock = threading.Lock()
        self._rate_limits: dict[str, RateLimit] = {}
        self.requests_sent = 0

    def close(self) -> None:
        self._session.close()
        self._watchdog.close()

    def rate_limits(self) -> dict[str, RateLimit]:
        """Per registry, the limit and the lowest remaining count seen in this run."""
        with self._lock:
            return dict(self._rate_limits)

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        cap: int = BODY_CAP,
    ) -> Reply:
        """One request with retries: 429, 5xx, timeouts and broken connections are retried, within the deadline."""
        host = _host_of(url)
        last: RegistryError | None = None
        for attempt in range(self._max_attempts):
            if attempt:
                assert last is not None
                self._wait_before_retry(attempt, last)
            limit = self._request_limit(last, what)
            try:
                reply = self._exchange(method, url, headers, params, limit, cap, what)
            except (RegistryTimeoutError, RegistryConnectionError) as e:
                last = e
                continue
            if reply.status == 429:
                retry_after = parse_retry_after(reply.headers.get("Retry-After"))
                detail = "TOOMANYREQUESTS" if b"TOOMANYREQUESTS" in reply.body else "HTTP 429"
                last = RateLimitedError(f"{what}: {host} answered {detail}", retry_after)
                continue
            if reply.status >= 500:
                last = UpstreamError(f"{what}: {host} answered HTTP {reply.status}")
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
    ) -> Reply:
        """One request, all within `limit` seconds of wall-clock time; a redirect is refused, never followed."""
        exchange = _Exchange(time.monotonic() + limit)
        _current.exchange = exchange
        self._watchdog.watch(exchange)
        host = _host_of(url)
        # Whatever ends an exchange that ran out of time (a cut socket, a short body), the reason is the time.
        timed_out = RegistryTimeoutError(f"{what}: {host} did not answer in full within {limit:.1f}s")
        try:
            with self._lock:
                self.requests_sent += 1
            response = self._session.request(
                method,
                url,
                headers=dict(headers),
                params=params,
                timeout=(limit, limit),
                allow_redirects=False,
                stream=True,
            )
            with response:
                self._record_ratelimit(url, response.headers)
                if 300 <= response.status_code < 400:
                    where = _host_of(urljoin(url, response.headers.get("Location", "").strip()[:2048]))
                    raise BadResponseError(f"{what}: unexpected redirect to {where} (HTTP {response.status_code})")
                body = b"" if method == "HEAD" else _read_body(response, cap, what, host)
                if not exchange.expired:
                    return Reply(response.status_code, CaseInsensitiveDict(response.headers), body, url)
            raise timed_out
        except (RegistryError, *_TRANSPORT_ERRORS) as e:
            if exchange.expired:
                raise timed_out from None
            if isinstance(e, RegistryError):
                raise
            raise _translate(e, what, host, limit) from None
        finally:
            self._watchdog.unwatch(exchange)
            _current.exchange = None

    def _request_limit(self, last: RegistryError | None, what: str) -> float:
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

    def _record_ratelimit(self, url: str, headers: Mapping[str, str]) -> None:
        seen = parse_ratelimit(headers)
        if seen is None:
            return
        name = self._name_of(url)
        with self._lock:
            old = self._rate_limits.get(name)
            limit, remaining = seen.limit, seen.remaining
            if old is not None:
                limit = old.limit if limit is None else limit
                if old.remaining is not None and (remaining is None or old.remaining < remaining):
                    remaining = old.remaining
            self._rate_limits[name] = RateLimit(limit, remaining)

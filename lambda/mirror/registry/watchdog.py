"""A wall-clock limit over a whole exchange: `requests` bounds each socket operation, not an exchange, so a server
that sends one byte a second never times out. One watchdog thread shuts down the socket of any exchange still
running at its deadline, whatever phase it is in (connect, TLS handshake, headers, body)."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class _SocketGuard:
    """A duplicate of a connection's socket descriptor, so another thread can shut the socket down at any phase
    without racing the owner's close: the duplicate is never reused."""

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


class Exchange:
    """One request's wall-clock deadline and the connections it has used so far."""

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

    def release(self, guard: _SocketGuard) -> bool:
        """`guard`'s connection goes back to the pool: no longer this exchange's to cut. False if it was cut."""
        with self._lock:
            if guard in self._guards:
                self._guards.remove(guard)
            return not self.expired

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            guards = list(self._guards)
        for guard in guards:
            guard.shutdown()


#: the exchange the current thread is running, for the connections it opens or reuses
_current = threading.local()


def _attach(guard: _SocketGuard | None) -> None:
    exchange: Exchange | None = getattr(_current, "exchange", None)
    if exchange is not None and guard is not None:
        exchange.attach(guard)


def _release(guard: _SocketGuard | None) -> bool:
    """Whether a connection the current exchange is done with may be pooled (it was not cut at a deadline)."""
    exchange: Exchange | None = getattr(_current, "exchange", None)
    return exchange is None or guard is None or exchange.release(guard)


class Watchdog:
    """One thread that ends every exchange still running at its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active: set[Exchange] = set()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: when the thread next wakes by itself: a later deadline needs no wake-up, so most starts send none
        self._wake = math.inf

    def start(self, limit: float) -> Exchange:
        """Watch a new exchange of the current thread, ended `limit` seconds from now; `finish` it when done."""
        exchange = Exchange(time.monotonic() + limit)
        _current.exchange = exchange
        with self._cond:
            self._active.add(exchange)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="exchange-watchdog", daemon=True)
                self._thread.start()
            if exchange.deadline < self._wake:
                self._wake = exchange.deadline
                self._cond.notify()
        return exchange

    def finish(self, exchange: Exchange) -> None:
        with self._cond:
            self._active.discard(exchange)
        _current.exchange = None

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
                self._wake = min((e.deadline for e in self._active), default=math.inf)
                self._cond.wait(None if self._wake == math.inf else max(0.01, self._wake - now))


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


class _WatchedPool:
    """Mixed into urllib3's pools: a connection an exchange has read to its end goes back to the pool, out of that
    exchange's reach (its deadline must not cut the next exchange's request); one it cut is closed instead."""

    def _put_conn(self, conn: Any) -> None:
        if conn is not None and not _release(getattr(conn, "_guard", None)):
            conn.close()
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedHTTPPool(_WatchedPool, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_WatchedPool, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections the watchdog can cut: mount it for every scheme a client sends to."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

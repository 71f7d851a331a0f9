"""The watchdog's bookkeeping: which connections an exchange may cut, and when it wakes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from mirror.registry.watchdog import Exchange, Watchdog, _SocketGuard


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_a_connection_given_back_is_out_of_its_exchanges_reach(pair: tuple[socket.socket, socket.socket]) -> None:
    # Pooled, the connection is the next exchange's: the deadline of the one that gave it back must not cut it.
    a, b = pair
    guard = _SocketGuard(a)
    exchange = Exchange(deadline=0.0)
    exchange.attach(guard)

    assert exchange.release(guard) is True
    exchange.expire()

    a.sendall(b"x")
    assert b.recv(1) == b"x"
    guard.close()


def test_a_connection_cut_before_it_is_given_back_is_not_pooled(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    guard = _SocketGuard(a)
    exchange = Exchange(deadline=0.0)
    exchange.attach(guard)

    exchange.expire()

    assert exchange.release(guard) is False  # the pool closes it instead
    assert b.recv(1) == b""  # shut down: the peer sees the end
    guard.close()


def test_a_connection_attached_after_the_deadline_is_cut_at_once(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    guard = _SocketGuard(a)
    exchange = Exchange(deadline=0.0)
    exchange.expire()

    exchange.attach(guard)

    assert b.recv(1) == b""
    guard.close()


def test_a_shorter_deadline_started_later_still_ends_on_time() -> None:
    # The thread sleeps until its earliest deadline and is woken only by an earlier one: most starts (a later
    # deadline than one already watched) wake nothing.
    watchdog = Watchdog()
    try:
        long = watchdog.start(600)
        short = watchdog.start(0.05)
        waited = 0.0
        while not short.expired and waited < 30:  # generous: a busy machine may be slow to run the thread
            time.sleep(0.05)
            waited += 0.05
        assert short.expired
        assert not long.expired
        watchdog.finish(short)
        watchdog.finish(long)
    finally:
        watchdog.close()

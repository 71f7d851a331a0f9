"""How requests are retried (a frozen `RetryPolicy`) and when a host may be sent to again after it answered 429
(`HostBackoff`, one per host[:port], shared by every thread: regclient keeps its backoff per host too)."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Each exchange's wall-clock limit, how often a request is tried, and how long between tries."""

    #: seconds one exchange may take, whole (connect, headers and body)
    timeout: float = 10.0
    max_attempts: int = 4
    #: the first retry's delay; each later one doubles it, with jitter
    backoff: float = 0.5
    #: a Retry-After longer than this is not waited for
    max_retry_after: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait before try number `attempt` (1 for the first retry)."""
        return self.backoff * 2.0 ** (attempt - 1) * random.uniform(1, 1.5)  # noqa: S311 (jitter, not crypto)

    def wait_fits(self, delay: float, remaining: float) -> bool:
        """Whether a wait of `delay` still leaves a useful request before the deadline (never one cut short)."""
        return remaining - delay >= min(self.timeout, 1.0)


class HostBackoff:
    """Until when a host is held after a 429: every request to it waits for that time before it is sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: a monotonic time; 0.0 while the host was never held, so the common path reads one float
        self.until = 0.0

    def hold(self, until: float) -> None:
        with self._lock:
            if until > self.until:
                self.until = until

"""Rate-limit headers: Docker Hub's `ratelimit-limit` / `ratelimit-remaining`, and `Retry-After`; each parsed
strictly (plain ASCII, or no figure), and the per-registry record of what a run saw."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from . import fields

#: digits read of a `ratelimit-*` figure; a longer one is malformed
RATELIMIT_DIGITS = 12
#: digits read of a `Retry-After` in seconds (up to 31 years); a longer one is malformed
RETRY_AFTER_DIGITS = 9


@dataclass(frozen=True)
class RateLimit:
    limit: int | None
    remaining: int | None


def parse_ratelimit(headers: Mapping[str, str]) -> RateLimit | None:
    """`ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 97;w=21600`; None when neither is a plain figure."""
    limit = fields.leading_number(headers.get("ratelimit-limit"), RATELIMIT_DIGITS)
    remaining = fields.leading_number(headers.get("ratelimit-remaining"), RATELIMIT_DIGITS)
    if limit is None and remaining is None:
        return None
    return RateLimit(limit, remaining)


def parse_retry_after(raw: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (ASCII delta-seconds or an HTTP-date); None when it is absent or
    malformed, and the caller's own backoff applies."""
    seconds = fields.number(raw, RETRY_AFTER_DIGITS)
    if seconds is not None:
        return float(seconds)
    when = fields.http_date(raw)
    if when is None:
        return None
    return max(0.0, when - (time.time() if now is None else now))


class RateLimits:
    """Per registry, the limit and the lowest remaining count seen in a run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, RateLimit] = {}

    def record(self, name: str, headers: Mapping[str, str]) -> None:
        seen = parse_ratelimit(headers)
        if seen is None:
            return
        with self._lock:
            old = self._seen.get(name)
            limit, remaining = seen.limit, seen.remaining
            if old is not None:
                limit = old.limit if limit is None else limit
                if old.remaining is not None and (remaining is None or old.remaining < remaining):
                    remaining = old.remaining
            self._seen[name] = RateLimit(limit, remaining)

    def snapshot(self) -> dict[str, RateLimit]:
        with self._lock:
            return dict(self._seen)

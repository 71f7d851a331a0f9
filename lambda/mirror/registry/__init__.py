"""The OCI Distribution client, split as regclient splits it: the transport (bounded HTTP, retries, per-host
backoff) and its parts (`watchdog`, `limitread`, `ratelimit`, `fields`, `httplink`, `urls`), auth, operations."""

from .auth import Challenge, parse_challenge
from .backoff import RetryPolicy
from .client import MANIFEST_ACCEPT, ManifestHead, RegistryClient, default_base_url
from .errors import (
    AuthError,
    BadResponseError,
    DeadlineError,
    NotFoundError,
    NotFoundOrDeniedError,
    RateLimitedError,
    RegistryConnectionError,
    RegistryError,
    RegistryTimeoutError,
    TooLargeError,
    UnsupportedError,
    UpstreamError,
)
from .hosts import Credential, HostConfig
from .limitread import BODY_CAP
from .ratelimit import RateLimit, parse_ratelimit, parse_retry_after
from .transport import Reply

__all__ = [
    "BODY_CAP",
    "MANIFEST_ACCEPT",
    "AuthError",
    "BadResponseError",
    "Challenge",
    "Credential",
    "DeadlineError",
    "HostConfig",
    "ManifestHead",
    "NotFoundError",
    "NotFoundOrDeniedError",
    "RateLimit",
    "RateLimitedError",
    "RegistryClient",
    "RegistryConnectionError",
    "RegistryError",
    "RegistryTimeoutError",
    "Reply",
    "RetryPolicy",
    "TooLargeError",
    "UnsupportedError",
    "UpstreamError",
    "default_base_url",
    "parse_challenge",
    "parse_ratelimit",
    "parse_retry_after",
]

"""The OCI Distribution client, split as regclient splits it: transport (bounded HTTP), auth, operations."""

from .auth import Challenge, Credential, parse_challenge
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
    UpstreamError,
)
from .transport import BODY_CAP, RateLimit, Reply, parse_ratelimit, parse_retry_after

__all__ = [
    "BODY_CAP",
    "MANIFEST_ACCEPT",
    "AuthError",
    "BadResponseError",
    "Challenge",
    "Credential",
    "DeadlineError",
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
    "TooLargeError",
    "UpstreamError",
    "default_base_url",
    "parse_challenge",
    "parse_ratelimit",
    "parse_retry_after",
]

"""The registry client's typed errors: one root, a child per reason a person acts on differently."""

from __future__ import annotations


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


class NotFoundOrDeniedError(AuthError):
    """401 even with a fresh token: Docker Hub's answer for a repository that does not exist, or is private."""

    reason = "not found or access denied"


class RateLimitedError(RegistryError):
    reason = "rate limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(RegistryError):
    reason = "upstream error"


class UnsupportedError(UpstreamError):
    """HTTP 405: the registry does not offer the operation (an API it lacks, such as OCI 1.1's referrers)."""

    reason = "unsupported"


class RegistryTimeoutError(RegistryError):
    reason = "timeout"


class RegistryConnectionError(RegistryError):
    reason = "connection error"


class BadResponseError(RegistryError):
    reason = "bad response"


class TooLargeError(BadResponseError):
    """A body longer than the client accepts: it was not read past the cap."""


class DeadlineError(RegistryError):
    reason = "deadline"

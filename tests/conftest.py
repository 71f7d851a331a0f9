"""Shared test setup: a Lambda context fake and an environment that keeps every AWS call local."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

# Before anything imports boto3 or Powertools: no real AWS, no X-Ray daemon.
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "ecr-mirror",
        "POWERTOOLS_METRICS_NAMESPACE": "EcrMirror",
    }
)
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)


@dataclass
class FakeLambdaContext:
    """What the handler reads of a Lambda context; the deadline is real time from creation."""

    timeout_seconds: float = 300.0
    function_name: str = "ecr-mirror"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ecr-mirror"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _end: float = 0.0

    def __post_init__(self) -> None:
        self._end = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._end - time.monotonic()) * 1000))


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(autouse=True)
def _forget_cached_secrets() -> Iterator[None]:
    from mirror import dockerhub

    dockerhub.forget()
    yield
    dockerhub.forget()

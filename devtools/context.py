"""A stand-in for the Lambda context: what the handler reads of it, with a real deadline."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class FakeLambdaContext:
    """The deadline runs in real time from creation, as Lambda's does from the start of the invocation."""

    timeout_seconds: float = 300.0
    function_name: str = "ecr-mirror"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ecr-mirror"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _end: float = 0.0

    def __post_init__(self) -> None:
        self._end = time.monotonic() + self.timeout_seconds

    def deadline_in(self, seconds: float) -> None:
        """Bring the deadline forward (a test's way to make a run run out of time at a chosen point)."""
        self._end = min(self._end, time.monotonic() + seconds)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._end - time.monotonic()) * 1000))

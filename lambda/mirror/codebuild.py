"""The CodeBuild adapter: the MIRROR_IMAGES payload of a batch, and starting its build with brief retries."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .ecr import aws_error
from .planning import Copy

# Worth a second try: the account is busy now, not misconfigured.
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "AccountLimitExceededException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerException",
    }
)


class BuildStartError(Exception):
    """A build could not be started; its images are reported failed and the next run picks them up."""


def mirror_images(copies: Sequence[Copy], source_location: Callable[[str], str], target_host: str) -> str:
    """The JSON array the buildspec reads: registries named as the build must reach them."""
    return json.dumps(
        [
            {
                "source": f"{source_location(c.source.registry)}/{c.source.repository}@{c.digest}",
                "target": f"{target_host}/{c.target.repository}:{c.target.tag}",
                "digest": c.digest,
            }
            for c in copies
        ],
        separators=(",", ":"),
    )


def start_build(
    codebuild: Any,
    project: str,
    payload: str,
    *,
    attempts: int = 3,
    backoff: float = 1.0,
    remaining_seconds: Callable[[], float],
    sleep: Callable[[float], None] = time.sleep,
    extra: Sequence[dict[str, str]] = (),
) -> str:
    """Start one build of `project` with MIRROR_IMAGES=payload (and `extra` variables); returns the build id."""
    reason = "not attempted"
    for attempt in range(attempts):
        if attempt:
            delay = backoff * 2 ** (attempt - 1)
            if remaining_seconds() - delay < 2:
                break
            sleep(delay)
        try:
            response = codebuild.start_build(
                projectName=project,
                environmentVariablesOverride=[
                    {"name": "MIRROR_IMAGES", "value": payload, "type": "PLAINTEXT"},
                    *extra,
                ],
            )
            return str(response["build"]["id"])
        except ClientError as e:
            reason = aws_error(e)
            if e.response.get("Error", {}).get("Code") not in _RETRYABLE_CODES:
                break
        except BotoCoreError as e:
            reason = aws_error(e)
    raise BuildStartError(f"build could not be started: {reason}")

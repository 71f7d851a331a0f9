"""The CodeBuild adapter: the MIRROR_IMAGES payload of a batch, and starting its build with brief retries."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


#: how many of the project's most recent builds are looked at for copies in flight (one ListBuildsForProject page)
RECENT_BUILDS = 100


@dataclass(frozen=True)
class InFlight:
    """A copy a queued or running build of the project is making: its digest, and the build."""

    digest: str
    build: str


def copies_in_flight(codebuild: Any, project: str) -> dict[str, InFlight]:
    """target (as in MIRROR_IMAGES) -> the copy a queued or running build is making of it. CodeBuild keeps a build's
    environment overrides (BatchGetBuilds' environment.environmentVariables), so MIRROR_IMAGES is read from there."""
    ids = codebuild.list_builds_for_project(projectName=project, sortOrder="DESCENDING").get("ids", [])[:RECENT_BUILDS]
    if not ids:
        return {}
    found: dict[str, InFlight] = {}
    for build in codebuild.batch_get_builds(ids=ids).get("builds", []):
        if build.get("buildStatus") != "IN_PROGRESS":  # queued builds are IN_PROGRESS too, in their QUEUED phase
            continue
        variables = build.get("environment", {}).get("environmentVariables", [])
        value = next((v.get("value") for v in variables if v.get("name") == "MIRROR_IMAGES"), None)
        try:
            entries = json.loads(value) if isinstance(value, str) else []
        except ValueError:
            continue
        for entry in entries if isinstance(entries, list) else []:
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("target"), str)
                and isinstance(entry.get("digest"), str)
            ):
                found.setdefault(entry["target"], InFlight(entry["digest"], str(build.get("id"))))
    return found


def idempotency_token(run_id: str, payload: str) -> str:
    """The same run starting the same batch gets the same token: a retried StartBuild returns the first build."""
    return hashlib.sha256(f"{run_id}\n{payload}".encode()).hexdigest()[:32]


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
    token: str | None = None,
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
                **({"idempotencyToken": token} if token else {}),
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

"""The CodeBuild adapter: the MIRROR_IMAGES payload of a batch, and starting its build with brief retries."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
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


#: the build variables that tie a build to the run that started it, and carry back the Docker Hub pulls it spent
RUN_ID_VARIABLE = "MIRROR_RUN_ID"
PULLS_VARIABLE = "MIRROR_PULLS_USED"  # the buildspec's exported variable (BatchGetBuilds' exportedEnvironmentVariables)


@dataclass(frozen=True)
class InFlight:
    """A copy a queued or running build of the project is making: its digest, and the build."""

    digest: str
    build: str


@dataclass(frozen=True)
class PreviousRun:
    """The most recent earlier run whose builds have all finished: how many, and the Docker Hub pulls they report
    spending (None when none of them said: a build that failed early exports nothing)."""

    run_id: str
    builds: int
    pulls: int | None


@dataclass(frozen=True)
class RecentBuilds:
    in_flight: dict[str, InFlight]
    previous: PreviousRun | None = None


def _variable(variables: object, name: str) -> str | None:
    for v in variables if isinstance(variables, list) else []:
        if isinstance(v, dict) and v.get("name") == name and isinstance(v.get("value"), str):
            return str(v["value"])
    return None


def recent_builds(codebuild: Any, project: str, run_id: str = "") -> RecentBuilds:
    """What the project's recent builds tell: target (as in MIRROR_IMAGES) -> the copy a queued or running build is
    making of it, and what the previous run's builds spent. CodeBuild keeps a build's environment overrides
    (BatchGetBuilds' environment.environmentVariables), so MIRROR_IMAGES and MIRROR_RUN_ID are read from there."""
    ids = codebuild.list_builds_for_project(projectName=project, sortOrder="DESCENDING").get("ids", [])[:RECENT_BUILDS]
    if not ids:
        return RecentBuilds({})
    newest_first = {build_id: n for n, build_id in enumerate(ids)}
    builds = sorted(
        (b for b in codebuild.batch_get_builds(ids=ids).get("builds", []) if isinstance(b, dict)),
        key=lambda b: newest_first.get(b.get("id"), len(ids)),
    )
    found: dict[str, InFlight] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    for build in builds:
        variables = build.get("environment", {}).get("environmentVariables", [])
        started_by = _variable(variables, RUN_ID_VARIABLE)
        if started_by and started_by != run_id:
            runs.setdefault(started_by, []).append(build)
        if build.get("buildStatus") != "IN_PROGRESS":  # queued builds are IN_PROGRESS too, in their QUEUED phase
            continue
        value = _variable(variables, "MIRROR_IMAGES")
        try:
            entries = json.loads(value) if value is not None else []
        except ValueError:
            continue
        for entry in entries if isinstance(entries, list) else []:
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("target"), str)
                and isinstance(entry.get("digest"), str)
            ):
                found.setdefault(entry["target"], InFlight(entry["digest"], str(build.get("id"))))
    return RecentBuilds(found, _previous_run(runs))


def _previous_run(runs: Mapping[str, list[dict[str, Any]]]) -> PreviousRun | None:
    """The newest run (runs in order of their newest build) whose builds have all finished."""
    for run_id, builds in runs.items():
        if any(b.get("buildStatus") == "IN_PROGRESS" for b in builds):
            continue
        spent = [_variable(b.get("exportedEnvironmentVariables"), PULLS_VARIABLE) for b in builds]
        counts = [int(v) for v in spent if v is not None and v.strip().isdigit() and len(v.strip()) < 10]
        return PreviousRun(run_id, len(builds), sum(counts) if counts else None)
    return None


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
                "registry": c.source.registry,  # as users write it: docker.io even where an endpoint maps it
                "pulls": c.pulls,
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
    run_id: str = "",
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
                    *([{"name": RUN_ID_VARIABLE, "value": run_id, "type": "PLAINTEXT"}] if run_id else []),
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

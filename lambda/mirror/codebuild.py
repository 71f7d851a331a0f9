"""The CodeBuild adapter: the MIRROR_IMAGES payload of a batch, and starting its build with brief retries."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .artifacts import Artifact
from .ecr import aws_error
from .planning import Copy
from .readback import RUN_ID_RE, MalformedError, count, document, shown, text
from .references import DIGEST, DOMAIN, ECR_REPOSITORY, ECR_REPOSITORY_MAX, HOST_MAX, TAG

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
    #: what was read back malformed, and what was assumed instead (the caller logs them)
    warnings: tuple[str, ...] = ()

    def held(self, target_host: str) -> dict[str, tuple[str, str]]:
        """`repository:tag` -> (digest, build) of each copy in flight into `target_host` (planning.admit's form)."""
        prefix = f"{target_host}/"
        return {t.removeprefix(prefix): (f.digest, f.build) for t, f in self.in_flight.items() if t.startswith(prefix)}


#: a build id as CodeBuild writes it, `<project>:<uuid>`
_BUILD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,254}:[A-Za-z0-9_.-]{1,128}")
_BUILD_ID_MAX = 384
#: CodeBuild's StatusType
_STATUSES = frozenset({"SUCCEEDED", "FAILED", "FAULT", "TIMED_OUT", "IN_PROGRESS", "STOPPED"})
#: a MIRROR_IMAGES target as `mirror_images` writes it: `<ECR host>/<repository>:<tag>`
_TARGET_RE = re.compile(rf"{DOMAIN}/{ECR_REPOSITORY}:{TAG}")
_TARGET_MAX = HOST_MAX + 1 + ECR_REPOSITORY_MAX + 1 + 128
_DIGEST_RE = re.compile(DIGEST)
#: MIRROR_IMAGES of a build of 100 images is at most about 200 KB
_MIRROR_IMAGES_MAX = 1_000_000


@dataclass(frozen=True)
class Build:
    """What the run uses of one BatchGetBuilds record, read strictly."""

    id: str
    running: bool  # IN_PROGRESS: queued builds are IN_PROGRESS too, in their QUEUED phase
    run_id: str | None  # MIRROR_RUN_ID: the run that started it
    copies: tuple[tuple[str, str], ...] = ()  # (target, digest) of each MIRROR_IMAGES entry, for a running build
    pulls: int | None = None  # the exported MIRROR_PULLS_USED, once it has finished


def _variables(value: object) -> dict[str, str]:
    """A CodeBuild variable list (`[{"name": ..., "value": ...}]`) as a mapping; items of another shape are left
    out, and the first of a repeated name is kept."""
    found: dict[str, str] = {}
    for v in value if isinstance(value, list) else []:
        if isinstance(v, dict) and isinstance(v.get("name"), str) and isinstance(v.get("value"), str):
            found.setdefault(v["name"], v["value"])
    return found


def read_build(record: object, asked: Collection[str], warnings: list[str]) -> Build | None:
    """One build record, or None (with a warning) when its id or status is malformed. A malformed MIRROR_RUN_ID
    counts it in no run, a malformed MIRROR_IMAGES holds no copies, a malformed MIRROR_PULLS_USED leaves its pulls
    unknown: each with a warning."""
    if not isinstance(record, dict):
        warnings.append(f"a build record that is not an object ({shown(record)}) was ignored")
        return None
    try:
        build_id = text(record.get("id"), _BUILD_ID_RE, "id", limit=_BUILD_ID_MAX, expected="a build id")
        if build_id not in asked:
            raise MalformedError(f"build {build_id} was not asked for")
        status = record.get("buildStatus")
        if not isinstance(status, str) or status not in _STATUSES:
            raise MalformedError(f"build {build_id} has buildStatus {shown(status)}")
    except MalformedError as e:
        warnings.append(f"a build record was ignored: {e}")
        return None
    environment = record.get("environment", {})
    listed = environment.get("environmentVariables", []) if isinstance(environment, dict) else None
    if not isinstance(listed, list):
        warnings.append(f"build {build_id}: environment.environmentVariables is not a list; read as none")
    variables = _variables(listed)
    run_id = variables.get(RUN_ID_VARIABLE)
    if run_id is not None and not RUN_ID_RE.fullmatch(run_id):
        warnings.append(f"build {build_id}: {RUN_ID_VARIABLE} {shown(run_id)} is malformed; counted in no run")
        run_id = None
    running = status == "IN_PROGRESS"
    copies: tuple[tuple[str, str], ...] = ()
    if running and "MIRROR_IMAGES" in variables:
        copies = _copies(build_id, variables["MIRROR_IMAGES"], warnings)
    pulls = None
    spent = _variables(record.get("exportedEnvironmentVariables")).get(PULLS_VARIABLE)
    if not running and spent:  # "" is the buildspec's word for a build that counted nothing
        try:
            pulls = count(spent, PULLS_VARIABLE)
        except MalformedError as e:
            warnings.append(f"build {build_id}: {e}; its Docker Hub pulls are not known")
    return Build(build_id, running, run_id, copies, pulls)


def _copies(build_id: str, payload: str, warnings: list[str]) -> tuple[tuple[str, str], ...]:
    """(target, digest) of each well-formed MIRROR_IMAGES entry of a running build."""
    try:
        entries = document(payload, _MIRROR_IMAGES_MAX, "MIRROR_IMAGES")
        if not isinstance(entries, list):
            raise MalformedError(f"MIRROR_IMAGES is {shown(entries)}, not a list")
    except MalformedError as e:
        warnings.append(f"build {build_id}: {e}; it holds no copies in flight")
        return ()
    copies, bad = [], []
    for entry in entries:
        try:
            if not isinstance(entry, dict):
                raise MalformedError(f"an entry is {shown(entry)}")
            target = text(
                entry.get("target"), _TARGET_RE, "target", limit=_TARGET_MAX, expected="<ECR host>/<repository>:<tag>"
            )
            digest = text(entry.get("digest"), _DIGEST_RE, "digest", limit=71, expected="sha256:<64 hex digits>")
            copies.append((target, digest))
        except MalformedError as e:
            bad.append(str(e))
    if bad:
        warnings.append(
            f"build {build_id}: {len(bad)} of {len(entries)} MIRROR_IMAGES entries malformed (first: {bad[0]}); "
            "those copies are not held in flight"
        )
    return tuple(copies)


def _build_ids(answer: object, warnings: list[str]) -> list[str]:
    """ListBuildsForProject's ids (newest first), the first RECENT_BUILDS of them; malformed ones left out."""
    ids = answer.get("ids") if isinstance(answer, dict) else None
    if not isinstance(ids, list):
        warnings.append(f"ListBuildsForProject answered ids {shown(ids)}, not a list; no builds read")
        return []
    listed = ids[:RECENT_BUILDS]
    good = [i for i in listed if isinstance(i, str) and len(i) <= _BUILD_ID_MAX and _BUILD_ID_RE.fullmatch(i)]
    if len(good) < len(listed):
        warnings.append(f"{len(listed) - len(good)} malformed build ids left out")
    return list(dict.fromkeys(good))


def recent_builds(codebuild: Any, project: str, run_id: str = "") -> RecentBuilds:
    """What the project's recent builds tell: target (as in MIRROR_IMAGES) -> the copy a queued or running build is
    making of it, and what the previous run's builds spent. CodeBuild keeps a build's environment overrides
    (BatchGetBuilds' environment.environmentVariables), so MIRROR_IMAGES and MIRROR_RUN_ID are read from there.
    Every value is read strictly (`read_build`): what is malformed is a warning, never an exception."""
    warnings: list[str] = []
    ids = _build_ids(codebuild.list_builds_for_project(projectName=project, sortOrder="DESCENDING"), warnings)
    if not ids:
        return RecentBuilds({}, None, tuple(warnings))
    answer = codebuild.batch_get_builds(ids=ids)
    records = answer.get("builds") if isinstance(answer, dict) else None
    if not isinstance(records, list):
        warnings.append(f"BatchGetBuilds answered builds {shown(records)}, not a list; no builds read")
        records = []
    read: dict[str, Build] = {}
    asked = frozenset(ids)
    for record in records:
        build = read_build(record, asked, warnings)
        if build is not None:
            read.setdefault(build.id, build)
    found: dict[str, InFlight] = {}
    runs: dict[str, list[Build]] = {}
    for build in (read[i] for i in ids if i in read):  # newest first
        if build.run_id and build.run_id != run_id:
            runs.setdefault(build.run_id, []).append(build)
        for target, digest in build.copies:
            found.setdefault(target, InFlight(digest, build.id))
    return RecentBuilds(found, _previous_run(runs), tuple(warnings))


def _previous_run(runs: Mapping[str, list[Build]]) -> PreviousRun | None:
    """The newest run (runs in order of their newest build) whose builds have all finished."""
    for run_id, builds in runs.items():
        if any(b.running for b in builds):
            continue
        counts = [b.pulls for b in builds if b.pulls is not None]
        return PreviousRun(run_id, len(builds), sum(counts) if counts else None)
    return None


def idempotency_token(run_id: str, payload: str) -> str:
    """The same run starting the same batch gets the same token: a retried StartBuild returns the first build."""
    return hashlib.sha256(f"{run_id}\n{payload}".encode()).hexdigest()[:32]


class BuildStartError(Exception):
    """A build could not be started; its images are reported failed and the next run picks them up."""


def artifact(a: Artifact) -> dict[str, str]:
    """An artifact as the build reads it: what it is, its digest, the digest it refers to and its tag (if any)."""
    return {"kind": a.kind, "digest": a.digest, "subject": a.subject, **({"tag": a.tag} if a.tag else {})}


def mirror_images(copies: Sequence[Copy], source_location: Callable[[str], str], target_host: str) -> str:
    """The JSON array the buildspec reads: registries named as the build must reach them. A re-tag (`retag`: true,
    `pulls`: 0) names its upstream source as a copy does, but the build writes it from the target repository's own
    manifest of that digest and sends the source no request. `artifacts` (signatures, attestations, SBOMs) are copied
    after the image, each by its digest and under its tag where it has one. `platforms`: of the source index only
    those are copied, in an index the build writes (`single`: the source is one manifest, tagged only if it is of
    one of them)."""
    return json.dumps(
        [
            {
                "source": f"{source_location(c.source.registry)}/{c.source.repository}@{c.digest}",
                "target": f"{target_host}/{c.target.repository}:{c.target.tag}",
                "digest": c.digest,
                "registry": c.source.registry,  # as users write it: docker.io even where an endpoint maps it
                "pulls": c.pulls,
                **({"retag": True} if c.retag else {}),
                **({"artifacts": [artifact(a) for a in c.artifacts]} if c.artifacts else {}),
                **({"platforms": list(c.platforms)} if c.platforms else {}),
                **({"single": True} if c.single else {}),
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
            if remaining_seconds() < delay:  # the caller keeps its own margin (budget.BUILD_CALL_SECONDS)
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

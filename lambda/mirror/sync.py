"""One sync run: read the list, compare digests, create repositories and start builds for what changed, report."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .codebuild import BuildStartError, mirror_images, start_build
from .dockerhub import credential as dockerhub_credential
from .ecr import aws_error, ensure_repositories, registry_auth
from .imagelist import Entry, check_entries, load_text, parse_document, parse_entries
from .planning import Check, Copy, Plan, Status, batches, plan
from .references import DOCKER_HUB
from .registry import Credential, DeadlineError, NotFoundError, RegistryClient, RegistryError
from .settings import Settings

#: seconds kept back from the checks for creating repositories, starting builds and reporting
RESERVE_SECONDS = 5.0
DEADLINE_REASON = "deadline: not checked before the function's deadline"


class InvalidEventError(ValueError):
    """The invocation's event has a field of the wrong type; nothing was started."""


class Log(Protocol):
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def exception(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


class MetricSink(Protocol):
    def add_metric(self, name: str, unit: Any, value: float) -> Any: ...


@dataclass(frozen=True)
class RunRequest:
    images: list[object] | None = None
    dry_run: bool = False


def parse_event(event: object) -> RunRequest:
    """`{"images": [...], "dryRun": true}`, every field optional; unknown fields (schedules, rules) are ignored."""
    if event is None:
        return RunRequest()
    if not isinstance(event, dict):
        raise InvalidEventError(f"the event must be a JSON object, got {type(event).__name__}")
    images = event.get("images")
    if images is not None and not isinstance(images, list):
        raise InvalidEventError(f"event field 'images' must be a list, got {type(images).__name__}")
    dry_run = event.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidEventError(f"event field 'dryRun' must be true or false, got {type(dry_run).__name__}")
    return RunRequest(images, dry_run)


@dataclass(frozen=True)
class Aws:
    """The AWS clients of one run."""

    ecr: Any
    codebuild: Any
    s3: Any
    ssm: Any
    secrets: Any

    @classmethod
    def from_session(cls, session: Any) -> Aws:
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)
        # CodeBuild's StartBuild is retried by start_build itself, which knows the account-limit error.
        once = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5, read_timeout=20)
        return cls(
            ecr=session.client("ecr", config=config),
            codebuild=session.client("codebuild", config=once),
            s3=session.client("s3", config=config),
            ssm=session.client("ssm", config=config),
            secrets=session.client("secretsmanager", config=config),
        )


def load_entries(request: RunRequest, settings: Settings, aws: Aws, package_dir: Path) -> list[Entry]:
    if request.images is not None:
        images = check_entries(request.images, "event")
    else:
        text = load_text(settings.image_list, package_dir=package_dir, s3=aws.s3, ssm=aws.ssm)
        images = parse_document(text, settings.image_list)
    return parse_entries(images, settings.target_prefix)


def check_images(
    entries: Sequence[Entry],
    client: RegistryClient,
    ecr_host: str,
    *,
    concurrency: int,
    log: Log,
) -> dict[int, Check]:
    """Source and target digest of each distinct valid entry, concurrently; never past the deadline.

    This is the fault boundary of a check: below it errors are typed (`RegistryError`); whatever else one image's
    check raises becomes that image's `failed` record, logged with its traceback, and the other images go on.
    """

    def lookup(side: str, host: str, repository: str, reference: str) -> tuple[str | None, str | None]:
        """(digest, None); (None, None) for a target not in ECR yet; (None, reason) on failure. Deadline passes."""
        try:
            return client.manifest_digest(host, repository, reference), None
        except DeadlineError:
            raise
        except NotFoundError as e:
            return None, f"{side} {e}" if side == "source" else None
        except RegistryError as e:
            return None, f"{side} {e}"

    def check(entry: Entry) -> Check:
        assert entry.source is not None
        assert entry.target is not None
        source_digest, error = entry.source.digest, None
        try:
            if source_digest is None:
                source, ref = entry.source, entry.source.reference
                source_digest, error = lookup("source", source.registry, source.repository, ref)
            target_digest, target_error = lookup("target", ecr_host, entry.target.repository, entry.target.tag)
        except DeadlineError:
            # Reported, never dropped: the next run checks it again. A source error found first is the reason.
            return Check(source_digest, None, error or DEADLINE_REASON)
        return Check(source_digest, target_digest, error or target_error)

    def contained(entry: Entry) -> Check:
        try:
            return check(entry)
        except Exception as e:
            log.exception("internal error while checking an image", extra={"entry": entry.index + 1})
            return Check(None, None, f"internal error: {type(e).__name__}")

    todo = [e for e in entries if e.valid and e.duplicate_of is None]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="check") as pool:
        return dict(zip((e.index for e in todo), pool.map(contained, todo), strict=True))


@dataclass(frozen=True)
class Outcome:
    """What happened to one copy after planning: its build, or why it was not started."""

    build: str | None = None
    error: str | None = None


def apply_plan(
    copies: Sequence[Copy],
    settings: Settings,
    aws: Aws,
    client: RegistryClient,
    ecr_host: str,
    log: Log,
    remaining_seconds: Callable[[], float],
) -> tuple[dict[int, Outcome], int]:
    """Create missing repositories, then start builds in batches. Returns outcomes by copy and builds started."""
    outcomes: dict[int, Outcome] = {}
    repositories = ensure_repositories(aws.ecr, {c.target.repository for c in copies if c.status is Status.MISSING})
    for warning in repositories.warnings:
        log.warning(warning)
    ready = []
    for c in copies:
        if c.target.repository in repositories.errors:
            outcomes[c.index] = Outcome(error=repositories.errors[c.target.repository])
        else:
            ready.append(c)
    started = 0
    for batch in batches(ready, settings.images_per_build):
        payload = mirror_images(batch, client.location, client.location(ecr_host))
        try:
            build_id = start_build(
                aws.codebuild, settings.codebuild_project, payload, remaining_seconds=remaining_seconds
            )
        except BuildStartError as e:
            for c in batch:
                outcomes[c.index] = Outcome(error=str(e))
            continue
        started += 1
        for c in batch:
            outcomes[c.index] = Outcome(build=build_id)
    return outcomes, started


def records(
    entries: Sequence[Entry], result: Plan, outcomes: Mapping[int, Outcome], ecr_host: str
) -> list[dict[str, Any]]:
    """One report record per list entry, in list order."""
    out = []
    for entry, decision in zip(entries, result.decisions, strict=True):
        status, error, build = decision.status, decision.error, None
        if decision.copy is not None and decision.copy.index in outcomes:
            outcome = outcomes[decision.copy.index]
            build = outcome.build
            if outcome.error is not None:
                status, error = Status.FAILED, outcome.error
        out.append(
            {
                "source": entry.text,
                "target": f"{ecr_host}/{entry.target}" if entry.target is not None else None,
                "status": str(status),
                "sourceDigest": decision.source_digest,
                "targetDigest": decision.target_digest,
                "build": build,
                "error": error,
            }
        )
    return out


def run(
    request: RunRequest,
    settings: Settings,
    aws: Aws,
    *,
    remaining_seconds: Callable[[], float],
    package_dir: Path,
    log: Log,
    metrics: MetricSink | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """One sync run. Configuration problems raise before anything is created; per-image problems never raise."""
    started_at = datetime.now(UTC)
    run_id = run_id or str(uuid.uuid4())
    entries = load_entries(request, settings, aws, package_dir)
    credentials: dict[str, Credential] = {}
    if settings.dockerhub_secret_arn:
        credentials[DOCKER_HUB] = dockerhub_credential(aws.secrets, settings.dockerhub_secret_arn)
    ecr_host, ecr_credential = registry_auth(aws.ecr)
    credentials[ecr_host] = ecr_credential

    def checks_left() -> float:
        return remaining_seconds() - RESERVE_SECONDS

    client = RegistryClient(
        endpoints=settings.registry_endpoints,
        credentials=credentials,
        timeout=settings.request_timeout,
        pool_size=settings.max_concurrency,
        remaining_seconds=checks_left,
    )
    try:
        checks = check_images(entries, client, ecr_host, concurrency=settings.max_concurrency, log=log)
        result = plan(entries, checks)
        outcomes: dict[int, Outcome] = {}
        builds = 0
        if not request.dry_run and result.copies:
            outcomes, builds = apply_plan(result.copies, settings, aws, client, ecr_host, log, remaining_seconds)
        rate_limits = client.rate_limits()
        requests_sent = client.requests_sent
    finally:
        client.close()

    images = records(entries, result, outcomes, ecr_host)
    counts = {s: 0 for s in Status}
    for image in images:
        counts[Status(image["status"])] += 1
    report: dict[str, Any] = {
        "runId": run_id,
        "dryRun": request.dry_run,
        "startedAt": started_at.isoformat(timespec="seconds"),
        "finishedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": {
            "total": len(images),
            **{str(s): counts[s] for s in Status},
            "buildsStarted": builds,
        },
        "rateLimit": {host: {"limit": r.limit, "remaining": r.remaining} for host, r in sorted(rate_limits.items())},
        "images": images,
    }
    for image in images:
        log.info("image", extra={"image": image})
    log.info(
        "run finished",
        extra={
            "runId": run_id,
            "dryRun": request.dry_run,
            "summary": report["summary"],
            "rateLimit": report["rateLimit"],
            "registryRequests": requests_sent,
        },
    )
    if metrics is not None:
        _emit_metrics(metrics, report)
    if settings.report_location:
        _store_report(aws.s3, settings.report_location, report, log)
    return report


def _emit_metrics(metrics: MetricSink, report: Mapping[str, Any]) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    summary = report["summary"]
    for name, value in (
        ("ImagesChecked", summary["total"] - summary["invalid"]),
        ("ImagesUnchanged", summary["unchanged"]),
        ("ImagesChanged", summary["changed"]),
        ("ImagesMissing", summary["missing"]),
        ("ImagesFailed", summary["failed"] + summary["invalid"]),
        ("BuildsStarted", summary["buildsStarted"]),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    hub = report["rateLimit"].get(DOCKER_HUB)
    if hub and hub["remaining"] is not None:
        metrics.add_metric(name="DockerHubPullsRemaining", unit=MetricUnit.Count, value=hub["remaining"])


def _store_report(s3: Any, location: str, report: Mapping[str, Any], log: Log) -> None:
    """Keep the report in S3 (`<prefix>/<startedAt>-<runId>.json`); failing to store it never loses the run."""
    bucket, _, prefix = location[len("s3://") :].partition("/")
    stamp = report["startedAt"].replace(":", "").replace("+0000", "Z")
    key = "/".join(part for part in (prefix.strip("/"), f"{stamp}-{report['runId']}.json") if part)
    where = f"s3://{bucket}/{key}"
    try:
        s3.put_object(
            Bucket=bucket, Key=key, Body=json.dumps(report, indent=1).encode(), ContentType="application/json"
        )
    except Exception as e:  # the report is still returned and logged
        log.warning("report not stored", extra={"location": where, "error": aws_error(e)})
    else:
        log.info("report stored", extra={"location": where})

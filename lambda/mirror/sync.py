"""One sync run, wired from its stages (`stages`): read the list, select tag sets, compare digests, admit copies,
create repositories and start builds for what changed, report."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from . import report as reports
from .budget import LEASE_SLACK_SECONDS, Budget
from .codebuild import RecentBuilds, recent_builds
from .credentials import registry_credentials
from .ecr import aws_error, registry_auth
from .imagelist import Entry
from .planning import Outcome, admit
from .references import DOCKER_HUB
from .registry import Credential
from .report import MetricSink
from .settings import ConfigurationError, Settings
from .stages import (
    Aws,
    Loaded,
    Log,
    check_list,
    claim_repositories,
    load_entries,
    registry_client,
    start_builds,
)
from .state import AnotherRunError, History, Lease, Place, identity

__all__ = ["Aws", "InvalidEventError", "RunRequest", "parse_event", "run"]


class InvalidEventError(ValueError):
    """The invocation's event has a field of the wrong type; nothing was started."""


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


def _recent_builds(aws: Aws, settings: Settings, log: Log, run_id: str) -> RecentBuilds:
    """The copies queued or running builds make, and what the previous run's builds spent; nothing when CodeBuild
    cannot say (the copies then start as usual)."""
    try:
        recent = recent_builds(aws.codebuild, settings.codebuild_project, run_id)
    except (ClientError, BotoCoreError) as e:
        log.warning("builds in flight not read; copies start as usual", extra={"error": aws_error(e)})
        return RecentBuilds({})
    for warning in recent.warnings:
        log.warning(warning)
    return recent


def _pulls_left(settings: Settings, rate_limits: Mapping[str, Any]) -> int | None:
    """Docker Hub pulls this run may spend: the lowest remaining figure its HEADs saw, less the reserve. Known only
    with credentials (the account's quota, the builds' too); anonymous, the builds egress from another address and
    check their own figure."""
    hub = rate_limits.get(DOCKER_HUB)
    if not settings.dockerhub_credentials or hub is None or hub.remaining is None:
        return None
    return int(hub.remaining) - settings.dockerhub_pull_reserve


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
    """One sync run. Configuration problems raise before anything is created; per-image problems never raise.

    With `REPORT_LOCATION` set, a lease in the bucket keeps one run at a time (a second one answers "another run is
    in progress" and starts nothing), the whole report is stored there, and the check history beside it.
    """
    started_at = datetime.now(UTC)
    run_id = run_id or str(uuid.uuid4())
    ecr_host, ecr_credential = registry_auth(aws.ecr)
    loaded = load_entries(request.images, settings, aws, package_dir, ecr_host)
    credentials = registry_credentials(settings)
    credentials[ecr_host] = ecr_credential
    place = Place.of(settings.report_location) if settings.report_location else None

    lease: Lease | None = None
    if place is not None and not request.dry_run:
        try:
            lease = Lease.take(aws.s3, place, run_id, seconds=remaining_seconds() + LEASE_SLACK_SECONDS)
        except AnotherRunError as e:
            log.warning("run skipped", extra={"runId": run_id, "reason": str(e)})
            if metrics is not None:
                from aws_lambda_powertools.metrics import MetricUnit

                metrics.add_metric(name="RunsSkipped", unit=MetricUnit.Count, value=1)
            return _skipped(run_id, request, started_at, str(e))
        except (ClientError, BotoCoreError) as e:
            raise ConfigurationError(f"cannot take the run lease in {settings.report_location}: {aws_error(e)}") from e
        if lease.warning:
            log.warning(lease.warning, extra={"runId": run_id})
    try:
        return _sync(
            request,
            settings,
            aws,
            loaded,
            credentials,
            ecr_host,
            place,
            remaining_seconds,
            log,
            metrics,
            run_id,
            started_at,
        )
    finally:
        if lease is not None:
            why = lease.release()
            if why:
                log.warning("run lease not released; it expires by itself", extra={"error": why})


def _skipped(run_id: str, request: RunRequest, started_at: datetime, reason: str) -> dict[str, Any]:
    return {
        "runId": run_id,
        "dryRun": request.dry_run,
        "startedAt": started_at.isoformat(timespec="seconds"),
        "finishedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "skipped": reason,
        "summary": reports.summary([], 0),
        "rateLimit": {},
        "previousRun": None,
        "images": [],
    }


def _sync(
    request: RunRequest,
    settings: Settings,
    aws: Aws,
    loaded: Loaded,
    credentials: Mapping[str, Credential],
    ecr_host: str,
    place: Place | None,
    remaining_seconds: Callable[[], float],
    log: Log,
    metrics: MetricSink | None,
    run_id: str,
    started_at: datetime,
) -> dict[str, Any]:
    budget = Budget(remaining_seconds, len(loaded.entries), settings.images_per_build, dry_run=request.dry_run)
    history: History | None = None
    if place is not None:
        history, warning = History.load(aws.s3, place, "event" if request.images is not None else settings.image_list)
        if warning:
            log.warning(warning)
    client = registry_client(settings, credentials, budget)
    try:
        # Least recently checked first, so a list too long for one run is checked in rotation.
        last = (lambda e: history.last_checked(_key(e))) if history is not None else None
        checked = check_list(loaded, client, ecr_host, settings, budget, log, order=last)
        entries, result = checked.entries, checked.plan
        outcomes: dict[int, Outcome] = {}
        builds = 0
        recent = _recent_builds(aws, settings, log, run_id)
        rate_limits = client.rate_limits()  # the checks are done: no more registry requests this run
        if result.copies:
            refused = claim_repositories(result.copies, aws, ecr_host, budget, log, dry_run=request.dry_run)
            outcomes, ready = admit(
                result.copies,
                recent.held(client.location(ecr_host)),
                pulls_left=_pulls_left(settings, rate_limits),
                reserve=settings.dockerhub_pull_reserve,
                refused=refused,
            )
            if not request.dry_run:
                started, builds = start_builds(ready, settings, aws, client, ecr_host, budget, run_id=run_id)
                outcomes.update(started)
        requests_sent = client.requests_sent
    finally:
        client.close()

    images = reports.records(entries, result, outcomes, ecr_host)
    report = reports.assemble(
        run_id,
        request.dry_run,
        started_at,
        images,
        builds=builds,
        tag_sets=checked.tag_sets,
        rate_limits=rate_limits,
        previous=recent.previous,
    )
    for image in images:
        log.info("image", extra={"image": image})
    log.info(
        "run finished",
        extra={
            "runId": run_id,
            "dryRun": request.dry_run,
            "summary": report["summary"],
            "rateLimit": report["rateLimit"],
            "previousRun": report["previousRun"],
            "registryRequests": requests_sent,
        },
    )
    if metrics is not None:
        reports.emit_metrics(metrics, report)
    if history is not None and not request.dry_run:
        keys = {e.index: _key(e) for e in entries if e.valid}
        complete = [keys[i] for i, c in checked.checks.items() if c.complete]
        warning = history.save(complete, keys.values(), time.time())
        if warning:
            log.warning(warning)
    location: str | None = None
    if place is not None:
        location, error = reports.store(aws.s3, place, report)
        if error:
            log.warning("report not stored", extra={"location": location, "error": error})
            location = None
        else:
            log.info("report stored", extra={"location": location})
    report["reportLocation"] = location
    return reports.fit(report)


def _key(entry: Entry) -> str:
    """An entry's name in the check history."""
    return identity(str(entry.source), str(entry.target))

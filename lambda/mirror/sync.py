"""One sync run: read the list, compare digests, create repositories and start builds for what changed, report."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from . import report as reports
from .budget import LEASE_SLACK_SECONDS, Budget, Share
from .codebuild import (
    BuildStartError,
    InFlight,
    RecentBuilds,
    idempotency_token,
    mirror_images,
    recent_builds,
    start_build,
)
from .credentials import build_logins, registry_credentials
from .ecr import SOURCE_TAG, aws_error, claim_repository, registry_auth
from .imagelist import Entry, check_entries, expand_tag_sets, load_text, parse_document, parse_entries
from .planning import Check, Copy, Status, batches, plan
from .references import DOCKER_HUB
from .registry import (
    Credential,
    DeadlineError,
    ManifestHead,
    NotFoundError,
    RegistryClient,
    RegistryError,
    RegistryTimeoutError,
)
from .report import Outcome
from .settings import ConfigurationError, Settings
from .state import AnotherRunError, History, Lease, Place, identity

DEADLINE_REASON = "deadline: not checked before the function's deadline"
NOT_STARTED_REASON = "deadline: not started before the function's deadline"


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
    """The AWS clients of one run (secrets and SSM parameters are read through Powertools' Parameters utility)."""

    ecr: Any
    codebuild: Any
    s3: Any

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
        )


@dataclass(frozen=True)
class Loaded:
    """The run's list: its raw items and their validated entries (tag sets not yet expanded)."""

    images: list[object]
    entries: list[Entry]
    sources: frozenset[str]


def load_entries(
    request: RunRequest, settings: Settings, aws: Aws, package_dir: Path, ecr_host: str | None = None
) -> Loaded:
    """The run's entries, validated; sources only from the deployment's registries (never this account's ECR)."""
    if request.images is not None:
        images = check_entries(request.images, "event")
    else:
        text = load_text(settings.image_list, package_dir=package_dir, s3=aws.s3)
        images = parse_document(text, settings.image_list)
    sources = settings.source_registries - {ecr_host}
    return Loaded(images, parse_entries(images, settings.naming, sources), frozenset(sources))


def list_tag_sets(
    entries: Sequence[Entry], client: RegistryClient, share: Share, *, concurrency: int, timeout: float, log: Log
) -> dict[int, list[str] | str]:
    """Each tag set's source tags (or why they could not be listed), concurrently, within the listings' `share` of
    the run (the client's requests are bounded by it); typed errors become reasons, anything else that one listing
    raises becomes `internal error: <type>` for that entry alone."""
    out_of_time = f"deadline: tags not listed within the {share.seconds:.0f}s the run gives tag listings"

    def listing(entry: Entry) -> list[str] | str:
        assert entry.source is not None
        try:
            return client.list_tags(entry.source.registry, entry.source.repository)
        except DeadlineError:
            return out_of_time
        except RegistryTimeoutError as e:
            # Less of the share left than one request may take: the share cut the last page short.
            return out_of_time if share.left() < timeout else f"source {e}"
        except RegistryError as e:
            return f"source {e}"
        except Exception as e:
            log.exception("internal error while listing tags", extra={"entry": entry.number})
            return f"internal error: {type(e).__name__}"

    todo = [e for e in entries if e.tag_set is not None and e.error is None]
    # Each repository listed once, however many tag sets read it.
    first: dict[tuple[str, str], Entry] = {}
    for e in todo:
        assert e.source is not None
        first.setdefault((e.source.registry, e.source.repository), e)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tags") as pool:
        listed = dict(zip(first, pool.map(listing, first.values()), strict=True))
    return {e.index: listed[(e.source.registry, e.source.repository)] for e in todo if e.source}


def check_images(
    entries: Sequence[Entry],
    client: RegistryClient,
    ecr_host: str,
    *,
    concurrency: int,
    log: Log,
    budget: Budget | None = None,
    order: Callable[[Entry], float] | None = None,
) -> dict[int, Check]:
    """Source and target digest of each distinct valid entry, concurrently; never past the deadline.

    Entries are checked least recently checked first (`order`, then list order), so a list too long for one run is
    checked in rotation. This is the fault boundary of a check: below it errors are typed (`RegistryError`);
    whatever else one image's check raises becomes that image's `failed` record, logged with its traceback, and
    the other images go on.
    """

    def lookup(side: str, host: str, repository: str, reference: str) -> tuple[ManifestHead | None, str | None]:
        """(what the HEAD told, None); (None, None) for a target not in ECR yet; (None, reason) on failure.
        Deadline passes."""
        try:
            return client.manifest_head(host, repository, reference), None
        except DeadlineError:
            raise
        except NotFoundError as e:
            return None, f"{side} {e}" if side == "source" else None
        except RegistryError as e:
            return None, f"{side} {e}"

    def check(entry: Entry) -> Check:
        assert entry.source is not None
        assert entry.target is not None
        source_digest, error, index = entry.source.digest, None, None
        try:
            if source_digest is None:
                source, ref = entry.source, entry.source.reference
                head, error = lookup("source", source.registry, source.repository, ref)
                source_digest, index = (head.digest, head.index) if head is not None else (None, None)
            target, target_error = lookup("target", ecr_host, entry.target.repository, entry.target.tag)
        except DeadlineError:
            # Reported, never dropped: the next run checks it first. A source error found first is the reason.
            return Check(source_digest, None, error or DEADLINE_REASON, complete=False)
        target_digest = target.digest if target is not None else None
        pulls = None
        if error is None and source_digest is not None and source_digest != target_digest:
            # A single manifest costs one pull; an index costs what its copy in ECR counts, when there is one.
            if index is False:
                pulls = 1
            elif target_digest is not None:
                pulls = copy_cost(entry.target.repository, target_digest)
        result = Check(source_digest, target_digest, error or target_error, pulls=pulls)
        if budget is not None:
            budget.found(result, entry.target.repository)
        return result

    def copy_cost(repository: str, digest: str) -> int | None:
        """What copying this image again costs, counted free from the copy in ECR; None (an assumption is made)
        when it cannot be read. Never fails the check, and never runs it past the deadline."""
        try:
            return client.manifest_count(ecr_host, repository, digest)
        except RegistryError:
            return None

    def contained(entry: Entry) -> Check:
        try:
            return check(entry)
        except Exception as e:
            log.exception("internal error while checking an image", extra={"entry": entry.number})
            return Check(None, None, f"internal error: {type(e).__name__}")

    todo = [e for e in entries if e.valid and e.duplicate_of is None]
    if order is not None:
        todo.sort(key=lambda e: (order(e), e.index))
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="check") as pool:
        return dict(zip((e.index for e in todo), pool.map(contained, todo), strict=True))


def apply_plan(
    copies: Sequence[Copy],
    settings: Settings,
    aws: Aws,
    client: RegistryClient,
    ecr_host: str,
    log: Log,
    budget: Budget,
    *,
    in_flight: Mapping[str, InFlight],
    pulls_left: int | None = None,
    dry_run: bool = False,
    run_id: str = "",
) -> tuple[dict[int, Outcome], int]:
    """Claim each target repository for its upstream (creating it where missing), then start builds in batches,
    each step only while the rest of the run still fits before the deadline. A repository that belongs to another
    upstream is never written: its copies are `invalid`. A target that a queued or running build already copies is
    `inflight` and not started again. With `pulls_left` (Docker Hub's remaining pulls above the reserve, known when
    the run uses Docker Hub credentials) Docker Hub copies start, in list order, only while their estimated pulls fit;
    the others are `deferred`. Returns what became of each copy, and the builds started. A dry run only reads (so it
    reports the same `invalid`, `inflight` and `deferred` entries) and starts nothing.
    """
    outcomes: dict[int, Outcome] = {}
    refused: dict[str, Outcome] = {}
    sources = {c.target.repository: c.source.name for c in copies}  # one upstream per repository (the list's rule)
    for name in sorted(sources):
        if budget.left() < budget.repository_pace:
            refused[name] = Outcome(error=NOT_STARTED_REASON)
            continue
        started = time.monotonic()
        claim = claim_repository(aws.ecr, ecr_host, name, sources[name], dry_run=dry_run)
        budget.took("repository", time.monotonic() - started)
        if claim.warning:
            log.warning(claim.warning)
        if claim.adopted and not dry_run:
            log.info("repository adopted", extra={"repository": name, "source": sources[name]})
        if claim.error:
            refused[name] = Outcome(error=claim.error)
        elif claim.owner is not None:
            refused[name] = Outcome(
                error=f"target repository {name} mirrors {claim.owner} (its {SOURCE_TAG} tag), not "
                f"{sources[name]}: a repository belongs to one upstream, so this entry is never copied",
                invalid=True,
            )
    target_host = client.location(ecr_host)
    ready = []
    for c in copies:
        held = in_flight.get(f"{target_host}/{c.target}")
        if c.target.repository in refused:
            outcomes[c.index] = refused[c.target.repository]
        elif held is not None:
            # Never pay twice, and never race two copies for one tag: a different digest waits for that build.
            why = "already being copied" if held.digest == c.digest else f"waiting: {held.digest} is being copied"
            outcomes[c.index] = Outcome(build=held.build, error=f"inflight: {why} by build {held.build}", inflight=True)
        elif c.source.registry == DOCKER_HUB and pulls_left is not None and c.pulls > pulls_left:
            outcomes[c.index] = Outcome(
                error=f"deferred: {c.pulls} pulls needed, {max(pulls_left, 0)} left above the reserve of "
                f"{settings.dockerhub_pull_reserve} until the window resets",
                deferred=True,
            )
        else:
            if c.source.registry == DOCKER_HUB and pulls_left is not None:
                pulls_left -= c.pulls
            ready.append(c)
    builds = 0
    if dry_run:
        return outcomes, builds
    for batch in batches(ready, settings.images_per_build):
        if budget.left() < budget.build_pace:
            outcome = Outcome(error=NOT_STARTED_REASON)
        else:
            payload = mirror_images(batch, client.location, client.location(ecr_host))
            hosts = {c.source.registry for c in batch if c.source.registry in settings.registry_credentials}
            logins = build_logins({h: client.location(h) for h in hosts}, settings)
            started = time.monotonic()
            try:
                build = start_build(
                    aws.codebuild,
                    settings.codebuild_project,
                    payload,
                    remaining_seconds=budget.for_builds,
                    extra=logins,
                    token=idempotency_token(run_id, payload),
                    run_id=run_id,
                )
                outcome = Outcome(build=build)
                builds += 1
            except BuildStartError as e:
                outcome = Outcome(error=str(e))
            budget.took("build", time.monotonic() - started)
        for c in batch:
            outcomes[c.index] = outcome
    return outcomes, builds


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


def _summary(images: Sequence[Mapping[str, Any]], builds: int, tag_sets: int = 0) -> dict[str, int]:
    counts = {str(s): 0 for s in Status}
    for image in images:
        counts[image["status"]] += 1
    return {"total": len(images), **counts, "buildsStarted": builds, "tagSets": tag_sets}


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
    loaded = load_entries(request, settings, aws, package_dir, ecr_host)
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
        "summary": _summary([], 0),
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
    entries = loaded.entries
    tag_sets = sum(1 for e in entries if e.tag_set is not None)
    budget = Budget(remaining_seconds, len(entries), settings.images_per_build, dry_run=request.dry_run)
    history: History | None = None
    if place is not None:
        history, warning = History.load(aws.s3, place, "event" if request.images is not None else settings.image_list)
        if warning:
            log.warning(warning)
    client = RegistryClient(
        endpoints=settings.registry_endpoints,
        credentials=credentials,
        timeout=settings.request_timeout,
        pool_size=settings.max_concurrency,
        remaining_seconds=budget.for_requests,
    )
    try:
        if tag_sets:
            with budget.listings() as share:
                listings = list_tag_sets(
                    entries,
                    client,
                    share,
                    concurrency=settings.max_concurrency,
                    timeout=settings.request_timeout,
                    log=log,
                )
            entries = expand_tag_sets(loaded.images, entries, listings, settings.naming, loaded.sources)
            budget.entries(len(entries))
        keys = {e.index: identity(str(e.source), str(e.target)) for e in entries if e.valid}
        checks = check_images(
            entries,
            client,
            ecr_host,
            concurrency=settings.max_concurrency,
            log=log,
            budget=budget,
            order=(lambda e: history.last_checked(keys[e.index])) if history is not None else None,
        )
        result = plan(entries, checks)
        outcomes: dict[int, Outcome] = {}
        builds = 0
        recent = _recent_builds(aws, settings, log, run_id)
        rate_limits = client.rate_limits()  # the checks are done: no more registry requests this run
        if result.copies:
            outcomes, builds = apply_plan(
                result.copies,
                settings,
                aws,
                client,
                ecr_host,
                log,
                budget,
                in_flight=recent.in_flight,
                pulls_left=_pulls_left(settings, rate_limits),
                dry_run=request.dry_run,
                run_id=run_id,
            )
        requests_sent = client.requests_sent
    finally:
        client.close()

    images = reports.records(entries, result, outcomes, ecr_host)
    report: dict[str, Any] = {
        "runId": run_id,
        "dryRun": request.dry_run,
        "startedAt": started_at.isoformat(timespec="seconds"),
        "finishedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": _summary(images, builds, tag_sets),
        "rateLimit": {host: {"limit": r.limit, "remaining": r.remaining} for host, r in sorted(rate_limits.items())},
        "previousRun": _previous(recent),
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
            "previousRun": report["previousRun"],
            "registryRequests": requests_sent,
        },
    )
    if metrics is not None:
        _emit_metrics(metrics, report)
    if history is not None and not request.dry_run:
        checked = [keys[i] for i, c in checks.items() if c.complete]
        warning = history.save(checked, keys.values(), time.time())
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


def _previous(recent: RecentBuilds) -> dict[str, Any] | None:
    """The previous run's builds and the Docker Hub pulls they spent, where they said (None: no earlier run seen)."""
    if recent.previous is None:
        return None
    return {
        "runId": recent.previous.run_id,
        "builds": recent.previous.builds,
        "dockerHubPulls": recent.previous.pulls,
    }


def _emit_metrics(metrics: MetricSink, report: Mapping[str, Any]) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    summary = report["summary"]
    for name, value in (
        ("ImagesChecked", summary["total"] - summary["invalid"]),
        ("ImagesUnchanged", summary["unchanged"]),
        ("ImagesChanged", summary["changed"]),
        ("ImagesMissing", summary["missing"]),
        ("ImagesDeferred", summary["deferred"]),
        ("ImagesInflight", summary["inflight"]),
        ("ImagesFailed", summary["failed"] + summary["invalid"]),
        ("BuildsStarted", summary["buildsStarted"]),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    hub = report["rateLimit"].get(DOCKER_HUB)
    if hub and hub["remaining"] is not None:
        metrics.add_metric(name="DockerHubPullsRemaining", unit=MetricUnit.Count, value=hub["remaining"])
    previous = report.get("previousRun")
    if previous and previous["dockerHubPulls"] is not None:
        metrics.add_metric(name="DockerHubPullsSpent", unit=MetricUnit.Count, value=previous["dockerHubPulls"])

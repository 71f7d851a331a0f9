"""The run's report: one record per entry, stored whole in S3, and returned in a form that always fits Lambda's
6 MB synchronous response limit."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from .codebuild import PreviousRun
from .ecr import aws_error
from .imagelist import Entry
from .planning import Outcome, Plan, Status, settle
from .references import DOCKER_HUB
from .registry import RateLimit
from .state import Place

#: what a returned report may weigh; Lambda refuses a synchronous response over 6 MB after the work is done
RESPONSE_LIMIT = 5_000_000
#: which records a trimmed response keeps first: what needs a person's attention, then what was copied
KEEP_FIRST = (
    Status.FAILED,
    Status.INVALID,
    Status.CHANGED,
    Status.MISSING,
    Status.DEFERRED,
    Status.INFLIGHT,
    Status.UNCHANGED,
)


def records(
    entries: Sequence[Entry], result: Plan, outcomes: Mapping[int, Outcome], ecr_host: str
) -> list[dict[str, Any]]:
    """One report record per list entry, in list order; `outcomes` maps a copy to what became of it."""
    out = []
    for entry, planned in zip(entries, result.decisions, strict=True):
        decision = settle(planned, outcomes.get(planned.copy.index) if planned.copy is not None else None)
        record: dict[str, Any] = {
            "source": entry.text,
            "target": f"{ecr_host}/{entry.target}" if entry.target is not None else None,
            "status": str(decision.status),
            "sourceDigest": decision.source_digest,
            "targetDigest": decision.target_digest,
            "build": decision.build,
            "error": decision.error,
        }
        if decision.copy is not None and decision.copy.source.registry == DOCKER_HUB:
            record["pulls"] = decision.copy.pulls  # what its copy is estimated to cost of Docker Hub's quota
        if decision.copy is not None and decision.copy.retag:
            record["retag"] = True  # written from the digest the repository holds: no upstream request
        if decision.artifacts:  # what refers to the image; those not `mirrored` yet are copied by its build
            record["artifacts"] = [a.record() for a in decision.artifacts]
        if decision.warnings:
            record["warnings"] = list(decision.warnings)
        if entry.platforms:  # its copy keeps these: an index of the mirror's own, whose digest is not upstream's
            record["platforms"] = list(entry.platform_names)
        if decision.mirrored_from is not None:
            record["mirroredFrom"] = decision.mirrored_from  # the upstream index the mirror's own was made from
        if entry.rule is not None:
            record["rule"] = entry.rule
        out.append(record)
    return out


def _size(value: object) -> int:
    # Measured as the Lambda runtime serialises a response (default separators, ASCII escapes).
    return len(json.dumps(value).encode())


def fit(report: Mapping[str, Any], limit: int = RESPONSE_LIMIT) -> dict[str, Any]:
    """The report itself when it fits in `limit` bytes; otherwise its summary, as many records as fit (failed and
    invalid first, then changed, missing and unchanged, each in list order) and how many were left out. The full
    report is in S3 (`reportLocation`)."""
    if _size(report) <= limit:
        return dict(report)
    images: list[dict[str, Any]] = report["images"]
    head = {k: v for k, v in report.items() if k != "images"}
    head["imagesOmitted"] = len(images)
    head["images"] = []
    budget = limit - _size(head) - 64
    rank = {str(status): n for n, status in enumerate(KEEP_FIRST)}
    kept: list[dict[str, Any]] = []
    for image in sorted(images, key=lambda i: rank.get(i["status"], len(rank))):  # stable: list order within a rank
        size = _size(image) + 2
        if size > budget:
            break
        budget -= size
        kept.append(image)
    head["images"] = kept
    head["imagesOmitted"] = len(images) - len(kept)
    return head


def store(s3: Any, place: Place, report: Mapping[str, Any]) -> tuple[str, str | None]:
    """Keep the whole report in S3 (`<prefix>/<startedAt>-<runId>.json`). Returns (where, why it failed or None)."""
    stamp = report["startedAt"].replace(":", "").replace("+0000", "Z")
    key = place.key(f"{stamp}-{report['runId']}.json")
    where = f"s3://{place.bucket}/{key}"
    try:
        s3.put_object(
            Bucket=place.bucket, Key=key, Body=json.dumps(report, indent=1).encode(), ContentType="application/json"
        )
    except Exception as e:  # the report is still returned and logged
        return where, aws_error(e)
    return where, None


def summary(images: Sequence[Mapping[str, Any]], builds: int, tag_sets: int = 0) -> dict[str, int]:
    """The counts of a run: its records by status, the builds it started, the tag sets it evaluated, and the
    artifacts found, each once per repository (two tags of one image share theirs): those the mirror holds, and
    those a build started by this run copies."""
    counts = {str(s): 0 for s in Status}
    mirrored: set[tuple[str, str, str | None]] = set()
    copying: set[tuple[str, str, str | None]] = set()
    found: set[tuple[str, str, str | None]] = set()
    for image in images:
        counts[image["status"]] += 1
        repository = (image.get("target") or "").rsplit(":", 1)[0]
        for a in image.get("artifacts", ()):
            key = (repository, a["digest"], a["tag"])
            found.add(key)
            if a["mirrored"]:
                mirrored.add(key)
            elif image.get("build") is not None and image["status"] != "inflight":  # by this run's build
                copying.add(key)
    return {
        "total": len(images),
        **counts,
        "buildsStarted": builds,
        "tagSets": tag_sets,
        "artifactsFound": len(found),
        "artifactsMirrored": len(mirrored),
        "artifactsCopying": len(copying),
    }


def assemble(
    run_id: str,
    dry_run: bool,
    started_at: datetime,
    images: list[dict[str, Any]],
    *,
    builds: int,
    tag_sets: int,
    rate_limits: Mapping[str, RateLimit],
    previous: PreviousRun | None,
) -> dict[str, Any]:
    """The run's report: its records, their summary, the rate limits its requests saw and what the previous run's
    builds spent (None: no earlier run seen)."""
    return {
        "runId": run_id,
        "dryRun": dry_run,
        "startedAt": started_at.isoformat(timespec="seconds"),
        "finishedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": summary(images, builds, tag_sets),
        "rateLimit": {host: {"limit": r.limit, "remaining": r.remaining} for host, r in sorted(rate_limits.items())},
        "previousRun": None
        if previous is None
        else {"runId": previous.run_id, "builds": previous.builds, "dockerHubPulls": previous.pulls},
        "images": images,
    }


class MetricSink(Protocol):
    def add_metric(self, name: str, unit: Any, value: float) -> Any: ...


def emit_metrics(metrics: MetricSink, report: Mapping[str, Any]) -> None:
    """The report's figures as CloudWatch metrics (the dashboard's): counts by status, builds, Docker Hub pulls."""
    from aws_lambda_powertools.metrics import MetricUnit

    counts = report["summary"]
    for name, value in (
        ("ImagesChecked", counts["total"] - counts["invalid"]),
        ("ImagesUnchanged", counts["unchanged"]),
        ("ImagesChanged", counts["changed"]),
        ("ImagesMissing", counts["missing"]),
        ("ImagesDeferred", counts["deferred"]),
        ("ImagesInflight", counts["inflight"]),
        ("ImagesFailed", counts["failed"] + counts["invalid"]),
        ("BuildsStarted", counts["buildsStarted"]),
        ("ArtifactsCopying", counts["artifactsCopying"]),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    hub = report["rateLimit"].get(DOCKER_HUB)
    if hub and hub["remaining"] is not None:
        metrics.add_metric(name="DockerHubPullsRemaining", unit=MetricUnit.Count, value=hub["remaining"])
    previous = report.get("previousRun")
    if previous and previous["dockerHubPulls"] is not None:
        metrics.add_metric(name="DockerHubPullsSpent", unit=MetricUnit.Count, value=previous["dockerHubPulls"])

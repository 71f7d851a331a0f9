"""The run's report: one record per entry, stored whole in S3, and returned in a form that always fits Lambda's
6 MB synchronous response limit."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .ecr import aws_error
from .imagelist import Entry
from .planning import Outcome, Plan, Status, settle
from .references import DOCKER_HUB
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

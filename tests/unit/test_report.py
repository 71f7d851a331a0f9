"""The returned report always fits: trimmed by attention (failed, invalid, changed, missing, unchanged)."""

from __future__ import annotations

import json
from typing import Any

from mirror.report import fit


def record(n: int, status: str, pad: int = 100) -> dict[str, Any]:
    return {"source": f"img{n}" + "x" * pad, "status": status, "error": None}


def report_of(images: list[dict[str, Any]]) -> dict[str, Any]:
    return {"runId": "r", "summary": {"total": len(images)}, "reportLocation": "s3://b/k.json", "images": images}


def test_a_report_that_fits_is_returned_whole() -> None:
    report = report_of([record(i, "unchanged") for i in range(10)])
    assert fit(report, limit=10_000) == report


def test_a_report_too_big_keeps_what_needs_attention_first_and_says_how_many_are_left_out() -> None:
    statuses = ["unchanged", "missing", "failed", "changed", "invalid"] * 40
    report = report_of([record(i, s) for i, s in enumerate(statuses)])
    limit = 12_000

    trimmed = fit(report, limit=limit)

    assert len(json.dumps(trimmed).encode()) <= limit
    kept = [i["status"] for i in trimmed["images"]]
    assert trimmed["imagesOmitted"] == 200 - len(kept) > 0
    assert trimmed["summary"] == report["summary"]
    assert trimmed["reportLocation"] == "s3://b/k.json"
    order = ["failed", "invalid", "changed", "missing", "unchanged"]
    assert kept == sorted(kept, key=order.index)
    assert kept.count("failed") == 40
    # within a status, list order
    failed = [i["source"] for i in trimmed["images"] if i["status"] == "failed"]
    assert failed == sorted(failed, key=lambda s: int(s[3:].rstrip("x")))


def test_even_a_summary_alone_fits() -> None:
    report = report_of([record(i, "failed", pad=10_000) for i in range(5)])
    trimmed = fit(report, limit=2_000)
    assert trimmed["images"] == []
    assert trimmed["imagesOmitted"] == 5

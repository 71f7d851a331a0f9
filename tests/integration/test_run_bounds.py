"""Whatever the list's size and the time left, a run ends with a report that fits, reports every entry, starts
nothing it cannot report, checks long lists in rotation, and runs one at a time."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from devtools.context import FakeLambdaContext
from devtools.registries import hang
from mirror.report import KEEP_FIRST, RESPONSE_LIMIT
from mirror.stages import DEADLINE_REASON
from tests.integration.conftest import Mirror

BUCKET = "mirror-reports"
LEASE = "reports/state/lease.json"


def stored_report(s3: Any, location: str) -> dict[str, Any]:
    bucket, _, key = location[len("s3://") :].partition("/")
    data: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return data


def fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_a_report_of_20000_entries_fits_the_response_and_the_full_one_is_in_s3(mirror: Mirror) -> None:
    mirror.seed("a", "a")
    s3 = mirror.report_bucket(BUCKET)
    long_invalid = [f"{mirror.image('x' * 150)};{i}" for i in range(20_000)]
    images: list[object] = [
        long_invalid[i] if i % 2 else mirror.image("a") if i % 4 == 0 else mirror.image("gone") for i in range(20_000)
    ]

    response = mirror.invoke({"images": images})

    size = len(json.dumps(response).encode())
    print(f"returned payload: {size} bytes for 20,000 entries, {len(response['images'])} records kept")
    assert size <= RESPONSE_LIMIT
    full = stored_report(s3, response["reportLocation"])
    assert len(full["images"]) == 20_000
    assert len(json.dumps(full).encode()) > RESPONSE_LIMIT  # the case this is about
    assert response["summary"] == full["summary"]
    assert response["summary"]["total"] == 20_000
    assert response["imagesOmitted"] == 20_000 - len(response["images"]) > 0
    # Kept in order of attention: once a status has records left out, no later status has any kept.
    kept = {s: sum(1 for i in response["images"] if i["status"] == s) for s in map(str, KEEP_FIRST)}
    whole = {s: full["summary"][s] for s in map(str, KEEP_FIRST)}
    assert kept["failed"] == whole["failed"] == 5_000
    short = [s for s in map(str, KEEP_FIRST) if kept[s] < whole[s]]
    assert short
    assert all(kept[s] == 0 for s in list(map(str, KEEP_FIRST))[list(map(str, KEEP_FIRST)).index(short[0]) + 1 :])
    full_records = [json.dumps(i, sort_keys=True) for i in full["images"]]
    assert {json.dumps(i, sort_keys=True) for i in response["images"]} <= set(full_records)


def test_copies_that_cannot_start_before_the_deadline_are_reported_and_the_report_returns_in_time(
    mirror: Mirror,
) -> None:
    # 12 copies, one build each, every StartBuild taking 2 s: far more than the 12 s the function has.
    images = [f"{mirror.image(f'app{i}')}:1@{fake_digest(str(i))}" for i in range(12)]
    mirror.env["IMAGES_PER_BUILD"] = "1"

    def slow(**_: Any) -> None:
        time.sleep(2.0)

    mirror.session.events.register("before-call.codebuild.StartBuild", slow)
    timeout = 12.0
    started = time.monotonic()

    report = mirror.invoke({"images": images}, timeout=timeout)

    assert time.monotonic() - started < timeout
    records = report["images"]
    assert len(records) == 12
    started_builds = {i["build"] for i in records if i["build"]}
    assert len(started_builds) == report["summary"]["buildsStarted"] == len(mirror.builds)
    assert all(i["status"] == "missing" for i in records if i["build"])
    not_started = [i for i in records if not i["build"]]
    assert not_started  # the point of the test: some could not be started in time
    assert all(i["status"] == "failed" and i["error"].startswith("deadline:") for i in not_started)
    assert 2.0 * len(mirror.builds) < timeout


def checked_entries(report: dict[str, Any]) -> set[str]:
    return {i["source"] for i in report["images"] if i["error"] != DEADLINE_REASON}


def test_a_list_too_long_for_one_run_is_checked_in_rotation(mirror: Mirror) -> None:
    names = [f"img{i}" for i in range(10)]
    for name in names:
        mirror.seed(name, name, kind="oci-manifest")
    mirror.report_bucket(BUCKET)
    mirror.env["MAX_CONCURRENCY"] = "1"
    images = [mirror.image(n) for n in names]

    def run_until_half() -> dict[str, Any]:
        # The deadline arrives as the sixth image is asked for: each run has time for half the list.
        context = FakeLambdaContext(120)
        seen: set[str] = set()

        def count(h: BaseHTTPRequestHandler) -> bool:
            if "/manifests/" in h.path:  # an image's check (its artifacts' search asks its repository too)
                seen.add(h.path.split("/manifests/")[0])
            if len(seen) == 6:
                context.deadline_in(3.5)
            return False

        mirror.registries.hub.faults[f"/{mirror.namespace}/"] = count
        return mirror.invoke({"images": images}, context=context)

    first = run_until_half()
    second = run_until_half()

    everything = {f"docker.io/{i}:latest" for i in images}
    assert checked_entries(first) == {f"docker.io/{i}:latest" for i in images[:5]}
    assert checked_entries(second) == everything - checked_entries(first)
    assert len(first["images"]) == len(second["images"]) == 10


def test_a_run_while_another_holds_the_lease_starts_nothing(mirror: Mirror) -> None:
    mirror.seed("a", "a")
    s3 = mirror.report_bucket(BUCKET)
    holder = {"runId": "the-other-run", "since": int(time.time()), "until": int(time.time()) + 600}
    s3.put_object(Bucket=BUCKET, Key=LEASE, Body=json.dumps(holder).encode())

    report = mirror.invoke({"images": [mirror.image("a")]})

    assert report["skipped"].startswith("another run is in progress (run the-other-run")
    assert report["images"] == []
    assert mirror.builds == []
    assert mirror.hub_requests() == []
    assert mirror.session.client("ecr").describe_repositories()["repositories"] == []
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=LEASE)["Body"].read()) == holder  # left to its holder


def test_an_expired_lease_is_taken_over_and_released(mirror: Mirror) -> None:
    mirror.seed("a", "a")
    s3 = mirror.report_bucket(BUCKET)
    dead = {"runId": "killed-run", "since": int(time.time()) - 2000, "until": int(time.time()) - 1000}
    s3.put_object(Bucket=BUCKET, Key=LEASE, Body=json.dumps(dead).encode())

    report = mirror.invoke({"images": [mirror.image("a")]})

    assert "skipped" not in report
    assert report["images"][0]["status"] == "missing"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert LEASE not in keys


def test_two_concurrent_invocations_one_runs_the_other_answers_in_progress(mirror: Mirror) -> None:
    mirror.seed("slow", "s")
    s3 = mirror.report_bucket(BUCKET)
    mirror.registries.hub.faults[f"/{mirror.image('slow')}/manifests/"] = hang(3)
    results: dict[str, dict[str, Any]] = {}
    first = threading.Thread(target=lambda: results.update(first=mirror.invoke({"images": [mirror.image("slow")]})))
    first.start()
    end = time.monotonic() + 30
    while time.monotonic() < end and "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=LEASE):
        time.sleep(0.05)

    second = mirror.invoke({"images": [mirror.image("slow")]})
    first.join(60)

    assert second["skipped"].startswith("another run is in progress")
    assert results["first"]["images"][0]["source"] == f"docker.io/{mirror.image('slow')}:latest"
    assert "skipped" not in results["first"]

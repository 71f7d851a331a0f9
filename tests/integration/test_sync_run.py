"""A sync run against real registries on loopback (Bearer tokens upstream, Basic on the ECR side) and moto."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from devtools.localaws import PROJECT, aws_error
from devtools.registries import ECR_ACCOUNT_HOST, ECR_PASSWORD
from mirror.planning import ASSUMED_PULLS
from tests.integration.conftest import Mirror

ECR = ECR_ACCOUNT_HOST


def by_source(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {image["source"]: image for image in report["images"]}


def test_unchanged_image_starts_no_build(mirror: Mirror) -> None:
    layout = mirror.seed("nginx", "v1", tag="1.27")
    mirror.seed_ecr(f"mirror/{mirror.image('nginx')}", "v1", tag="1.27")

    report = mirror.invoke({"images": [f"{mirror.image('nginx')}:1.27"]})

    (image,) = report["images"]
    assert image["status"] == "unchanged"
    assert image["sourceDigest"] == image["targetDigest"] == layout.digest
    assert image["build"] is None
    assert mirror.builds == []
    assert report["summary"]["unchanged"] == 1
    assert report["summary"]["buildsStarted"] == 0


@pytest.mark.parametrize("kind", ["oci-index", "docker-list", "oci-manifest", "docker-manifest"])
def test_each_manifest_kind_is_compared_by_its_top_level_digest(mirror: Mirror, kind: str) -> None:
    layout = mirror.seed("app", f"content-{kind}", kind=kind, tag="v1")
    mirror.seed_ecr(f"mirror/{mirror.image('app')}", f"content-{kind}", kind=kind, tag="v1")

    report = mirror.invoke({"images": [f"{mirror.image('app')}:v1"]})

    assert report["images"][0]["status"] == "unchanged"
    assert report["images"][0]["sourceDigest"] == layout.digest


def test_changed_and_missing_images_start_one_build_with_exact_mirror_images(mirror: Mirror) -> None:
    new = mirror.seed("nginx", "v2", tag="1.27")
    mirror.seed_ecr(f"mirror/{mirror.image('nginx')}", "v1", tag="1.27")
    redis = mirror.seed("redis", "r1", kind="docker-list", tag="7.4")
    hub, ecr = mirror.registries.hub.location, mirror.registries.ecr.location
    ns = mirror.namespace

    report = mirror.invoke({"images": [f"{ns}/nginx:1.27", f"{ns}/redis:7.4"]})

    images = by_source(report)
    nginx = images[f"docker.io/{ns}/nginx:1.27"]
    assert nginx["status"] == "changed"
    assert nginx["sourceDigest"] == new.digest
    assert nginx["targetDigest"] not in (None, new.digest)
    assert nginx["target"] == f"{ECR}/mirror/{ns}/nginx:1.27"
    assert images[f"docker.io/{ns}/redis:7.4"]["status"] == "missing"
    assert images[f"docker.io/{ns}/redis:7.4"]["targetDigest"] is None
    assert mirror.mirror_images() == [
        [
            {
                "source": f"{hub}/{ns}/nginx@{new.digest}",
                "target": f"{ecr}/mirror/{ns}/nginx:1.27",
                "digest": new.digest,
                "registry": "docker.io",  # as users name it, though an endpoint maps it to the local registry
                "pulls": 3,  # counted from the copy in ECR: an index and its two platforms
            },
            {
                "source": f"{hub}/{ns}/redis@{redis.digest}",
                "target": f"{ecr}/mirror/{ns}/redis:7.4",
                "digest": redis.digest,
                "registry": "docker.io",
                "pulls": ASSUMED_PULLS,  # nothing in ECR to count yet
            },
        ]
    ]
    assert (nginx["pulls"], images[f"docker.io/{ns}/redis:7.4"]["pulls"]) == (3, ASSUMED_PULLS)
    assert mirror.builds[0]["projectName"] == PROJECT
    build_id = nginx["build"]
    assert build_id
    assert build_id.startswith(f"{PROJECT}:")
    assert images[f"docker.io/{ns}/redis:7.4"]["build"] == build_id
    assert report["summary"] == {
        "total": 2,
        "unchanged": 0,
        "changed": 1,
        "missing": 1,
        "failed": 0,
        "invalid": 0,
        "inflight": 0,
        "deferred": 0,
        "buildsStarted": 1,
        "tagSets": 0,
        "artifactsFound": 0,
        "artifactsMirrored": 0,
        "artifactsCopying": 0,
    }


def test_missing_repository_is_created_safely_before_the_build(mirror: Mirror) -> None:
    mirror.seed("redis", "r1", tag="7.4")

    mirror.invoke({"images": [f"{mirror.image('redis')}:7.4"]})

    ecr = mirror.session.client("ecr")
    (repo,) = ecr.describe_repositories(repositoryNames=[f"mirror/{mirror.image('redis')}"])["repositories"]
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName=repo["repositoryName"])["lifecyclePolicyText"])
    assert policy["rules"][0]["selection"]["tagStatus"] == "untagged"
    assert policy["rules"][0]["action"]["type"] == "expire"


def test_builds_are_batched_by_images_per_build(mirror: Mirror) -> None:
    names = [f"img{i}" for i in range(5)]
    for name in names:
        mirror.seed(name, name, kind="oci-manifest")
    mirror.env["IMAGES_PER_BUILD"] = "2"

    report = mirror.invoke({"images": [mirror.image(n) for n in names]})

    batches = mirror.mirror_images()
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [e["target"].rsplit("/", 1)[1] for b in batches for e in b] == [f"{n}:latest" for n in names]
    assert report["summary"]["buildsStarted"] == 3
    assert len({i["build"] for i in report["images"]}) == 3


def test_missing_source_tag_fails_only_that_entry(mirror: Mirror) -> None:
    mirror.seed("nginx", "v1", tag="1.27")
    ns = mirror.namespace

    report = mirror.invoke({"images": [f"{ns}/nginx:9.99", f"{ns}/nginx:1.27", f"{ns}/gone:1"]})

    statuses = [(i["source"], i["status"]) for i in report["images"]]
    assert statuses == [
        (f"docker.io/{ns}/nginx:9.99", "failed"),
        (f"docker.io/{ns}/nginx:1.27", "missing"),
        (f"docker.io/{ns}/gone:1", "failed"),
    ]
    assert report["images"][0]["error"].startswith("source not found:")
    assert f"{ns}/nginx:9.99" in report["images"][0]["error"]
    assert [e["target"].endswith("nginx:1.27") for e in mirror.mirror_images()[0]] == [True]
    assert report["summary"]["failed"] == 2


def test_invalid_entry_is_reported_and_never_reaches_a_request(mirror: Mirror) -> None:
    mirror.seed("nginx", "v1")
    ns = mirror.namespace
    hostile = f"{ns}/nginx;curl${{IFS}}evil"

    report = mirror.invoke({"images": [hostile, f"{ns}/Upper:1", f"{ns}/nginx"]})

    assert [i["status"] for i in report["images"]] == ["invalid", "invalid", "missing"]
    assert report["images"][0]["source"] == hostile
    assert report["images"][0]["target"] is None
    assert "entry 1" in report["images"][0]["error"]
    assert "lower case" in report["images"][1]["error"]
    assert all("curl" not in path and "Upper" not in path for _, path in mirror.hub_requests())
    assert len(mirror.mirror_images()[0]) == 1
    assert report["summary"]["invalid"] == 2


def test_dry_run_reports_everything_and_creates_nothing(mirror: Mirror) -> None:
    mirror.seed("nginx", "v2", tag="1")
    mirror.seed_ecr(f"mirror/{mirror.image('nginx')}", "v1", tag="1")
    mirror.seed("redis", "r1", tag="7")

    report = mirror.invoke({"images": [f"{mirror.image('nginx')}:1", f"{mirror.image('redis')}:7"], "dryRun": True})

    assert report["dryRun"] is True
    assert [i["status"] for i in report["images"]] == ["changed", "missing"]
    assert all(i["build"] is None for i in report["images"])
    assert mirror.builds == []
    assert mirror.session.client("ecr").describe_repositories()["repositories"] == []
    assert report["summary"]["buildsStarted"] == 0


def test_pinned_digest_sends_no_source_request_for_the_image(mirror: Mirror) -> None:
    layout = mirror.seed("nginx", "v1", tag="1.27")

    report = mirror.invoke({"images": [f"{mirror.image('nginx')}:1.27@{layout.digest}"]})

    (image,) = report["images"]
    assert image["status"] == "missing"
    assert image["sourceDigest"] == layout.digest
    assert image["target"].endswith(f"mirror/{mirror.image('nginx')}:1.27")
    # Only the search for what refers to it: HEADs of the tags derived from its digest and the referrers listing
    # (which Docker Hub does not count: it counts GETs of manifests), no pull.
    stem = f"/v2/{mirror.image('nginx')}/manifests/{layout.digest.replace(':', '-')}"
    heads = [p for m, p in mirror.hub_requests() if m == "HEAD"]
    assert sorted(heads) == sorted([f"{stem}.att", f"{stem}.sbom", f"{stem}.sig", stem, f"{stem}.sig"])
    gets = [p for m, p in mirror.hub_requests() if m == "GET"]
    assert gets == [f"/v2/{mirror.image('nginx')}/referrers/{layout.digest}"]
    assert mirror.mirror_images()[0][0]["source"].endswith(f"/{mirror.image('nginx')}@{layout.digest}")


def test_other_registries_mirror_under_their_host(mirror: Mirror) -> None:
    layout = mirror.seed_plain("app", "q1", tag="v1")

    report = mirror.invoke({"images": [f"quay.io/{mirror.image('app')}:v1"]})

    (image,) = report["images"]
    assert image["status"] == "missing"
    assert image["target"] == f"{ECR}/mirror/quay.io/{mirror.image('app')}:v1"
    (entry,) = mirror.mirror_images()[0]
    assert entry["source"] == f"{mirror.registries.plain.location}/{mirror.image('app')}@{layout.digest}"


def test_head_requests_are_free_and_rate_limit_is_reported(mirror: Mirror) -> None:
    for name in ("a", "b", "c"):
        mirror.seed(name, name)
    hub = mirror.registries.hub
    pulls_before = hub.pulls()

    report = mirror.invoke({"images": [mirror.image(n) for n in ("a", "b", "c")]})

    assert {m for m, p in mirror.hub_requests() if "/manifests/" in p} == {"HEAD"}
    assert hub.pulls() == pulls_before
    assert report["rateLimit"]["docker.io"] == {"limit": 100, "remaining": hub.remaining}


def test_lowest_remaining_is_reported(mirror: Mirror) -> None:
    mirror.seed("a", "a")
    hub = mirror.registries.hub
    hub.remaining = 42

    report = mirror.invoke({"images": [mirror.image("a")]})

    assert report["rateLimit"]["docker.io"]["remaining"] == 42


def test_one_token_per_repository_scope(mirror: Mirror) -> None:
    for name in ("a", "b"):
        mirror.seed(name, name, tag="1")
        mirror.seed(name, name + "x", tag="2")
    tokens = mirror.registries.tokens
    before = len(tokens.requests)

    mirror.invoke({"images": [f"{mirror.image(n)}:{t}" for n in ("a", "b") for t in ("1", "2")]})

    scopes = sorted(s for r in tokens.requests[before:] for s in r.scopes)
    assert scopes == [f"repository:{mirror.image('a')}:pull", f"repository:{mirror.image('b')}:pull"]
    assert all(r.username is None for r in tokens.requests[before:])


def test_dockerhub_credentials_are_used_for_the_token_request(mirror: Mirror) -> None:
    mirror.seed("private", "p")
    tokens = mirror.registries.tokens
    mirror.dockerhub_secret(json.dumps({"username": tokens.username, "password": tokens.password}))
    before = len(tokens.requests)

    report = mirror.invoke({"images": [mirror.image("private")]})

    assert report["images"][0]["status"] == "missing"
    assert [r.username for r in tokens.requests[before:]] == [tokens.username]


def test_list_from_s3(mirror: Mirror) -> None:
    mirror.seed("nginx", "v1")
    s3 = mirror.session.client("s3")
    s3.create_bucket(Bucket="mirror-config")
    s3.put_object(Bucket="mirror-config", Key="lists/images.yaml", Body=f"images:\n  - {mirror.image('nginx')}\n")
    mirror.env["IMAGE_LIST"] = "s3://mirror-config/lists/images.yaml"

    report = mirror.invoke({"source": "aws.scheduler"})

    assert [i["source"] for i in report["images"]] == [f"docker.io/{mirror.image('nginx')}:latest"]
    assert report["images"][0]["status"] == "missing"


def test_list_from_an_ssm_secure_string(mirror: Mirror) -> None:
    mirror.seed("nginx", "v1")
    mirror.session.client("ssm").put_parameter(
        Name="/mirror/images",
        Type="SecureString",  # decrypted through Powertools get_parameter
        Value=f"images:\n  - source: {mirror.image('nginx')}\n    target: mirror/web\n",
    )
    mirror.env["IMAGE_LIST"] = "ssm:/mirror/images"

    report = mirror.invoke()

    assert report["images"][0]["target"] == f"{ECR}/mirror/web:latest"
    assert report["images"][0]["status"] == "missing"


def test_default_list_is_used_without_event_images(mirror: Mirror) -> None:
    mirror.env["REGISTRY_ENDPOINTS"] = json.dumps(
        {"docker.io": mirror.registries.hub.url, ECR: mirror.registries.ecr.url}
    )

    report = mirror.invoke({"version": "0", "detail-type": "Scheduled Event"}, timeout=60)

    assert "docker.io/library/amazonlinux:2023" in [i["source"] for i in report["images"]]
    # None of the default images exists in the local "Docker Hub": each fails on its own, none is lost.
    assert {i["status"] for i in report["images"]} == {"failed"}
    assert report["summary"]["total"] == len(report["images"]) >= 4


def test_broken_configuration_fails_before_anything_starts(mirror: Mirror) -> None:
    mirror.seed("nginx", "v1")
    del mirror.env["CODEBUILD_PROJECT"]

    with pytest.raises(Exception, match="CODEBUILD_PROJECT is not set"):
        mirror.invoke({"images": [mirror.image("nginx")]})

    mirror.env["CODEBUILD_PROJECT"] = PROJECT
    mirror.env["IMAGE_LIST"] = "s3://no-such-bucket/images.yaml"
    with pytest.raises(Exception, match="cannot read the image list"):
        mirror.invoke()
    assert mirror.builds == []
    assert mirror.session.client("ecr").describe_repositories()["repositories"] == []


def test_build_that_cannot_start_fails_its_images_with_the_reason(mirror: Mirror) -> None:
    mirror.seed("nginx", "v1")
    over_the_limit = aws_error("AccountLimitExceededException", "Cannot have more than 1 builds in queue")
    mirror.session.events.register("before-call.codebuild.StartBuild", over_the_limit)

    report = mirror.invoke({"images": [mirror.image("nginx")]})

    (image,) = report["images"]
    assert image["status"] == "failed"
    assert image["error"].startswith("build could not be started: AccountLimitExceededException")
    assert image["sourceDigest"] is not None
    assert len(over_the_limit.calls) == 3
    assert report["summary"]["buildsStarted"] == 0


def test_report_is_json_and_stored_in_s3(mirror: Mirror) -> None:
    mirror.seed("nginx", "v1")
    s3 = mirror.session.client("s3")
    s3.create_bucket(Bucket="mirror-reports")
    mirror.env["REPORT_LOCATION"] = "s3://mirror-reports/reports"

    report = mirror.invoke({"images": [mirror.image("nginx")]})

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="mirror-reports")["Contents"]]
    (key,) = [k for k in keys if not k.startswith("reports/state/")]
    assert key.startswith("reports/")
    assert key.endswith(f"-{report['runId']}.json")
    assert report["reportLocation"] == f"s3://mirror-reports/{key}"
    stored = json.loads(s3.get_object(Bucket="mirror-reports", Key=key)["Body"].read())
    assert stored == {k: v for k, v in report.items() if k != "reportLocation"}
    # the lease is released; the check history stays beside the reports
    (state,) = [k for k in keys if k.startswith("reports/state/")]
    assert state.startswith("reports/state/checked-")


def test_logs_metrics_and_no_secret_anywhere(mirror: Mirror, capsys: pytest.CaptureFixture[str]) -> None:
    mirror.seed("a", "a")
    mirror.seed("b", "b")
    tokens = mirror.registries.tokens
    mirror.dockerhub_secret(json.dumps({"username": tokens.username, "password": tokens.password}))
    capsys.readouterr()
    import app

    # Powertools' handler keeps the stream it was created with (sys.stdout then: maybe an earlier test's capture,
    # closed since, which setStream would flush); point it at a buffer for this run.
    logs = io.StringIO()
    handler = app.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous, handler.stream = handler.stream, logs
    try:
        report = mirror.invoke({"images": [mirror.image("a"), mirror.image("b"), "bad name"]})
    finally:
        handler.stream = previous

    output = logs.getvalue() + capsys.readouterr().out  # log lines, then the metrics Powertools prints
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    image_lines = [line for line in lines if line.get("message") == "image"]
    assert [line["image"] for line in image_lines] == report["images"]
    (summary,) = [line for line in lines if line.get("message") == "run finished"]
    assert summary["summary"] == report["summary"]
    (emf,) = [line for line in lines if "_aws" in line]
    assert emf["ImagesChecked"] == [2.0]
    assert emf["ImagesMissing"] == [2.0]
    assert emf["ImagesFailed"] == [1.0]
    assert emf["BuildsStarted"] == [1.0]
    assert emf["DockerHubPullsRemaining"] == [float(mirror.registries.hub.remaining)]
    everything = json.dumps(lines) + json.dumps(report)
    for secret in (tokens.password, ECR_PASSWORD, "Bearer ", "Authorization", "Basic "):
        assert secret not in everything


def test_images_not_checked_before_the_deadline_are_failed_not_dropped(mirror: Mirror) -> None:
    mirror.seed("a", "a")

    report = mirror.invoke({"images": [mirror.image("a"), mirror.image("b")]}, timeout=4.0)

    assert [i["status"] for i in report["images"]] == ["failed", "failed"]
    assert all(i["error"].startswith("deadline") for i in report["images"])
    assert mirror.builds == []
    assert mirror.hub_requests() == []

"""Copy each image once: a target a queued or running build already copies is not started again, and a retried
StartBuild cannot start a batch twice. moto's CodeBuild finishes every build at once and drops its overrides, so
ListBuildsForProject and BatchGetBuilds answer here as real CodeBuild does (shapes below, from the API reference:
`ids` newest first; a queued build is IN_PROGRESS in its QUEUED phase, with StartBuild's overrides in
environment.environmentVariables, PLAINTEXT values readable)."""

from __future__ import annotations

import json
from typing import Any

from devtools.localaws import PROJECT, answering, aws_error
from mirror.codebuild import idempotency_token
from tests.integration.conftest import Mirror


def running_build(build_id: str, mirror_images: list[Any], *, phase: str = "QUEUED") -> dict[str, Any]:
    return {
        "id": build_id,
        "projectName": PROJECT,
        "buildStatus": "IN_PROGRESS",
        "currentPhase": phase,
        "environment": {
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:8.0",
            "environmentVariables": [
                {"name": "ECR_REGISTRY", "value": "123456789012.dkr.ecr.us-east-1.amazonaws.com", "type": "PLAINTEXT"},
                {"name": "MIRROR_IMAGES", "value": json.dumps(mirror_images), "type": "PLAINTEXT"},
            ],
        },
    }


def finished_build(build_id: str, run_id: str, pulls: str | None) -> dict[str, Any]:
    """A build of run `run_id` that has ended, exporting MIRROR_PULLS_USED=`pulls` (None: it exported nothing)."""
    build: dict[str, Any] = {
        "id": build_id,
        "projectName": PROJECT,
        "buildStatus": "SUCCEEDED",
        "currentPhase": "COMPLETED",
        "environment": {"environmentVariables": [{"name": "MIRROR_RUN_ID", "value": run_id, "type": "PLAINTEXT"}]},
    }
    if pulls is not None:
        build["exportedEnvironmentVariables"] = [{"name": "MIRROR_PULLS_USED", "value": pulls}]
    return build


def test_a_copy_already_in_flight_is_not_started_again(mirror: Mirror) -> None:
    mirror.seed("a", "a")
    mirror.seed("b", "b")
    images = [mirror.image("a"), mirror.image("b")]
    first = mirror.invoke({"images": images})
    (payload,) = mirror.mirror_images()
    build_id = first["images"][0]["build"]
    # b's target is being copied from another digest (a newer run's view of a moving tag)
    moved = [payload[0], dict(payload[1], digest="sha256:" + "1" * 64)]
    finished = dict(running_build(f"{PROJECT}:old", payload), buildStatus="SUCCEEDED", currentPhase="COMPLETED")
    mirror.session.events.register(
        "before-call.codebuild.ListBuildsForProject", answering({"ids": [build_id, f"{PROJECT}:old"]})
    )
    mirror.session.events.register(
        "before-call.codebuild.BatchGetBuilds", answering({"builds": [running_build(build_id, moved), finished]})
    )
    builds_before = len(mirror.builds)

    second = mirror.invoke({"images": images})

    a, b = second["images"]
    assert a["status"] == b["status"] == "inflight"
    assert a["build"] == b["build"] == build_id
    assert a["error"] == f"inflight: already being copied by build {build_id}"
    assert b["error"] == f"inflight: waiting: sha256:{'1' * 64} is being copied by build {build_id}"
    assert len(mirror.builds) == builds_before  # nothing paid twice
    assert second["summary"]["inflight"] == 2
    assert second["summary"]["buildsStarted"] == 0


def test_start_build_carries_an_idempotency_token_per_batch(mirror: Mirror) -> None:
    for name in ("a", "b"):
        mirror.seed(name, name)
    mirror.env["IMAGES_PER_BUILD"] = "1"

    report = mirror.invoke({"images": [mirror.image("a"), mirror.image("b")]})

    tokens = [build["idempotencyToken"] for build in mirror.builds]
    payloads = [
        v["value"] for b in mirror.builds for v in b["environmentVariablesOverride"] if v["name"] == "MIRROR_IMAGES"
    ]
    assert tokens == [idempotency_token(report["runId"], p) for p in payloads]
    assert len(set(tokens)) == 2
    assert all(len(t) == 32 for t in tokens)


def test_when_codebuild_cannot_say_the_copies_start_as_usual(mirror: Mirror) -> None:
    mirror.seed("a", "a")

    denied = aws_error("AccessDeniedException", "no")
    mirror.session.events.register("before-call.codebuild.ListBuildsForProject", denied)

    report = mirror.invoke({"images": [mirror.image("a")]})

    assert report["images"][0]["status"] == "missing"
    assert report["images"][0]["build"]

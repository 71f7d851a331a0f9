"""The AWS side of a local run (moto): the copy project, and a session that records each StartBuild call."""

from __future__ import annotations

import copy
from typing import Any

PROJECT = "ecr-mirror-copy"

#: what the function's environment holds on AWS, less the settings of one deployment
LAMBDA_ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "ecr-mirror",
    "POWERTOOLS_METRICS_NAMESPACE": "EcrMirror",
}


def create_copy_project(session: Any) -> None:
    """The CodeBuild project the function starts (moto needs a source location even for NO_SOURCE)."""
    session.client("codebuild").create_project(
        name=PROJECT,
        source={"type": "NO_SOURCE", "location": "none", "buildspec": "version: 0.2"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:8.0",
            "computeType": "BUILD_GENERAL1_SMALL",
        },
        serviceRole=f"arn:aws:iam::123456789012:role/{PROJECT}",
    )


def record_builds(session: Any, builds: list[dict[str, Any]]) -> None:
    """Append the parameters of every StartBuild call made through `session` (moto does not echo overrides)."""
    session.events.register(
        "provide-client-params.codebuild.StartBuild", lambda params, **_: builds.append(copy.deepcopy(params))
    )


def answered(body: dict[str, Any], status: int = 200) -> tuple[Any, dict[str, Any]]:
    """What a `before-call` hook returns to answer an AWS call itself: the HTTP status and the parsed response."""
    import botocore.awsrequest

    return botocore.awsrequest.AWSResponse("", status, botocore.awsrequest.HTTPHeaders(), None), body


def answering(body: dict[str, Any]) -> Any:
    """A `before-call` hook that answers every call it is registered for with `body`."""
    return lambda **_: answered(body)


def aws_error(code: str, message: str, status: int = 400) -> Any:
    """A `before-call` hook that fails every call with an AWS error, as botocore parses one; `.calls` counts them."""
    calls: list[str] = []

    def respond(**_: Any) -> tuple[Any, dict[str, Any]]:
        calls.append(code)
        body = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return answered(body, status)

    respond.calls = calls  # type: ignore[attr-defined]
    return respond


def build_environment(params: dict[str, Any], session: Any) -> dict[str, str]:
    """The variables a build started with `params` sees: PLAINTEXT as given, SECRETS_MANAGER resolved as CodeBuild
    resolves `<secret arn>:<json key>` (from moto's Secrets Manager)."""
    import json

    env = {}
    for variable in params["environmentVariablesOverride"]:
        value = variable["value"]
        if variable["type"] == "SECRETS_MANAGER":
            arn, _, key = value.rpartition(":")
            secret = session.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
            value = json.loads(secret)[key]
        env[variable["name"]] = value
    return env


class LocalCodeBuild:
    """CodeBuild in small, for the sandbox: moto starts builds but drops their overrides and finishes them at once.
    This records each StartBuild's parameters and answers ListBuildsForProject and BatchGetBuilds as CodeBuild does
    (ids newest first; a build's overrides in environment.environmentVariables; IN_PROGRESS until the sandbox has
    run it, then SUCCEEDED or FAILED with the buildspec's exportedEnvironmentVariables)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, dict[str, Any]]] = []  # (build id, StartBuild's parameters), oldest first
        self._finished: dict[str, tuple[bool, dict[str, str]]] = {}
        self._params: list[dict[str, Any]] = []  # StartBuild's parameters, until its answer names the build

    def attach(self, session: Any) -> None:
        record_builds(session, self._params)
        events = session.events
        events.register("after-call.codebuild.StartBuild", self._started)
        events.register("before-call.codebuild.ListBuildsForProject", self._list)
        events.register("before-call.codebuild.BatchGetBuilds", self._batch)

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        return [(i, p) for i, p in self.started if i not in self._finished]

    def finish(self, build_id: str, succeeded: bool, exported: dict[str, str]) -> None:
        self._finished[build_id] = (succeeded, exported)

    def _started(self, parsed: dict[str, Any], **_: Any) -> None:
        if "build" in parsed and self._params:
            self.started.append((str(parsed["build"]["id"]), self._params.pop(0)))

    def _list(self, **_: Any) -> tuple[Any, dict[str, Any]]:
        return answered({"ids": [i for i, _ in reversed(self.started)]})

    def _batch(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        import json

        # before-call sees the serialized request: CodeBuild speaks JSON, so the ids are in its body
        body = params.get("body") or b"{}"
        asked = json.loads(body.decode() if isinstance(body, bytes) else body).get("ids", [])
        known = dict(self.started)
        builds = []
        for build_id in asked:
            if build_id not in known:
                continue
            variables = [
                {"name": v["name"], "value": v["value"], "type": v["type"]}
                for v in known[build_id]["environmentVariablesOverride"]
            ]
            build: dict[str, Any] = {
                "id": build_id,
                "projectName": PROJECT,
                "buildStatus": "IN_PROGRESS",
                "currentPhase": "QUEUED",
                "environment": {"environmentVariables": variables},
            }
            if build_id in self._finished:
                succeeded, exported = self._finished[build_id]
                build.update(buildStatus="SUCCEEDED" if succeeded else "FAILED", currentPhase="COMPLETED")
                build["exportedEnvironmentVariables"] = [{"name": k, "value": v} for k, v in exported.items()]
            builds.append(build)
        return answered({"builds": builds})

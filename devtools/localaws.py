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

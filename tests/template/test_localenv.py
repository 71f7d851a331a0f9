"""`make local-env`: the env-vars file for `sam local invoke`, evaluated from the deployed stack (moto's
CloudFormation), holds every variable the template declares for the function and nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devtools.localenv import declared_variables, describe, load_template, local_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.mark.parametrize("path", sorted((ROOT / "events").glob("local-env*.json")), ids=lambda p: p.name)
def test_an_env_file_holds_only_variables_the_template_declares(template: dict[str, Any], path: Path) -> None:
    # SAM drops a variable the template does not declare, silently (POWERTOOLS_TRACE_DISABLED was one): the
    # tracer needs none locally, since Powertools disables itself under AWS_SAM_LOCAL.
    (function,) = json.loads(path.read_text()).values()
    assert set(function) <= set(declared_variables(template))


def deployed(template: dict[str, Any]) -> dict[str, Any]:
    """A stack with the template's own parameters and the outputs local-env reads (moto cannot create the SAM
    resources; a bucket and a literal project name stand in)."""
    return {
        "Parameters": template["Parameters"],
        "Resources": {"MirrorBucket": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {
            "BucketName": {"Value": {"Ref": "MirrorBucket"}},
            "BuildProjectName": {"Value": "team-mirror-CopyProject-AbC123"},
        },
    }


def test_the_deployed_stacks_values_fill_every_declared_variable(template: dict[str, Any]) -> None:
    overrides = {"TargetPrefix": "hub", "ImageList": "LISTS_IN_BUCKET", "ImagesPerBuild": "25"}
    with mock_aws():
        session = boto3.session.Session(region_name="eu-west-1")
        cloudformation = session.client("cloudformation")
        cloudformation.create_stack(
            StackName="team-mirror",
            TemplateBody=json.dumps(deployed(template)),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items()],
        )
        parameters, outputs = describe("team-mirror", session=session)
        bucket = outputs["BucketName"]

    env = local_env(template, parameters, outputs)["MirrorFunction"]

    assert set(env) == set(declared_variables(template))
    assert env["CODEBUILD_PROJECT"] == "team-mirror-CopyProject-AbC123"  # not the default stack's ecr-mirror-copy
    assert env["IMAGE_LIST"] == f"s3://{bucket}/lists/images.yaml"
    assert env["REPORT_LOCATION"] == f"s3://{bucket}/reports"  # so the local run holds the lease, keeps history
    assert env["TARGET_PREFIX"] == "hub"
    assert env["IMAGES_PER_BUILD"] == "25"
    assert env["SOURCE_REGISTRIES"] == template["Parameters"]["SourceRegistries"]["Default"]
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_a_list_in_the_package_is_named_as_deployed(template: dict[str, Any]) -> None:
    env = local_env(
        template,
        {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()},
        {"BucketName": "b", "BuildProjectName": "p"},
    )["MirrorFunction"]
    assert env["IMAGE_LIST"] == "images.yaml"
    assert env["DOCKERHUB_SECRET_ARN"] == ""

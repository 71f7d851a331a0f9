"""template.yaml transformed offline by samtranslator: assertions on the CloudFormation that would be deployed."""

from __future__ import annotations

import copy
import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
Resource = dict[str, Any]
# the REGISTRY_CREDENTIALS secrets: a name prefix, as the function enforces (settings.SECRET_PREFIX)
SECRETS = {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:ecr-mirror/*"}
COPY_PROJECT = {"Fn::GetAtt": ["CopyProject", "Arn"]}
ANY_REPOSITORY = {"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/*"}
TAGGED = {"StringEquals": {"aws:ResourceTag/managed-by": "ecr-mirror"}}
TAGGED_ON_CREATE = {"StringEquals": {"aws:RequestTag/managed-by": "ecr-mirror"}}
PUSH = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    template: dict[str, Any] = yaml_parse((ROOT / "template.yaml").read_text())
    return template


@pytest.fixture(scope="module")
def cfn(source: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(source)
    template["Resources"]["MirrorFunction"]["Properties"]["CodeUri"] = "s3://bucket/function.zip"
    out: dict[str, Any] = transform(template, {}, _NoManagedPolicies())
    return out


def of_type(cfn: dict[str, Any], kind: str) -> dict[str, Resource]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == kind}


def statements(role: Resource) -> list[dict[str, Any]]:
    out = []
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if isinstance(statement, dict) and "Fn::If" in statement:
                statement = statement["Fn::If"][1]  # the statement when its condition holds
            out.append(statement)
    return out


def test_function_runtime_and_limits(cfn: dict[str, Any]) -> None:
    fn = cfn["Resources"]["MirrorFunction"]
    assert fn["Type"] == "AWS::Lambda::Function"
    p = fn["Properties"]
    assert p["Runtime"] == "python3.12"
    assert p["Handler"] == "app.handler"
    assert p["Architectures"] == ["arm64"]
    # opt-in (a reservation fails on a new account's quota of 10); the lease keeps one run at a time
    assert p["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert p["Timeout"] == 900
    assert p["MemorySize"] >= 512
    assert p["TracingConfig"] == {"Mode": "Active"}
    assert p["LoggingConfig"] == {"LogGroup": {"Ref": "MirrorFunctionLogGroup"}}


def test_nightly_schedule_without_retries(cfn: dict[str, Any], source: dict[str, Any]) -> None:
    (schedule,) = of_type(cfn, "AWS::Scheduler::Schedule").values()
    p = schedule["Properties"]
    assert p["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    assert source["Parameters"]["ScheduleExpression"]["Default"] == "cron(0 3 * * ? *)"
    assert p["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert p["Target"]["Arn"] == {"Fn::GetAtt": ["MirrorFunction", "Arn"]}
    assert json.loads(p["Target"]["Input"]) == json.loads((ROOT / "events" / "scheduled.json").read_text())
    (invoke_config,) = of_type(cfn, "AWS::Lambda::EventInvokeConfig").values()
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == 0


def test_environment_is_exactly_what_the_code_reads(cfn: dict[str, Any], settings_variables: set[str]) -> None:
    variables = set(cfn["Resources"]["MirrorFunction"]["Properties"]["Environment"]["Variables"])
    powertools = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
    assert variables == settings_variables | powertools


def test_function_role_is_least_privilege(cfn: dict[str, Any]) -> None:
    role = cfn["Resources"]["MirrorFunctionRole"]
    repositories = {
        "Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${TargetPrefix}/*"
    }
    expected = {
        "WriteOwnLogs": (["logs:CreateLogStream", "logs:PutLogEvents"], {"Fn::Sub": "${MirrorFunctionLogGroup.Arn}"}),
        "EcrAuthTokenAllowsNoResource": ("ecr:GetAuthorizationToken", "*"),
        "ReadCreateConfigureMirroredRepositories": (
            [
                "ecr:BatchGetImage",
                "ecr:CreateRepository",
                "ecr:ListTagsForResource",
                "ecr:PutLifecyclePolicy",
                "ecr:TagResource",
            ],
            repositories,
        ),
        "CreateTaggedRepositoriesUnderUpstreamPrefixes": ("ecr:CreateRepository", ANY_REPOSITORY),
        "ManageTaggedRepositories": (
            ["ecr:BatchGetImage", "ecr:ListTagsForResource", "ecr:PutLifecyclePolicy", "ecr:TagResource"],
            ANY_REPOSITORY,
        ),
        "StartTheCopyProjectOnly": (
            ["codebuild:BatchGetBuilds", "codebuild:ListBuildsForProject", "codebuild:StartBuild"],
            COPY_PROJECT,
        ),
        "DenyBuildspecOverride": ("codebuild:StartBuild", COPY_PROJECT),
        "DenyOverridesButTheCopysOwnVariables": ("codebuild:StartBuild", COPY_PROJECT),
        "DenyImageOverride": ("codebuild:StartBuild", COPY_PROJECT),
        "DenySourceOverride": ("codebuild:StartBuild", COPY_PROJECT),
        "ReadImageLists": ("s3:GetObject", {"Fn::Sub": "${MirrorBucket.Arn}/lists/*"}),
        "WriteRunReportsAndState": ("s3:PutObject", {"Fn::Sub": "${MirrorBucket.Arn}/reports/*"}),
        "ReadRunState": ("s3:GetObject", {"Fn::Sub": "${MirrorBucket.Arn}/reports/state/*"}),
        "ReleaseRunLease": ("s3:DeleteObject", {"Fn::Sub": "${MirrorBucket.Arn}/reports/state/lease.json"}),
        "ReadImageListParameters": (
            "ssm:GetParameter",
            {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/ecr-mirror/*"},
        ),
        "TracingAllowsNoResource": (["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "*"),
        "ReadDockerHubSecret": ("secretsmanager:GetSecretValue", {"Ref": "DockerHubSecretArn"}),
        "ReadRegistrySecrets": ("secretsmanager:GetSecretValue", SECRETS),
        "DecryptListAndSecretWithTheNamedKey": ("kms:Decrypt", {"Ref": "KmsKeyArn"}),
    }
    got = {s["Sid"]: (s["Action"], s["Resource"]) for s in statements(role)}
    assert got == expected
    # Under UpstreamPrefixes (a JSON map, no prefix ARNs): only repositories the function tags, and tagged ones.
    by_sid = {s["Sid"]: s for s in statements(role)}
    assert by_sid["CreateTaggedRepositoriesUnderUpstreamPrefixes"]["Condition"] == TAGGED_ON_CREATE
    assert by_sid["ManageTaggedRepositories"]["Condition"] == TAGGED
    (kms,) = [s for s in statements(role) if s["Action"] == "kms:Decrypt"]
    assert kms["Condition"] == {
        "StringEquals": {
            "kms:ViaService": [
                {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"},
                {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"},
            ]
        }
    }
    denied = {s["Sid"] for s in statements(role) if s["Effect"] == "Deny"}
    assert denied == {sid for sid in expected if sid.startswith("Deny")}
    assert all(s["Effect"] == "Allow" for s in statements(role) if s["Sid"] not in denied)
    assert role["Properties"].get("ManagedPolicyArns") in (None, [])


def test_the_function_may_start_builds_only_with_the_projects_buildspec_image_source_and_its_own_variables(
    cfn: dict[str, Any],
) -> None:
    """StartBuild on the copy project is as powerful as the build role (a buildspecOverride runs any code with it, a
    variable override redirects its logins): the function's role is denied every override but those it sends."""
    by_sid = {s["Sid"]: s for s in statements(cfn["Resources"]["MirrorFunctionRole"])}
    assert by_sid["DenyBuildspecOverride"]["Condition"] == {"Null": {"codebuild:source.buildspec": "false"}}
    assert by_sid["DenyImageOverride"]["Condition"] == {"Null": {"codebuild:environment.image": "false"}}
    assert by_sid["DenySourceOverride"]["Condition"] == {"Null": {"codebuild:source.location": "false"}}
    ((operator, keys),) = by_sid["DenyOverridesButTheCopysOwnVariables"]["Condition"].items()
    ((key, patterns),) = keys.items()
    assert (operator, key) == ("ForAnyValue:StringNotLike", "codebuild:environment.environmentVariables.name")

    def allowed(name: str) -> bool:  # IAM's StringLike: * is any run of characters
        return any(fnmatch.fnmatchcase(name, p) and "?" not in p and "[" not in p for p in patterns)

    sent = function_build_variables()
    assert sent == {
        "MIRROR_IMAGES",
        "MIRROR_RUN_ID",
        *(f"REGISTRY_LOGIN_{n}_{part}" for n in (1, 2) for part in ("HOST", "USERNAME", "PASSWORD")),
    }
    assert all(allowed(name) for name in sent)  # what the function sends, it may send
    for name in ("ECR_REGISTRY", "TARGET_PREFIX", "UPSTREAM_PREFIXES", "REGISTRY_ENDPOINTS", "DOCKERHUB_USERNAME"):
        assert not allowed(name), name  # where the build writes and whom it trusts are the stack's
    for name in ("PATH", "LD_PRELOAD", "PYTHONPATH", "REGISTRY_AUTH_FILE", "COPY_TIMEOUT_SECONDS", "mirror_images"):
        assert not allowed(name), name


def function_build_variables() -> set[str]:
    """The names of the variables the function overrides in a StartBuild (codebuild.start_build, with the logins of
    credentials.build_logins for two registries), caught from a stand-in CodeBuild client."""
    from mirror.codebuild import start_build
    from mirror.credentials import build_logins
    from mirror.settings import Settings

    calls: list[dict[str, Any]] = []

    class CodeBuild:
        def start_build(self, **params: Any) -> dict[str, Any]:
            calls.append(params)
            return {"build": {"id": "p:1"}}

    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-mirror/{}-AbCdEf"
    settings = Settings.from_env(
        {
            "CODEBUILD_PROJECT": "ecr-mirror-copy",
            "REGISTRY_CREDENTIALS": json.dumps({"a.example": arn.format("a"), "b.example": arn.format("b")}),
        }
    )
    logins = build_logins({"a.example": "a.example", "b.example": "b.example"}, settings)
    start_build(CodeBuild(), "p", "[]", remaining_seconds=lambda: 60.0, extra=logins, run_id="run")
    (params,) = calls
    assert "buildspecOverride" not in params
    assert set(params) <= {"projectName", "idempotencyToken", "environmentVariablesOverride"}
    return {v["name"] for v in params["environmentVariablesOverride"]}


def test_copy_role_may_only_push_under_the_prefix(cfn: dict[str, Any]) -> None:
    role = cfn["Resources"]["CopyRole"]
    got = {s["Sid"]: (s["Action"], s["Resource"]) for s in statements(role)}
    assert got == {
        "WriteBuildLogs": (["logs:CreateLogStream", "logs:PutLogEvents"], {"Fn::Sub": "${CopyLogGroup.Arn}"}),
        "EcrAuthTokenAllowsNoResource": ("ecr:GetAuthorizationToken", "*"),
        "PushToMirroredRepositories": (
            [
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:CompleteLayerUpload",
                "ecr:GetDownloadUrlForLayer",
                "ecr:InitiateLayerUpload",
                "ecr:PutImage",
                "ecr:UploadLayerPart",
            ],
            {"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${TargetPrefix}/*"},
        ),
        "PushToTaggedRepositories": (PUSH, ANY_REPOSITORY),
        "ReadDockerHubSecret": ("secretsmanager:GetSecretValue", {"Ref": "DockerHubSecretArn"}),
        "ReadRegistrySecrets": ("secretsmanager:GetSecretValue", SECRETS),
        "DecryptSecretWithTheNamedKey": ("kms:Decrypt", {"Ref": "KmsKeyArn"}),
    }
    (tagged,) = [s for s in statements(role) if s["Sid"] == "PushToTaggedRepositories"]
    assert tagged["Condition"] == TAGGED
    (kms,) = [s for s in statements(role) if s["Action"] == "kms:Decrypt"]
    assert kms["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}
    }


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-mirror/dockerhub-AbCdEf", True),
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-mirror/dockerhub", False),  # partial ARN
        ("ecr-mirror/dockerhub", False),
    ],
)
def test_secret_parameters_take_only_full_arns(source: dict[str, Any], value: str, accepted: bool) -> None:
    import re

    pattern = source["Parameters"]["DockerHubSecretArn"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


def test_no_wildcard_action_and_wildcard_resource_only_where_aws_allows_nothing_else(cfn: dict[str, Any]) -> None:
    for name, role in of_type(cfn, "AWS::IAM::Role").items():
        for statement in statements(role):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all("*" not in a for a in actions), (name, actions)
            if statement["Resource"] == "*":
                assert set(actions) <= {
                    "ecr:GetAuthorizationToken",
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                }
    scheduler_roles = [r for r in of_type(cfn, "AWS::IAM::Role").values() if "scheduler" in json.dumps(r)]
    (scheduler_role,) = scheduler_roles
    (invoke,) = statements(scheduler_role)
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert invoke["Resource"] == {"Fn::GetAtt": ["MirrorFunction", "Arn"]}


def test_copy_project(cfn: dict[str, Any]) -> None:
    p = cfn["Resources"]["CopyProject"]["Properties"]
    assert p["Source"]["Type"] == "NO_SOURCE"
    assert p["Environment"]["Image"] == "aws/codebuild/standard:8.0"
    assert p["Environment"]["PrivilegedMode"] is False
    assert p["TimeoutInMinutes"] <= 60
    assert p["LogsConfig"]["CloudWatchLogs"] == {"Status": "ENABLED", "GroupName": {"Ref": "CopyLogGroup"}}
    secrets = [v["Fn::If"][1] for v in p["Environment"]["EnvironmentVariables"] if "Fn::If" in v]
    assert {s["Name"]: s["Type"] for s in secrets} == {
        "DOCKERHUB_USERNAME": "SECRETS_MANAGER",
        "DOCKERHUB_PASSWORD": "SECRETS_MANAGER",
    }


def test_the_buildspec_carries_the_copy_module_with_the_trust_rules_inlined() -> None:
    from devtools.buildspec import GENERATED, TRUST, copy_program, inlined_trust, program

    carried = copy_program()
    assert carried == program().rstrip("\n"), "run `make buildspec` after changing the copier or mirror/trust.py"
    assert carried.startswith(GENERATED)  # marked as generated, naming both modules and the command
    assert "from mirror.trust import" not in carried
    assert inlined_trust() in carried
    assert inlined_trust().strip() in TRUST.read_text()


def test_the_build_phase_runs_python_isolated_and_leaves_the_ecr_login_to_the_program() -> None:
    """The ECR token goes only to the registry the program derives from CODEBUILD_BUILD_ARN; and no file in the
    build's directory, nor any PYTHON* variable, changes what the program imports (python3 -I)."""
    from devtools.buildspec import buildspec

    spec = buildspec()
    commands = [c for phase in spec["phases"].values() for c in phase.get("commands", [])]
    (heredoc,) = [c for c in spec["phases"]["build"]["commands"] if "<<'COPY'" in c]
    shell = [c for c in commands if c is not heredoc]
    assert not [c for c in shell if "ECR_REGISTRY" in c or "get-login-password" in c or "dkr.ecr" in c]
    assert heredoc.startswith("python3 -I - <<'COPY'\n")


def test_the_copy_project_knows_where_it_may_write(cfn: dict[str, Any]) -> None:
    variables = {
        v["Name"]: v["Value"]
        for v in cfn["Resources"]["CopyProject"]["Properties"]["Environment"]["EnvironmentVariables"]
        if "Name" in v
    }
    assert variables["TARGET_PREFIX"] == {"Ref": "TargetPrefix"}
    assert variables["UPSTREAM_PREFIXES"] == {"Ref": "UpstreamPrefixes"}
    assert "ECR_REGISTRY" not in variables  # derived from CODEBUILD_BUILD_ARN by the build itself
    # as the function reads it: an entry's registry is derived from its source host, never taken on its word
    assert variables["REGISTRY_ENDPOINTS"] == {"Ref": "RegistryEndpoints"}
    function = cfn["Resources"]["MirrorFunction"]["Properties"]["Environment"]["Variables"]
    assert function["REGISTRY_ENDPOINTS"] == variables["REGISTRY_ENDPOINTS"]
    assert int(variables["COPY_TIMEOUT_SECONDS"]) <= 60 * 60


def test_bucket_is_private_encrypted_versioned_and_tls_only(cfn: dict[str, Any]) -> None:
    p = cfn["Resources"]["MirrorBucket"]["Properties"]
    assert p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(p["PublicAccessBlockConfiguration"].values())
    assert len(p["PublicAccessBlockConfiguration"]) == 4
    assert p["VersioningConfiguration"] == {"Status": "Enabled"}
    (deny,) = cfn["Resources"]["MirrorBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_alarms_and_rules_notify_the_topic(cfn: dict[str, Any]) -> None:
    alarms = of_type(cfn, "AWS::CloudWatch::Alarm")
    metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}
    assert metrics == {("AWS/Lambda", "Errors"), ("EcrMirror", "ImagesFailed")}
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": "AlertTopic"}] for a in alarms.values())
    pattern = cfn["Resources"]["BuildFailedRule"]["Properties"]["EventPattern"]
    assert pattern["detail-type"] == ["CodeBuild Build State Change"]
    assert "FAILED" in pattern["detail"]["build-status"]
    assert pattern["detail"]["project-name"] == [{"Ref": "CopyProject"}]
    assert cfn["Resources"]["AlertSubscription"]["Condition"] == "HasAlertEmail"


def test_outputs(cfn: dict[str, Any]) -> None:
    assert set(cfn["Outputs"]) >= {
        "MirrorRegistryUri",
        "FunctionName",
        "BuildProjectName",
        "BucketName",
        "DashboardUrl",
    }
    assert "#dashboards/dashboard/${MirrorDashboard}" in cfn["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]


def test_the_dashboard_shows_what_the_function_emits_and_the_builds(cfn: dict[str, Any]) -> None:
    from mirror.report import emit_metrics, summary

    class Sink:
        names: set[str] = set()

        def add_metric(self, name: str, unit: Any, value: float) -> None:
            self.names.add(name)

    counts = {**summary([], builds=0), "total": 1}
    sink = Sink()
    previous = {"runId": "r", "builds": 1, "dockerHubPulls": 5}
    emit_metrics(
        sink, {"summary": counts, "rateLimit": {"docker.io": {"limit": 100, "remaining": 50}}, "previousRun": previous}
    )
    body = cfn["Resources"]["MirrorDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    substituted = body
    for name in ("AWS::Region", "CopyProject", "MirrorFunction"):
        substituted = substituted.replace("${" + name + "}", name)
    assert "${" not in substituted
    widgets = json.loads(substituted)["widgets"]
    shown = {tuple(m[:2]) for w in widgets for m in w["properties"]["metrics"]}
    ours = {name for namespace, name in shown if namespace == "EcrMirror"}
    assert ours <= sink.names  # nothing on it that the function never emits
    statuses = {"ImagesUnchanged", "ImagesChanged", "ImagesMissing", "ImagesDeferred", "ImagesInflight", "ImagesFailed"}
    assert ours >= statuses | {"BuildsStarted", "ArtifactsCopying", "DockerHubPullsRemaining", "DockerHubPullsSpent"}
    assert {("AWS/CodeBuild", "FailedBuilds"), ("AWS/CodeBuild", "Duration"), ("AWS/Lambda", "Duration")} <= shown
    (duration,) = [w for w in widgets if w["properties"]["metrics"][0][:2] == ["AWS/Lambda", "Duration"]]
    timeout = cfn["Resources"]["MirrorFunction"]["Properties"]["Timeout"]
    assert duration["properties"]["annotations"]["horizontal"][0]["value"] == timeout * 1000


def test_events_are_valid_requests() -> None:
    from mirror.sync import parse_event

    for name in ("scheduled", "manual", "dry-run", "dry-run-tags"):
        parse_event(json.loads((ROOT / "events" / f"{name}.json").read_text()))
    assert parse_event(json.loads((ROOT / "events" / "dry-run.json").read_text())).dry_run is True
    manual = parse_event(json.loads((ROOT / "events" / "manual.json").read_text())).images
    from mirror.imagelist import parse_entries

    assert manual is not None
    entries = parse_entries(manual, "mirror")
    assert all(e.error is None for e in entries)
    assert [str(p) for p in entries[-1].platforms] == ["linux/amd64", "linux/arm64"]

    tried = parse_event(json.loads((ROOT / "events" / "dry-run-tags.json").read_text()))
    assert tried.dry_run is True
    assert tried.images is not None
    assert all(e.tag_set is not None for e in parse_entries(tried.images, "mirror"))

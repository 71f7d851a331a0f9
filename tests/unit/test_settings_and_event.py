"""Settings are read once and validated; events are parsed strictly where it matters."""

from __future__ import annotations

import json

import pytest

from mirror.settings import ConfigurationError, Settings
from mirror.sync import InvalidEventError, RunRequest, parse_event

BASE = {"CODEBUILD_PROJECT": "ecr-mirror-copy"}


def test_defaults() -> None:
    s = Settings.from_env(BASE)
    assert (s.image_list, s.target_prefix, s.images_per_build, s.max_concurrency) == ("images.yaml", "mirror", 20, 8)
    assert s.registry_endpoints == {}
    assert s.dockerhub_secret_arn is None


def test_missing_project_fails_fast() -> None:
    with pytest.raises(ConfigurationError, match="CODEBUILD_PROJECT is not set"):
        Settings.from_env({})


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"IMAGES_PER_BUILD": "0"}, "IMAGES_PER_BUILD must be between 1 and 100"),
        ({"IMAGES_PER_BUILD": "ten"}, "must be an integer"),
        ({"MAX_CONCURRENCY": "1000"}, "MAX_CONCURRENCY"),
        ({"TARGET_PREFIX": "Mirror"}, "TARGET_PREFIX"),
        ({"IMAGE_LIST": "s3://bucket"}, "s3://bucket/key"),
        ({"IMAGE_LIST": "ssm:param"}, "ssm:/parameter/name"),
        ({"REGISTRY_ENDPOINTS": "{"}, "not valid JSON"),
        ({"REGISTRY_ENDPOINTS": "[]"}, "JSON object"),
        ({"REGISTRY_ENDPOINTS": json.dumps({"docker.io": "http://10.0.0.5:5000"})}, "only for loopback"),
        ({"REGISTRY_ENDPOINTS": json.dumps({"docker.io": "https://u:p@mirror.example"})}, "credentials"),
        ({"REGISTRY_ENDPOINTS": json.dumps({"docker.io": "ftp://x"})}, "not an http"),
        ({"REGISTRY_ENDPOINTS": json.dumps({"docker.io": "https://x/path"})}, "without a path"),
        ({"REGISTRY_ENDPOINTS": json.dumps({"bad host!": "https://x"})}, "must map a registry host"),
        # not in the one form every parser reads alike
        (
            {"REGISTRY_ENDPOINTS": json.dumps({"docker.io": "http://localhost:1\\@127.0.0.1:5000"})},
            "credentials",
        ),
        ({"REGISTRY_ENDPOINTS": json.dumps({"docker.io": "https://a\\b.example"})}, "not a plain http"),
        ({"REGISTRY_ENDPOINTS": json.dumps({"docker.io": "https://mirror.\u0435xample"})}, "ASCII"),
        # the copy's registry is derived from its host:port, and a 429 holds a host:port: one registry each
        (
            {
                "REGISTRY_ENDPOINTS": json.dumps(
                    {"docker.io": "https://mirror.example", "ghcr.io": "https://MIRROR.example"}
                )
            },
            "'docker.io' and 'ghcr.io' share the endpoint host mirror.example",
        ),
        (
            {"REGISTRY_ENDPOINTS": json.dumps({"docker.io": "https://m.example", "ghcr.io": "https://m.example:443/"})},
            "share the endpoint host",
        ),
        (
            {"REGISTRY_ENDPOINTS": json.dumps({"a.io": "http://127.0.0.1:5000", "b.io": "http://127.0.0.1:5000/"})},
            "share the endpoint host 127.0.0.1:5000",
        ),
        ({"DOCKERHUB_SECRET_ARN": "my-secret"}, "full ARN of a Secrets Manager secret"),
        # a partial ARN (no random suffix) would not match the IAM resource the template grants
        (
            {"DOCKERHUB_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-mirror/hub"},
            "full ARN",
        ),
        ({"REPORT_LOCATION": "bucket/x"}, "REPORT_LOCATION"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        Settings.from_env(BASE | env)


def test_endpoints_accept_loopback_http_and_any_https() -> None:
    s = Settings.from_env(
        BASE
        | {
            "REGISTRY_ENDPOINTS": json.dumps(
                {
                    "docker.io": "http://127.0.0.1:5000",
                    "ghcr.io": "https://mirror.example.com/",
                    "x.io": "http://[::1]:1",
                }
            )
        }
    )
    assert s.registry_endpoints == {
        "docker.io": "http://127.0.0.1:5000",
        "ghcr.io": "https://mirror.example.com",
        "x.io": "http://[::1]:1",
    }


def test_endpoints_on_one_host_but_different_ports_are_distinct_registries() -> None:
    s = Settings.from_env(
        BASE
        | {
            "REGISTRY_ENDPOINTS": json.dumps(
                {"docker.io": "http://127.0.0.1:5000", "quay.io": "http://127.0.0.1:5001", "x.io": "https://X.example"}
            )
        }
    )
    assert s.registry_endpoints == {
        "docker.io": "http://127.0.0.1:5000",
        "quay.io": "http://127.0.0.1:5001",
        "x.io": "https://x.example",
    }


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({}, RunRequest()),
        (None, RunRequest()),
        ({"images": ["nginx"], "dryRun": True}, RunRequest(["nginx"], True)),
        # What EventBridge schedules and rules send: unknown fields mean "the default list".
        ({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}, RunRequest()),
    ],
)
def test_events(event: object, expected: RunRequest) -> None:
    assert parse_event(event) == expected


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"images": "nginx"}, "'images' must be a list"),
        ({"dryRun": "yes"}, "'dryRun' must be true or false"),
        ([], "JSON object"),
    ],
)
def test_wrong_event_types_are_rejected(event: object, reason: str) -> None:
    with pytest.raises(InvalidEventError, match=reason):
        parse_event(event)


GHCR = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-mirror/ghcr-AbCdEf"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("{", "REGISTRY_CREDENTIALS is not valid JSON"),
        ('["ghcr.io"]', "must be a JSON object"),
        (json.dumps({"bad host!": GHCR}), "must map a registry host"),
        (json.dumps({"ghcr.io": GHCR.removesuffix("-AbCdEf")}), "full ARN"),
        (
            json.dumps({"ghcr.io": "arn:aws:secretsmanager:us-east-1:123456789012:secret:other/ghcr-AbCdEf"}),
            "must start with ecr-mirror/",
        ),
    ],
)
def test_bad_registry_credentials_are_a_configuration_error(value: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        Settings.from_env(BASE | {"REGISTRY_CREDENTIALS": value})


def test_a_host_with_credentials_is_an_allowed_source() -> None:
    s = Settings.from_env(BASE | {"REGISTRY_CREDENTIALS": json.dumps({"Registry.Corp.Example": GHCR})})
    assert s.registry_credentials == {"registry.corp.example": GHCR}
    assert "registry.corp.example" in s.source_registries


def test_docker_hub_may_not_have_two_secrets() -> None:
    with pytest.raises(ConfigurationError, match="both DOCKERHUB_SECRET_ARN and REGISTRY_CREDENTIALS"):
        Settings.from_env(
            BASE | {"DOCKERHUB_SECRET_ARN": GHCR, "REGISTRY_CREDENTIALS": json.dumps({"docker.io": GHCR})}
        )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("{", "UPSTREAM_PREFIXES is not valid JSON"),
        (json.dumps({"docker.io": "hub"}), "Docker Hub images go under TARGET_PREFIX"),
        (json.dumps({"ghcr.io": "Ghcr"}), "not a valid ECR repository prefix"),
        (json.dumps({"ghcr.io": "mirror/ghcr"}), "overlaps the prefix 'mirror'"),
        (json.dumps({"ghcr.io": "reg", "quay.io": "reg/quay"}), "overlaps the prefix 'reg'"),
    ],
)
def test_bad_upstream_prefixes_are_a_configuration_error(value: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        Settings.from_env(BASE | {"UPSTREAM_PREFIXES": value})


def test_upstream_prefixes_name_images_as_a_pull_through_cache_does() -> None:
    from mirror.imagelist import parse_entries

    s = Settings.from_env(BASE | {"UPSTREAM_PREFIXES": json.dumps({"GHCR.io": "ghcr/"}), "TARGET_PREFIX": "docker-hub"})
    assert s.upstream_prefixes == {"ghcr.io": "ghcr"}
    entries = parse_entries(
        [
            "ghcr.io/org/app:v1",
            "nginx:1.27",
            "quay.io/org/x:1",
            {"source": "ghcr.io/org/app:v2", "target": "ghcr/other:v2"},
            {"source": "ghcr.io/org/app:v3", "target": "elsewhere/app:v3"},
        ],
        s.naming,
    )
    assert [str(e.target) for e in entries[:4]] == [
        "ghcr/org/app:v1",
        "docker-hub/library/nginx:1.27",
        "docker-hub/quay.io/org/x:1",
        "ghcr/other:v2",
    ]
    assert entries[4].error is not None
    assert "outside the mirror prefix 'docker-hub/', 'ghcr/'" in entries[4].error

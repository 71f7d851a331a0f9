"""What the build derives instead of taking it on a caller's word: this account's registry (from CODEBUILD_BUILD_ARN,
which no StartBuild caller can set), REGISTRY_ENDPOINTS read strictly, and each entry's registry (from its source
host, by the function's rule)."""

from __future__ import annotations

import pytest

from copier import copy_images
from copier.copy_images import AccountRegistry

ARN = "arn:aws:codebuild:eu-west-1:123456789012:build/ecr-mirror-copy:0a1b2c3d-4e5f-6789-abcd-ef0123456789"
ACCOUNT = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("arn", "host"),
    [
        (ARN, ACCOUNT),
        (
            "arn:aws-cn:codebuild:cn-north-1:210987654321:build/p:1",
            "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn",
        ),
        (
            "arn:aws-us-gov:codebuild:us-gov-west-1:123456789012:build/p:1",
            "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com",
        ),
    ],
)
def test_in_codebuild_the_registry_is_the_builds_own_account_and_region(arn: str, host: str) -> None:
    registry = copy_images.account_registry({"CODEBUILD_BUILD_ARN": arn})
    assert registry == AccountRegistry(host, arn.split(":")[3])


def test_an_ecr_registry_equal_to_the_derived_one_is_accepted() -> None:
    assert copy_images.account_registry({"CODEBUILD_BUILD_ARN": ARN, "ECR_REGISTRY": ACCOUNT}).host == ACCOUNT


@pytest.mark.parametrize(
    "override",
    [
        "210987654321.dkr.ecr.eu-west-1.amazonaws.com",  # another account
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",  # another region
        "docker.io",  # the build is logged in to Docker Hub
        "evil.example",  # the ECR token would go there
        "127.0.0.1:5000",
        f"{ACCOUNT}:443",
    ],
)
def test_in_codebuild_an_ecr_registry_override_cannot_choose_where_the_build_writes(override: str) -> None:
    with pytest.raises(ValueError, match=f"is not this build's registry {ACCOUNT}"):
        copy_images.account_registry({"CODEBUILD_BUILD_ARN": ARN, "ECR_REGISTRY": override})


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:codebuild:eu-west-1:12345678901:build/p:1",  # not an account
        "arn:aws:codebuild:eu-west-1:123456789012:project/p",  # a project, not a build
        "arn:aws-iso:codebuild:us-iso-east-1:123456789012:build/p:1",  # a partition whose ECR domain it does not know
        "arn:aws:codebuild:eu-west-1:123456789012:build/p:1\n",
        "arn:aws:codebuild:EU-west-1:123456789012:build/p:1",
        "arn:aws:s3:::bucket",
    ],
)
def test_a_build_arn_that_names_no_account_and_region_fails_the_build(arn: str) -> None:
    with pytest.raises(ValueError, match="does not name a build's partition, region and account"):
        copy_images.account_registry({"CODEBUILD_BUILD_ARN": arn, "ECR_REGISTRY": ACCOUNT})


@pytest.mark.parametrize("named", ["127.0.0.1:5000", "localhost:5001", "[::1]:5000"])
def test_outside_codebuild_only_a_loopback_registry_is_written(named: str) -> None:
    assert copy_images.account_registry({"ECR_REGISTRY": named}) == AccountRegistry(named, None)


@pytest.mark.parametrize("named", ["", ACCOUNT, "docker.io", "127.0.0.1.evil.example:5000", "10.0.0.1:5000"])
def test_outside_codebuild_a_registry_that_is_not_loopback_is_refused(named: str) -> None:
    with pytest.raises(ValueError, match="outside CodeBuild"):
        copy_images.account_registry({"ECR_REGISTRY": named})


@pytest.mark.parametrize(
    ("raw", "endpoints"),
    [
        ("", {}),
        ("  ", {}),
        ('{"docker.io": "https://mirror.gcr.io"}', {"docker.io": "https://mirror.gcr.io"}),
        ('{"index.docker.io": "https://mirror.gcr.io/"}', {"docker.io": "https://mirror.gcr.io"}),
        ('{"Quay.IO": "https://Mirror.Example:8443"}', {"quay.io": "https://mirror.example:8443"}),
        ('{"docker.io": "http://127.0.0.1:5000"}', {"docker.io": "http://127.0.0.1:5000"}),
    ],
)
def test_registry_endpoints_are_read_as_the_function_reads_them(raw: str, endpoints: dict[str, str]) -> None:
    assert copy_images.registry_endpoints(raw) == endpoints


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("not json", "is not JSON"),
        ('["https://mirror.gcr.io"]', "is not a JSON object"),
        ('{"docker.io": 5}', "must map a registry host to a URL"),
        ('{"docker io": "https://mirror.gcr.io"}', "must map a registry host to a URL"),
        ('{"docker.io": "http://mirror.gcr.io"}', "plain http is allowed only for loopback"),
        ('{"docker.io": "https://mirror.gcr.io/v2"}', "must be a base URL without a path"),
        ('{"docker.io": "https://mirror.gcr.io/?x=1"}', "must be a base URL without a path"),
        ('{"docker.io": "https://user:pw@mirror.gcr.io"}', "is not a plain http"),
        ('{"docker.io": "https://evil.example\\\\@mirror.gcr.io"}', "is not a plain http"),
        ('{"docker.io": "ftp://mirror.gcr.io"}', "is not a plain http"),
    ],
)
def test_a_malformed_registry_endpoints_fails_the_build_with_the_reason(raw: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        copy_images.registry_endpoints(raw)


def entry(source: str, registry: str) -> dict[str, object]:
    return {
        "source": f"{source}/library/app@{DIGEST}",
        "target": f"{ACCOUNT}/mirror/library/app:1",
        "digest": DIGEST,
        "registry": registry,
        "pulls": 3,
    }


TARGET = copy_images.target_pattern(ACCOUNT, "mirror")
MAPPED = {"docker.io": "http://127.0.0.1:5000", "quay.io": "http://127.0.0.1:5001"}


@pytest.mark.parametrize(
    ("source", "registry"),
    [
        ("docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("127.0.0.1:5000", "docker.io"),  # the endpoint configured for Docker Hub
        ("127.0.0.1:5001", "quay.io"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_an_entrys_registry_is_the_one_its_source_host_belongs_to(source: str, registry: str) -> None:
    assert TARGET is not None
    job, reason = copy_images.check(1, entry(source, registry), TARGET, MAPPED)
    assert reason is None
    assert job is not None
    assert job.registry == registry


@pytest.mark.parametrize(
    ("source", "claimed", "derived"),
    [
        ("127.0.0.1:5002", "docker.io", "127.0.0.1:5002"),  # issue 15: any host, named Docker Hub, got its credential
        ("evil.example", "docker.io", "evil.example"),
        ("127.0.0.1:5000", "quay.io", "docker.io"),  # Docker Hub's source, named otherwise, skipped its quota
        ("docker.io", "ghcr.io", "docker.io"),
        ("ghcr.io", "index.docker.io", "ghcr.io"),
    ],
)
def test_an_entry_whose_registry_is_not_its_sources_is_refused(source: str, claimed: str, derived: str) -> None:
    assert TARGET is not None
    job, reason = copy_images.check(1, entry(source, claimed), TARGET, MAPPED)
    assert job is None
    assert reason == f"registry {claimed} is not the registry of the source's host {source} ({derived})"


@pytest.mark.parametrize(("value", "read"), [("7", 7), ("", 900), ("\u00b2", 900), ("1_0", 900), (" 5", 900)])
def test_a_numeric_setting_is_ascii_digits_or_its_default(value: str, read: int) -> None:
    assert copy_images.setting({"COPY_TIMEOUT_SECONDS": value}, "COPY_TIMEOUT_SECONDS", 900, 1, 86_400) == read

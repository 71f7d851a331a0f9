"""The ECR adapter: a registry credential for the registry client, and repositories created safely by default."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from .registry import Credential

# Untagged images are what a moving tag leaves behind when it is mirrored again: expire them.
LIFECYCLE_POLICY = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "Expire untagged images left behind when a mirrored tag moves",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 7,
                },
                "action": {"type": "expire"},
            }
        ]
    }
)
MANAGED_BY_TAG = {"Key": "managed-by", "Value": "ecr-mirror"}


class EcrError(Exception):
    """ECR refused what the run needs before any image can be checked."""


def aws_error(e: Exception) -> str:
    """A short reason from a boto3 error: its code and message, never request details."""
    if isinstance(e, ClientError):
        error = e.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".rstrip(": ")
    return type(e).__name__


def registry_auth(ecr: Any) -> tuple[str, Credential]:
    """The ECR registry host and its Basic credential (`AWS:<password>`, valid 12 hours)."""
    try:
        data = ecr.get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        host = urlsplit(data["proxyEndpoint"]).netloc
    except (ClientError, BotoCoreError) as e:
        raise EcrError(f"cannot get an ECR authorization token: {aws_error(e)}") from None
    except (KeyError, IndexError, ValueError):
        raise EcrError("cannot get an ECR authorization token: unexpected answer") from None
    if not host or not password:
        raise EcrError("cannot get an ECR authorization token: unexpected answer")
    return host, Credential(user, password)


#: the ECR resource tag that records which upstream repository a mirrored repository belongs to
SOURCE_TAG = "mirror-source"


def repository_arn(ecr_host: str, name: str) -> str:
    """`<account>.dkr.ecr.<region>.amazonaws.com[.cn]` -> the repository's ARN."""
    account, _, rest = ecr_host.partition(".dkr.ecr.")
    region, _, domain = rest.partition(".")
    partition = "aws-cn" if domain.endswith(".cn") else "aws"
    return f"arn:{partition}:ecr:{region}:{account}:repository/{name}"


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a repository for one upstream before copying into it."""

    error: str | None = None  # the repository could not be created or read
    owner: str | None = None  # set when it belongs to another upstream: the recorded one
    created: bool = False
    adopted: bool = False
    warning: str | None = None


def _code(e: Exception) -> str | None:
    return e.response.get("Error", {}).get("Code") if isinstance(e, ClientError) else None


def claim_repository(
    ecr: Any, ecr_host: str, name: str, source: str, *, dry_run: bool = False, _again: bool = True
) -> Claim:
    """Make sure repository `name` exists and mirrors `source` (`docker.io/library/nginx`), before any copy.

    A new repository is created recording its source (tag `mirror-source`); one without the record (made by an
    older version, or by hand) is adopted by recording it now; one recording another source is not written.
    A dry run only reads: it says what would be created or adopted.
    """
    arn = repository_arn(ecr_host, name)
    try:
        tags = ecr.list_tags_for_resource(resourceArn=arn).get("tags", [])
    except ClientError as e:
        if _code(e) != "RepositoryNotFoundException":
            return Claim(error=f"cannot read the tags of repository {name}: {aws_error(e)}")
        return Claim(created=True) if dry_run else _create(ecr, ecr_host, name, source, again=_again)
    except BotoCoreError as e:
        return Claim(error=f"cannot read the tags of repository {name}: {aws_error(e)}")
    recorded = next((t.get("Value") for t in tags if t.get("Key") == SOURCE_TAG), None)
    if recorded == source:
        return Claim()
    if recorded is not None:
        return Claim(owner=str(recorded)[:256])
    if dry_run:
        return Claim(adopted=True)
    try:
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": SOURCE_TAG, "Value": source}])
    except (ClientError, BotoCoreError) as e:
        return Claim(error=f"cannot record the source of repository {name}: {aws_error(e)}")
    return Claim(adopted=True)


def _create(ecr: Any, ecr_host: str, name: str, source: str, *, again: bool) -> Claim:
    """Create the repository: scan on push, encrypted, MUTABLE tags, untagged expiry, its source recorded.

    Tags must stay MUTABLE: a mirror re-pushes moving tags (`latest`, `1.27`).
    """
    try:
        ecr.create_repository(
            repositoryName=name,
            imageTagMutability="MUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"},
            tags=[MANAGED_BY_TAG, {"Key": SOURCE_TAG, "Value": source}],
        )
    except ClientError as e:
        if _code(e) == "RepositoryAlreadyExistsException" and again:  # created meanwhile: claim it as it is
            return claim_repository(ecr, ecr_host, name, source, _again=False)
        return Claim(error=f"cannot create repository {name}: {aws_error(e)}")
    except BotoCoreError as e:
        return Claim(error=f"cannot create repository {name}: {aws_error(e)}")
    try:
        ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=LIFECYCLE_POLICY)
    except (ClientError, BotoCoreError) as e:
        # The copy still works; the untagged expiry is missing, which the log says.
        return Claim(created=True, warning=f"lifecycle policy not set on {name}: {aws_error(e)}")
    return Claim(created=True)

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


@dataclass(frozen=True)
class RepositoryResult:
    error: str | None = None  # why it could not be created
    created: bool = False
    warning: str | None = None


def ensure_repository(ecr: Any, name: str) -> RepositoryResult:
    """Create the repository unless it exists: scan on push, encrypted, MUTABLE tags, untagged expiry.

    Tags must stay MUTABLE: a mirror re-pushes moving tags (`latest`, `1.27`).
    """
    try:
        ecr.create_repository(
            repositoryName=name,
            imageTagMutability="MUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"},
            tags=[MANAGED_BY_TAG],
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "RepositoryAlreadyExistsException":
            return RepositoryResult()
        return RepositoryResult(error=f"cannot create repository {name}: {aws_error(e)}")
    except BotoCoreError as e:
        return RepositoryResult(error=f"cannot create repository {name}: {aws_error(e)}")
    try:
        ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=LIFECYCLE_POLICY)
    except (ClientError, BotoCoreError) as e:
        # The copy still works; the untagged expiry is missing, which the log says.
        return RepositoryResult(created=True, warning=f"lifecycle policy not set on {name}: {aws_error(e)}")
    return RepositoryResult(created=True)

"""The ECR adapter: a registry credential for the registry client, and repositories created safely by default."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .readback import MalformedError, shown, text
from .references import DOMAIN, HOST_MAX, PATH_MAX, REPOSITORY_PATH
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


#: GetAuthorizationToken's proxyEndpoint: `https://<host>`, nothing more
_PROXY_ENDPOINT_RE = re.compile(rf"https://({DOMAIN})")
#: an ECR token is about 2 KB of base64; a printable `user:password` once decoded
_TOKEN_MAX = 16_384
_CREDENTIAL_RE = re.compile(r"([\x21-\x39\x3b-\x7e]+):([\x21-\x7e]+)")


def read_token(answer: object) -> tuple[str, Credential]:
    """GetAuthorizationToken's answer, read strictly: the registry host of `https://<host>` and the credential of a
    base64 `user:password` (printable ASCII); MalformedError otherwise."""
    data = answer.get("authorizationData") if isinstance(answer, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    if not isinstance(first, dict):
        raise MalformedError(f"authorizationData is {shown(data)}")
    endpoint = text(
        first.get("proxyEndpoint"),
        _PROXY_ENDPOINT_RE,
        "proxyEndpoint",
        limit=len("https://") + HOST_MAX,
        expected="https://<host>",
    )
    token, decoded = first.get("authorizationToken"), None
    if isinstance(token, str) and len(token) <= _TOKEN_MAX:
        with contextlib.suppress(ValueError):  # binascii.Error and UnicodeDecodeError are ValueErrors
            decoded = base64.b64decode(token, validate=True).decode("ascii")
    credential = _CREDENTIAL_RE.fullmatch(decoded) if decoded is not None else None
    if credential is None:  # never shown: it may be most of a credential
        raise MalformedError(f"authorizationToken is not base64 of a printable user:password, {_TOKEN_MAX} at most")
    return endpoint[len("https://") :].lower(), Credential(credential.group(1), credential.group(2))


def registry_auth(ecr: Any) -> tuple[str, Credential]:
    """The ECR registry host and its Basic credential (`AWS:<password>`, valid 12 hours). Without them no image can
    be checked, so a refusal or a malformed answer fails the run at once (EcrError); the next run asks again."""
    try:
        return read_token(ecr.get_authorization_token())
    except (ClientError, BotoCoreError) as e:
        raise EcrError(f"cannot get an ECR authorization token: {aws_error(e)}") from None
    except MalformedError as e:
        raise EcrError(f"cannot get an ECR authorization token: unexpected answer ({e})") from None


#: the ECR resource tag that records which upstream repository a mirrored repository belongs to
SOURCE_TAG = "mirror-source"


#: a recorded source as `claim_repository` writes it: `<host>/<path>`
_SOURCE_RE = re.compile(rf"{DOMAIN}/{REPOSITORY_PATH}")
_SOURCE_MAX = HOST_MAX + 1 + PATH_MAX


def read_source_tag(answer: object) -> str | None:
    """ListTagsForResource's answer, read strictly: the recorded source (`docker.io/library/nginx`), None when there
    is none; MalformedError when the answer or the record is not of that shape."""
    tags = answer.get("tags") if isinstance(answer, dict) else None
    if not isinstance(tags, list):
        raise MalformedError(f"its tags are {shown(tags)}, not a list")
    values = [t.get("Value") for t in tags if isinstance(t, dict) and t.get("Key") == SOURCE_TAG]
    if len(values) > 1:
        raise MalformedError(f"it has {len(values)} {SOURCE_TAG} tags")
    if not values:
        return None
    return text(values[0], _SOURCE_RE, f"its {SOURCE_TAG} tag", limit=_SOURCE_MAX, expected="<host>/<path>")


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
        recorded = read_source_tag(ecr.list_tags_for_resource(resourceArn=arn))
    except ClientError as e:
        if _code(e) != "RepositoryNotFoundException":
            return Claim(error=f"cannot read the tags of repository {name}: {aws_error(e)}")
        return Claim(created=True) if dry_run else _create(ecr, ecr_host, name, source, again=_again)
    except BotoCoreError as e:
        return Claim(error=f"cannot read the tags of repository {name}: {aws_error(e)}")
    except MalformedError as e:
        # Neither adopted nor overwritten: which upstream it belongs to is a person's call.
        why = f"repository {name} has a malformed source record ({e}); not written until the tag is fixed or removed"
        return Claim(error=why, warning=why)
    if recorded == source:
        return Claim()
    if recorded is not None:
        return Claim(owner=recorded)
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

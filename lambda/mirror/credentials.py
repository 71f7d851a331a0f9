"""Registry credentials from Secrets Manager, read through Powertools' Parameters utility (cached per container),
each bound to the one registry host it was configured for."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from .ecr import aws_error
from .references import DOCKER_HUB
from .registry import Credential
from .settings import ConfigurationError, Settings

#: seconds a secret is reused by a warm container before it is read again (a rotated secret is seen by then)
MAX_AGE = 300


def _read(arn: str, what: str) -> Credential:
    """The secret's `{"username": ..., "password": ...}`; a broken secret stops the run, its content never echoed."""
    try:
        raw = parameters.get_secret(arn, max_age=MAX_AGE)
    except GetParameterError as e:
        cause = e.__context__  # Powertools wraps the SDK's error without chaining it
        reason = aws_error(cause) if isinstance(cause, Exception) else "unreadable"
        raise ConfigurationError(f"cannot read {what}: {reason}") from None
    try:
        data = json.loads(raw)
        username, password = data["username"], data["password"]
    except (ValueError, TypeError, KeyError):
        raise ConfigurationError(f'{what} must be JSON {{"username": ..., "password": ...}}') from None
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise ConfigurationError(f"{what}'s username and password must be non-empty strings")
    return Credential(username, password)


def registry_credentials(settings: Settings) -> dict[str, Credential]:
    """Registry host -> its credential: DOCKERHUB_SECRET_ARN for docker.io, and REGISTRY_CREDENTIALS."""
    found: dict[str, Credential] = {}
    if settings.dockerhub_secret_arn:
        found[DOCKER_HUB] = _read(settings.dockerhub_secret_arn, "the Docker Hub secret")
    for host, arn in sorted(settings.registry_credentials.items()):
        found[host] = _read(arn, f"the secret for {host} (REGISTRY_CREDENTIALS)")
    return found


def build_logins(hosts: Mapping[str, str], settings: Settings) -> list[dict[str, str]]:
    """CodeBuild variables that log the build in to each source registry of a batch that has a credential in
    REGISTRY_CREDENTIALS (`hosts`: registry -> the location the build reaches it at). The secret is resolved by
    CodeBuild (type SECRETS_MANAGER, masked in its logs): no credential passes through the function's payload."""
    variables = []
    for number, (host, location) in enumerate(sorted(hosts.items()), 1):
        arn = settings.registry_credentials[host]
        variables += [
            {"name": f"REGISTRY_LOGIN_{number}_HOST", "value": location, "type": "PLAINTEXT"},
            {"name": f"REGISTRY_LOGIN_{number}_USERNAME", "value": f"{arn}:username", "type": "SECRETS_MANAGER"},
            {"name": f"REGISTRY_LOGIN_{number}_PASSWORD", "value": f"{arn}:password", "type": "SECRETS_MANAGER"},
        ]
    return variables

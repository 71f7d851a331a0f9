"""Docker Hub credentials from Secrets Manager, read once per container and used only for docker.io."""

from __future__ import annotations

import json
import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .ecr import aws_error
from .registry import Credential
from .settings import ConfigurationError

_cache: dict[str, Credential] = {}
_lock = threading.Lock()


def credential(secrets: Any, arn: str) -> Credential:
    """The secret's `{"username": ..., "password": ...}` (an access token); a broken secret stops the run."""
    with _lock:
        if arn in _cache:
            return _cache[arn]
        try:
            raw = secrets.get_secret_value(SecretId=arn)["SecretString"]
        except (ClientError, BotoCoreError) as e:
            raise ConfigurationError(f"cannot read the Docker Hub secret: {aws_error(e)}") from None
        except KeyError:
            raise ConfigurationError("the Docker Hub secret has no SecretString") from None
        try:
            data = json.loads(raw)
            username, password = data["username"], data["password"]
        except (ValueError, TypeError, KeyError):
            # Never echo the secret's content: it may hold the token.
            raise ConfigurationError('the Docker Hub secret must be JSON {"username": ..., "password": ...}') from None
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise ConfigurationError("the Docker Hub secret's username and password must be non-empty strings")
        _cache[arn] = Credential(username, password)
        return _cache[arn]


def forget() -> None:
    """Drop cached credentials (a rotated secret, or a test)."""
    with _lock:
        _cache.clear()

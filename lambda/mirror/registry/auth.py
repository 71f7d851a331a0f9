"""Registry auth: challenges, credentials as plain data, and the Bearer token exchange (Docker's token spec)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..settings import is_loopback
from .errors import AuthError, BadResponseError
from .transport import Transport

#: the longest challenge parsed; a real one is a few hundred characters
CHALLENGE_MAX = 4096


@dataclass(frozen=True)
class Credential:
    username: str
    password: str = field(repr=False)


def basic_auth(credential: Credential) -> str:
    pair = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: Mapping[str, str]


_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


def parse_challenge(header: str) -> Challenge:
    """Parse `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` (or Basic) into scheme + params."""
    scheme, _, rest = header.strip()[:CHALLENGE_MAX].partition(" ")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _CHALLENGE_PARAM.match(rest, pos)
        if not match:
            break
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
        params[match.group(1).lower()] = value
        pos = match.end()
    return Challenge(scheme.lower(), params)


@dataclass
class Token:
    value: str = field(repr=False)
    expires_at: float


def fetch_token(
    transport: Transport,
    host: str,
    challenge: Challenge,
    scope: str,
    credential: Credential | None,
    *,
    now: float,
) -> Token:
    """GET the challenge's realm for `scope` (with Basic credentials when given); the body is read capped."""
    realm = challenge.params.get("realm", "")
    parts = urlsplit(realm)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise AuthError(f"{host}: the token realm {realm[:100]!r} is not a URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise AuthError(f"{host}: refusing a plain-http token realm outside loopback ({parts.hostname[:100]})")
    params = {"scope": scope}
    if "service" in challenge.params:
        params["service"] = challenge.params["service"]
    headers = {"Authorization": basic_auth(credential)} if credential else {}
    what = f"token for {host} ({scope})"
    reply = transport.send("GET", realm, headers, what, params=params)
    if reply.status in (401, 403):
        raise AuthError(f"{what}: the token endpoint refused the credentials (HTTP {reply.status})")
    if not 200 <= reply.status < 300:
        raise AuthError(f"{what}: the token endpoint answered HTTP {reply.status}")
    try:
        body = json.loads(reply.body)
        value = body.get("token") or body.get("access_token")
        expires_in = float(body.get("expires_in") or 60)
    except (ValueError, AttributeError, TypeError, RecursionError):
        raise BadResponseError(f"{what}: the token endpoint did not answer with JSON") from None
    if not isinstance(value, str) or not value:
        raise BadResponseError(f"{what}: the token endpoint answered without a token")
    if not 0 < expires_in < 10**7:
        expires_in = 60
    # Renew a little early so a token never expires between the cache check and the request.
    return Token(value, now + max(1.0, expires_in * 0.9 - 5))

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
#: Docker Hub's registry names its token service on another host; the only such pair trusted by default
DOCKER_HUB_REGISTRY_HOST = "registry-1.docker.io"
DOCKER_HUB_AUTH_HOST = "auth.docker.io"


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


def realm_takes_credentials(host: str, endpoint: str, realm: str) -> bool:
    """Whether a token realm named by `host`'s registry may receive `host`'s credentials, or is refused outright.

    A remote server names the realm, so it is trusted no further than the endpoint the deployment chose: plain
    http and loopback realms only for a loopback endpoint (inside Lambda, loopback is the runtime API); credentials
    only to a realm on the endpoint's own hostname (and, for Docker Hub reached directly, auth.docker.io). A realm
    elsewhere is asked anonymously. Raises AuthError for a refused realm.
    """
    parts = urlsplit(realm)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise AuthError(f"{host}: the token realm {realm[:100]!r} is not a URL")
    endpoint_host = (urlsplit(endpoint).hostname or "").lower()
    realm_host = parts.hostname.lower()
    if parts.scheme == "http" and not (is_loopback(realm_host) and is_loopback(endpoint_host)):
        raise AuthError(f"{host}: refusing a plain-http token realm outside loopback ({realm_host[:100]})")
    if is_loopback(realm_host) and not is_loopback(endpoint_host):
        raise AuthError(f"{host}: refusing a loopback token realm named by a registry outside loopback")
    if realm_host == endpoint_host:
        return True
    return endpoint_host == DOCKER_HUB_REGISTRY_HOST and realm_host == DOCKER_HUB_AUTH_HOST


def fetch_token(
    transport: Transport,
    host: str,
    challenge: Challenge,
    scope: str,
    credential: Credential | None,
    *,
    now: float,
) -> Token:
    """GET the challenge's realm for `scope` (with Basic credentials when given); the body is read capped.
    The caller has vetted the realm (`realm_takes_credentials`)."""
    realm = challenge.params.get("realm", "")
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

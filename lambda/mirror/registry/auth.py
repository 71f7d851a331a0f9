"""Registry auth: challenges, credentials as plain data, and the Bearer token exchange (Docker's token spec)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .. import trust
from ..trust import URL, UntrustedURLError
from .errors import AuthError, BadResponseError
from .hosts import Credential, HostConfig
from .redirects import follow
from .transport import Reply, Transport
from .urls import named_url

#: the longest challenge parsed; a real one is a few hundred characters
CHALLENGE_MAX = 4096


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


def vet_realm(host: str, endpoint: str, realm: str) -> tuple[URL, bool]:
    """The token realm `host`'s registry (at `endpoint`) named, read as every parser reads it, and whether it may
    receive `host`'s credentials (`mirror.trust.realm_takes_credentials`: one rule for the function and the copy
    program). AuthError, naming the registry, for a realm refused outright: nothing is sent to it."""
    try:
        takes = trust.realm_takes_credentials(endpoint, realm)
        return named_url(realm), takes
    except UntrustedURLError as e:
        raise AuthError(f"{host}: {e}; refused") from None


def realm_takes_credentials(host: str, endpoint: str, realm: str) -> bool:
    """Whether a token realm named by `host`'s registry may receive `host`'s credentials (False: it is asked
    anonymously); AuthError for a realm refused outright."""
    return vet_realm(host, endpoint, realm)[1]


def fetch_token(
    transport: Transport,
    registry: str,
    realm: URL,
    realm_host: HostConfig,
    challenge: Challenge,
    scope: str,
    credential: Credential | None,
    *,
    now: float,
    endpoints: Iterable[str] = (),
    hop_host: Callable[[URL], HostConfig] | None = None,
) -> Token:
    """GET the vetted `realm` for `scope` (with Basic credentials when given); the body is read capped. A redirect
    is followed by the trust rule (`endpoints`: the deployment's); the credential goes to the realm's host only,
    and a hop elsewhere is asked anonymously, as `hop_host` names it; the hops after the first end within one
    request timeout of the first's start."""
    params = {"scope": scope}
    if "service" in challenge.params:
        params["service"] = challenge.params["service"]
    headers = {"Authorization": basic_auth(credential)} if credential else {}
    what = f"token for {registry} ({scope})"
    until = transport.clock() + transport.policy.timeout

    def send(target: str, hop: URL | None) -> Reply:
        if hop is None:
            return transport.send("GET", target, headers, what, host=realm_host, params=params)
        same = hop.netloc == realm.netloc
        where = realm_host if same or hop_host is None else hop_host(hop)
        return transport.send("GET", target, headers if same else {}, what, host=where, until=until)

    reply = follow(str(realm), send, endpoints, what)
    if reply.status in (401, 403):
        if credential is None:
            raise AuthError(
                f"{what}: the token endpoint refused an anonymous request (HTTP {reply.status}); the repository may "
                "need credentials, and none were sent"
            )
        raise AuthError(f"{what}: the token endpoint refused the credentials (HTTP {reply.status})")
    if not 200 <= reply.status < 300:
        raise AuthError(f"{what}: the token endpoint answered HTTP {reply.status}")
    try:
        body = json.loads(reply.body)
    except (ValueError, RecursionError):
        raise BadResponseError(f"{what}: the token endpoint did not answer with JSON") from None
    if not isinstance(body, dict):
        raise BadResponseError(f"{what}: the token endpoint did not answer with a JSON object")
    value = body.get("token") or body.get("access_token")
    if not isinstance(value, str) or not value:
        raise BadResponseError(f"{what}: the token endpoint answered without a token")
    expires_in = body.get("expires_in")
    # A lifetime that is not a plain number in range is the spec's default (60 s), never an error.
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or not 0 < expires_in < 10**7:
        expires_in = 60
    # Renew a little early so a token never expires between the cache check and the request.
    return Token(value, now + max(1.0, expires_in * 0.9 - 5))

"""What the client knows of each host it sends to: a registry's endpoint and credential, or a token realm's, and
the backoff every request to that host[:port] shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from .backoff import HostBackoff


@dataclass(frozen=True)
class Credential:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class HostConfig:
    """One host requests go to, resolved once: the registry name its rate limits are reported under (a token
    realm's own host[:port] for a realm elsewhere), its base URL, its host[:port] (named in errors), the credential
    the client may send it, and its backoff (one object per host[:port], shared with every thread)."""

    name: str
    base_url: str
    netloc: str
    credential: Credential | None = field(repr=False)
    backoff: HostBackoff = field(compare=False, repr=False)

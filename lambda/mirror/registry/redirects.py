"""Redirects, followed by their rules (`mirror.trust.redirect_target`): registry.k8s.io answers every `/v2/` request
but the first with a 307 to a regional Artifact Registry backend. Each hop is one call of `send`, which asks the
hop's own host with that host's credentials only (the caller's business); this module decides whether there is a
next hop, and where."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from ..trust import REDIRECTS_MAX, URL, UntrustedURLError, parse_url, redirect_target
from .errors import BadResponseError
from .transport import Reply

#: the statuses that name a next hop; 300 and 304 do not
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: the repository a registry API path names (the scope a hop's token is asked for)
_API_PATH = re.compile(r"/v2/(?P<name>[a-z0-9._/-]+?)/(?:manifests|blobs|tags|referrers)/")


def repository_in(target: str) -> str | None:
    """The repository a `/v2/<name>/manifests/…` (or blobs, tags, referrers) path names; None for any other."""
    match = _API_PATH.match(target)
    return match.group("name") if match else None


def follow(
    url: str,
    send: Callable[[str, URL | None], Reply],
    endpoints: Iterable[str],
    what: str,
) -> Reply:
    """`send(url, None)`, then `send(hop, parsed hop)` for each hop a redirect names while the rules allow, at most
    REDIRECTS_MAX hops. A redirect that breaks a rule, or one hop too many, is BadResponseError naming it; nothing is
    sent there. The first URL is the caller's own: it is parsed only if it redirects."""
    hop: URL | None = None
    for _ in range(REDIRECTS_MAX + 1):
        reply = send(url if hop is None else str(hop), hop)
        if reply.status not in REDIRECTS:
            return reply
        try:
            answered = hop if hop is not None else parse_url(url)
            location = reply.headers.get("Location", "")
            hop = redirect_target(answered, location, endpoints)
        except UntrustedURLError as e:
            raise BadResponseError(f"{what}: redirect refused (HTTP {reply.status}): {e}") from None
    assert hop is not None
    raise BadResponseError(f"{what}: more than {REDIRECTS_MAX} redirects (the last to {hop.netloc[:100]})")

"""`Link` headers (RFC 8288): the next page of a tag list, and where it may be read from (the registry's own
endpoint, in the one reading every parser agrees on)."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from .errors import BadResponseError
from .urls import named_url

#: the longest Link header read
LINK_MAX = 8192
_LINK_RE = re.compile(r'\s*<([^<>]*)>\s*((?:;\s*[A-Za-z0-9_.-]+\s*=\s*(?:"[^"]*"|[^;,"]*)\s*)*)(?:,|$)')
_REL_RE = re.compile(r';\s*rel\s*=\s*"?([^";,]*)"?', re.I)


def next_link(header: str) -> str | None:
    """The target of `rel="next"` in a Link header, or None; BadResponseError when it is malformed."""
    pos, found = 0, None
    header = header.strip()[:LINK_MAX]
    while pos < len(header):
        match = _LINK_RE.match(header, pos)
        if match is None or match.end() == pos:
            raise BadResponseError(f"malformed Link header {header[:80]!r}")
        rels = _REL_RE.findall(match.group(2))
        if any("next" in rel.lower().split() for rel in rels):
            found = match.group(1).strip()
        pos = match.end()
    return found


def next_page(url: str, header: str | None, origin: str, what: str) -> str | None:
    """The URL of the page after `url` by its Link header, or None at the end. It must be on `origin` (the
    registry's endpoint) as both `mirror.trust` and urllib3 read it; else BadResponseError and it is not read."""
    target = next_link(header) if header else None
    if target is None:
        return None
    try:
        following = named_url(urljoin(url, target))
    except ValueError as e:  # UntrustedURLError, or a URL urljoin cannot read
        raise BadResponseError(f"{what}: the next page is refused: {e}") from None
    if following.origin != origin:
        raise BadResponseError(f"{what}: the next page is on another host ({following.netloc[:80]})")
    return str(following)

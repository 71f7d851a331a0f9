"""The one reading of a URL a server names (a token realm, a next-page link): `mirror.trust.parse_url`'s strict form,
and the same scheme, host and port to urllib3's parser, which `requests` connects with. A URL the two read
differently is refused: where a request goes must not depend on which parser is asked."""

from __future__ import annotations

import ipaddress

import urllib3.exceptions
import urllib3.util

from ..trust import URL, UntrustedURLError, parse_url


def _host(host: str) -> str:
    host = host.lower().removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def agree(url: URL, seen: urllib3.util.Url) -> bool:
    """Whether urllib3's reading `seen` names the same scheme, host and port as `url`."""
    return ((seen.scheme or "").lower(), _host(seen.host or ""), seen.port) == (url.scheme, url.host, url.port)


def named_url(url: str) -> URL:
    """`url`, a server's word, as a URL value; UntrustedURLError when it is ambiguous, malformed, or the parser
    that connects reads another scheme, host or port."""
    parsed = parse_url(url)
    try:
        seen = urllib3.util.parse_url(url)
    except (urllib3.exceptions.LocationParseError, ValueError):
        raise UntrustedURLError(f"{url[:100]!r} is not a URL urllib3 reads") from None
    if not agree(parsed, seen):
        raise UntrustedURLError(f"{url[:100]!r} is read as {parsed.netloc} by one parser, {seen.netloc} by another")
    return parsed

"""Bounded reads: at most a cap of bytes of a body, decoded, and never read past the cap (a 100 MiB token answer
is refused after 64 KiB, not read whole)."""

from __future__ import annotations

import zlib
from typing import Any

import requests

from . import fields
from .errors import BadResponseError, TooLargeError

#: a token answer is a few KiB; error bodies are read only for their error code
BODY_CAP = 64 * 1024
_CHUNK = 16 * 1024
#: digits read of a Content-Length; a longer or non-ASCII one is malformed, and only the streamed cap applies
_LENGTH_DIGITS = 18


def _decoder(encoding: str, what: str, host: str) -> Any:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise BadResponseError(f"{what}: {host} answered with an unsupported content-encoding {encoding[:40]!r}")


def read_body(response: requests.Response, cap: int, what: str, host: str) -> bytes:
    """At most `cap` bytes of the body, decoded; a longer body is not read past the cap."""
    length = fields.number(response.headers.get("Content-Length"), _LENGTH_DIGITS)
    if length is not None and length > cap:
        raise TooLargeError(f"{what}: {host} sent a body of {length} bytes (at most {cap} are read)")
    decoder = _decoder(response.headers.get("Content-Encoding", ""), what, host)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.raw.stream(_CHUNK, decode_content=False):
            if decoder is not None:
                chunk = decoder.decompress(chunk, cap + 1 - size)
                if decoder.unconsumed_tail:
                    size = cap + 1
            size += len(chunk)
            if size > cap:
                raise TooLargeError(f"{what}: {host} sent a body of more than {cap} bytes")
            chunks.append(chunk)
    except zlib.error:
        raise BadResponseError(f"{what}: {host} sent a body that does not decompress") from None
    return b"".join(chunks)

"""Strict reading of what the function reads back from AWS (build records, the run state in S3, repository tags,
the ECR token). Each source has one reader built from these parts; a value of the wrong shape is `MalformedError`,
which the reader turns into a warning and a default, so nothing stored or echoed by AWS can stop a run.

Python's own parsers are lax exactly where that matters: `str.isdigit()` accepts "²", which `int()` refuses;
`json.loads` accepts NaN and Infinity, turns `1e400` into infinity and raises RecursionError on deep nesting.
"""

from __future__ import annotations

import json
import math
import re
from typing import NoReturn

#: a count read back (the Docker Hub pulls a build spent): ASCII digits only, at most 9 of them
_COUNT_RE = re.compile(r"[0-9]{1,9}")
#: the run id a build carries (MIRROR_RUN_ID) and a lease names: Lambda's request id, a UUID
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHOWN_MAX = 40


class MalformedError(ValueError):
    """A value read back that is not of its expected shape; the message says how, showing at most 40 characters."""


def shown(value: object) -> str:
    """A short, printable form of a value read back, for a warning: never the whole of a long string."""
    if isinstance(value, str):
        return ascii(value[:_SHOWN_MAX]) + ("..." if len(value) > _SHOWN_MAX else "")
    if isinstance(value, bool | int | float) or value is None:
        return ascii(value)[:_SHOWN_MAX]
    return f"a JSON {type(value).__name__}"


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def document(body: bytes | str, limit: int, what: str) -> object:
    """`body` as JSON, at most `limit` bytes or characters; NaN, Infinity and nesting too deep to parse refused."""
    if len(body) > limit:
        raise MalformedError(f"{what} is over {limit} bytes")
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise MalformedError(f"{what} is not JSON") from None


def count(value: object, what: str) -> int:
    """A count written as ASCII digits, at most 9 of them."""
    if not isinstance(value, str) or not _COUNT_RE.fullmatch(value):
        raise MalformedError(f"{what} {shown(value)} is not a count (1 to 9 ASCII digits)")
    return int(value)


def text(value: object, pattern: re.Pattern[str], what: str, *, limit: int, expected: str) -> str:
    """A string of at most `limit` characters that `pattern` matches whole."""
    if not isinstance(value, str) or len(value) > limit or not pattern.fullmatch(value):
        raise MalformedError(f"{what} {shown(value)} is not {expected} of at most {limit} characters")
    return value


def number(value: object, what: str, *, low: float, high: float) -> float:
    """A JSON number (not a boolean), finite, from `low` to `high`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedError(f"{what} {shown(value)} is not a number")
    as_float = float(value) if -1e18 < value < 1e18 else math.inf  # a huge int would overflow float()
    if not low <= as_float <= high:
        raise MalformedError(f"{what} {shown(value)} is not from {low:.0f} to {high:.0f}")
    return as_float

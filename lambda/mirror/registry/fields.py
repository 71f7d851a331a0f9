"""Header values parsed strictly: plain ASCII in the one form HTTP gives them, or malformed (None).

A header is a remote server's word. `str.isdigit()` and `\\d` accept characters that `int()` and `float()` refuse
or read otherwise ('²', '٣'), so only ASCII digits count as a number, and a date only in RFC 7231's ASCII forms; a
malformed value is treated as absent and the caller's documented default applies.
"""

from __future__ import annotations

import datetime
import re

#: the optional whitespace around a field value (RFC 7230, OWS)
_OWS = " \t"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = rf"(?P<month>{'|'.join(_MONTHS)})"
_TIME = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
# RFC 7231 7.1.1.1: a recipient accepts all three forms; IMF-fixdate is the one senders use.
_DATES = (
    re.compile(rf"{_DAY}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT"),
    re.compile(
        rf"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (?P<day>[0-9]{{2}})-{_MONTH}-"
        rf"(?P<year>[0-9]{{2}}) {_TIME} GMT"
    ),
    re.compile(rf"{_DAY} {_MONTH} (?P<day>[ 0-9][0-9]) {_TIME} (?P<year>[0-9]{{4}})"),
)


def number(raw: str | None, digits: int) -> int | None:
    """A value of 1 to `digits` ASCII decimal digits (spaces or tabs around allowed), else None."""
    if raw is None:
        return None
    value = raw.strip(_OWS)
    if 0 < len(value) <= digits and value.isascii() and value.isdigit():
        return int(value)
    return None


def leading_number(raw: str | None, digits: int) -> int | None:
    """The number before the first ';' of an ASCII value (`100;w=21600`), else None."""
    if raw is None or not raw.isascii():
        return None
    return number(raw.partition(";")[0], digits)


def http_date(raw: str | None) -> float | None:
    """The POSIX time of an HTTP-date (IMF-fixdate, RFC 850 or asctime form, in ASCII), else None."""
    if raw is None or len(raw) > 64 or not raw.isascii():
        return None
    value = raw.strip(_OWS)
    for form in _DATES:
        match = form.fullmatch(value)
        if match is None:
            continue
        year = int(match.group("year"))
        if year < 100:
            # RFC 7231: a two-digit year more than 50 years ahead is in the past century
            now = datetime.datetime.now(datetime.UTC).year
            year += (now // 100) * 100
            if year > now + 50:
                year -= 100
        try:
            when = datetime.datetime(
                year,
                _MONTHS.index(match.group("month")) + 1,
                int(match.group("day")),
                int(match.group("hour")),
                int(match.group("minute")),
                int(match.group("second")),
                tzinfo=datetime.UTC,
            )
        except ValueError:
            return None  # 31 February, hour 25: well-formed digits, no such time
        return when.timestamp()
    return None

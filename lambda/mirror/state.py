"""What a run keeps in S3 next to its reports: the lease that lets one run at a time, and when each entry of a list
was last checked, so a list too long for one run is checked in rotation rather than never reaching its tail."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .budget import CLOCK_SLACK_SECONDS, LEASE_MAX_SECONDS
from .ecr import aws_error
from .readback import RUN_ID_RE, MalformedError, document, number, shown, text

STATE_DIR = "state"
LEASE_NAME = "lease.json"
#: the most history entries kept (a list has at most 20,000 entries)
HISTORY_MAX = 20_000
_HISTORY_BYTES_MAX = 4 * 2**20


class AnotherRunError(Exception):
    """Another run holds the lease: this invocation starts nothing."""


def _code(e: Exception) -> str | None:
    return e.response.get("Error", {}).get("Code") if isinstance(e, ClientError) else None


@dataclass(frozen=True)
class Place:
    """`REPORT_LOCATION` (`s3://<bucket>/<prefix>`) read once: the reports live there, the run state in `state/`."""

    bucket: str
    prefix: str

    @classmethod
    def of(cls, report_location: str) -> Place:
        bucket, _, prefix = report_location[len("s3://") :].partition("/")
        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        """The object key of `parts` under the prefix."""
        return "/".join(part for part in (self.prefix, *parts) if part)

    def state_key(self, name: str) -> str:
        return self.key(STATE_DIR, name)


_LEASE_BYTES_MAX = 4096
#: S3's answers to a conditional write that lost
_LOST = ("PreconditionFailed", "ConditionalRequestConflict")
_ABSENT = ("NoSuchKey", "404")


@dataclass(frozen=True)
class Holder:
    """The lease as read: the run that holds it (None when it does not say plainly), and until when."""

    run_id: str | None
    until: float


def read_lease(body: bytes, *, now: float, max_seconds: float = LEASE_MAX_SECONDS) -> Holder:
    """A lease object's body, read strictly; MalformedError when no real lease could have it (not a JSON object, `until`
    missing, not a number, before 1970 or later than any lease can last)."""
    data = document(body, _LEASE_BYTES_MAX, "its body")
    if not isinstance(data, dict):
        raise MalformedError(f"its body is {shown(data)}, not a JSON object")
    until = number(data.get("until"), "until", low=0, high=now + max_seconds + CLOCK_SLACK_SECONDS)
    run_id = data.get("runId")
    return Holder(run_id if isinstance(run_id, str) and RUN_ID_RE.fullmatch(run_id) else None, until)


@dataclass(frozen=True)
class Lease:
    """An S3 object written only if absent, or over an expired or corrupt one only by the ETag that was read: one
    run at a time on any account, without reserved concurrency (which a new account's quota of 10 cannot give).
    Never written unconditionally: two runs that read the same lease cannot both replace it."""

    s3: Any
    place: Place
    etag: str
    #: set when a corrupt lease was taken over (the caller logs it)
    warning: str | None = None

    @classmethod
    def take(
        cls,
        s3: Any,
        place: Place,
        run_id: str,
        *,
        seconds: float,
        now: float | None = None,
        max_seconds: float = LEASE_MAX_SECONDS,
    ) -> Lease:
        now = time.time() if now is None else now
        until = now + min(seconds, max_seconds)  # longer would read as corrupt to the next invocation
        body = json.dumps({"runId": run_id, "since": round(now), "until": round(until)}).encode()
        key = place.state_key(LEASE_NAME)
        # A lease released or replaced between our read and our write sends us round again; a few times at most.
        for _ in range(3):
            etag = _put(s3, place, key, body, IfNoneMatch="*")
            if etag is not None:
                return cls(s3, place, etag)
            try:
                current = s3.get_object(Bucket=place.bucket, Key=key)
            except ClientError as e:
                if _code(e) in _ABSENT:
                    continue  # released meanwhile
                raise
            holder: Holder | None = None
            warning = None
            try:
                holder = read_lease(current["Body"].read(_LEASE_BYTES_MAX + 1), now=now, max_seconds=max_seconds)
            except MalformedError as e:
                warning = f"run lease corrupt ({e}); taken over"
            if holder is not None and holder.until > now:
                raise AnotherRunError(
                    f"another run is in progress (run {holder.run_id or 'unnamed'}, lease until "
                    f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(holder.until))}); "
                    "this invocation started nothing"
                )
            read_etag = current.get("ETag")
            if not isinstance(read_etag, str) or not read_etag:
                raise AnotherRunError("the run lease cannot be taken over: S3 named no ETag for it")
            try:
                etag = _put(s3, place, key, body, IfMatch=read_etag)
            except ClientError as e:
                if _code(e) in _ABSENT:
                    continue  # released meanwhile
                raise
            if etag is None:
                raise AnotherRunError("another run is in progress (it took over the lease first)")
            return cls(s3, place, etag, warning)
        raise AnotherRunError("another run is in progress (the run lease changed hands while it was read)")

    def release(self) -> str | None:
        """Delete the lease if it is still this run's; returns why it could not be, if so."""
        try:
            self.s3.delete_object(Bucket=self.place.bucket, Key=self.place.state_key(LEASE_NAME), IfMatch=self.etag)
        except (ClientError, BotoCoreError) as e:
            return aws_error(e)
        return None


def _put(s3: Any, place: Place, key: str, body: bytes, **condition: str) -> str | None:
    """A conditional write of the lease: its ETag, or None when the condition failed (another run wrote first)."""
    try:
        answer = s3.put_object(Bucket=place.bucket, Key=key, Body=body, ContentType="application/json", **condition)
    except ClientError as e:
        if _code(e) in _LOST:
            return None
        raise
    return str(answer["ETag"])


def identity(source: str, target: str) -> str:
    """A short stable name for one entry's copy (source -> target), as kept in the check history."""
    return hashlib.sha256(f"{source} -> {target}".encode()).hexdigest()[:20]


#: a key of the check history, as `identity` makes it
_IDENTITY_RE = re.compile(r"[a-f0-9]{20}")


def read_history(body: bytes, *, now: float) -> tuple[dict[str, float], list[str]]:
    """A check history's body, read strictly: its well-formed entries (an `identity` key, a time from 1970 to now),
    at most HISTORY_MAX, and why the others were left out. MalformedError when it is not such a document at all."""
    data = document(body, _HISTORY_BYTES_MAX, "its body")
    checked = data.get("checked") if isinstance(data, dict) else None
    if not isinstance(checked, dict):
        raise MalformedError(f"its checked is {shown(checked)}, not a JSON object")
    good: dict[str, float] = {}
    bad: list[str] = []
    for key, value in list(checked.items())[:HISTORY_MAX]:
        try:
            text(key, _IDENTITY_RE, "key", limit=20, expected="20 hex digits")
            # a time ahead of now would put its entry last for ever
            good[key] = number(value, f"time of {key}", low=0, high=now + CLOCK_SLACK_SECONDS)
        except MalformedError as e:
            bad.append(str(e))
    return good, bad


class History:
    """When each entry of one list was last checked (epoch seconds); never-checked entries come first."""

    def __init__(self, s3: Any, place: Place, list_name: str, checked: Mapping[str, float]) -> None:
        self._s3 = s3
        self._place = place
        self._key = place.state_key(f"checked-{hashlib.sha256(list_name.encode()).hexdigest()[:16]}.json")
        self.list_name = list_name
        self.checked = dict(checked)

    @classmethod
    def load(cls, s3: Any, place: Place, list_name: str, *, now: float | None = None) -> tuple[History, str | None]:
        """The history, and a warning when it could not be read whole (the run then checks in list order) or had
        malformed entries (those are left out: checked first, as never checked)."""
        history = cls(s3, place, list_name, {})
        try:
            body = s3.get_object(Bucket=place.bucket, Key=history._key)["Body"].read(_HISTORY_BYTES_MAX + 1)
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404"):
                return history, None
            return history, f"check history not read: {aws_error(e)}"
        except BotoCoreError as e:
            return history, f"check history not read: {aws_error(e)}"
        try:
            history.checked, bad = read_history(body, now=time.time() if now is None else now)
        except MalformedError as e:
            return history, f"check history unreadable ({e}); this run checks in list order"
        if bad:
            return history, f"check history: {len(bad)} malformed entries left out (first: {bad[0]}); checked first"
        return history, None

    def last_checked(self, key: str) -> float:
        return self.checked.get(key, 0.0)

    def save(self, checked_now: Iterable[str], keep: Iterable[str], now: float) -> str | None:
        """Record this run's checks; entries no longer in the list are dropped. Returns a warning on failure."""
        keep_set = set(keep)
        merged = {k: v for k, v in self.checked.items() if k in keep_set}
        for key in checked_now:
            merged[key] = round(now, 3)
        body = json.dumps({"list": self.list_name[:300], "checked": merged}, separators=(",", ":")).encode()
        try:
            self._s3.put_object(Bucket=self._place.bucket, Key=self._key, Body=body, ContentType="application/json")
        except (ClientError, BotoCoreError) as e:
            return f"check history not stored: {aws_error(e)}"
        self.checked = merged
        return None

"""What a run keeps in S3 next to its reports: the lease that lets one run at a time, and when each entry of a list
was last checked, so a list too long for one run is checked in rotation rather than never reaching its tail."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .ecr import aws_error

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


@dataclass
class Lease:
    """An S3 object written only if absent (or over an expired one, by its ETag): one run at a time on any account,
    without reserved concurrency (which a new account's quota of 10 cannot give)."""

    s3: Any
    place: Place
    etag: str

    @classmethod
    def take(cls, s3: Any, place: Place, run_id: str, *, seconds: float, now: float | None = None) -> Lease:
        now = time.time() if now is None else now
        body = json.dumps({"runId": run_id, "since": round(now), "until": round(now + seconds)}).encode()
        key = place.state_key(LEASE_NAME)
        try:
            answer = s3.put_object(
                Bucket=place.bucket, Key=key, Body=body, IfNoneMatch="*", ContentType="application/json"
            )
            return cls(s3, place, answer["ETag"])
        except ClientError as e:
            if _code(e) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
        # Someone holds it: take it over only if it has expired (its holder was killed), and only that version.
        try:
            current = s3.get_object(Bucket=place.bucket, Key=key)
            holder = json.loads(current["Body"].read(4096))
            etag = current["ETag"]
            until = float(holder.get("until", 0))
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404"):
                return cls.take(s3, place, run_id, seconds=seconds, now=now)
            raise
        except (ValueError, TypeError, AttributeError):
            holder, until, etag = {}, 0.0, None
        if until > now:
            raise AnotherRunError(
                f"another run is in progress (run {str(holder.get('runId'))[:64]}, lease until "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(until))}); this invocation started nothing"
            )
        try:
            put = {"IfMatch": etag} if etag else {}
            answer = s3.put_object(Bucket=place.bucket, Key=key, Body=body, ContentType="application/json", **put)
        except ClientError as e:
            if _code(e) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise AnotherRunError("another run is in progress (it took the expired lease first)") from None
            raise
        return cls(s3, place, answer["ETag"])

    def release(self) -> str | None:
        """Delete the lease if it is still this run's; returns why it could not be, if so."""
        try:
            self.s3.delete_object(Bucket=self.place.bucket, Key=self.place.state_key(LEASE_NAME), IfMatch=self.etag)
        except (ClientError, BotoCoreError) as e:
            return aws_error(e)
        return None


def identity(source: str, target: str) -> str:
    """A short stable name for one entry's copy (source -> target), as kept in the check history."""
    return hashlib.sha256(f"{source} -> {target}".encode()).hexdigest()[:20]


class History:
    """When each entry of one list was last checked (epoch seconds); never-checked entries come first."""

    def __init__(self, s3: Any, place: Place, list_name: str, checked: Mapping[str, float]) -> None:
        self._s3 = s3
        self._place = place
        self._key = place.state_key(f"checked-{hashlib.sha256(list_name.encode()).hexdigest()[:16]}.json")
        self.list_name = list_name
        self.checked = dict(checked)

    @classmethod
    def load(cls, s3: Any, place: Place, list_name: str) -> tuple[History, str | None]:
        """The history, and a warning when it could not be read (the run then checks in list order)."""
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
            data = json.loads(body) if len(body) <= _HISTORY_BYTES_MAX else None
            checked = data["checked"] if isinstance(data, dict) else None
            if not isinstance(checked, dict):
                raise ValueError
            history.checked = {
                str(k)[:64]: float(v) for k, v in list(checked.items())[:HISTORY_MAX] if isinstance(v, int | float)
            }
        except (ValueError, TypeError, KeyError):
            return history, "check history unreadable; this run checks in list order"
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

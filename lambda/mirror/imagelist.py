"""The image list: where it comes from (package file, S3, SSM, the event) and its validated entries."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from .references import ImageRef, ReferenceError, Target, default_target, parse_reference, parse_target

MAX_ENTRIES = 20_000
MAX_LIST_BYTES = 8 * 1024 * 1024
_SHOWN = 200  # characters of a rejected entry echoed in the report


class ImageListError(Exception):
    """The list as a whole cannot be read: the run stops before anything starts."""


class S3Reader(Protocol):
    def get_object(self, **kwargs: Any) -> Any: ...


class SsmReader(Protocol):
    def get_parameter(self, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Entry:
    """One list entry; `error` is set for an invalid one, `duplicate_of` when an earlier entry does the same copy."""

    index: int
    text: str
    source: ImageRef | None = None
    target: Target | None = None
    error: str | None = None
    duplicate_of: int | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


def load_text(spec: str, *, package_dir: Path, s3: S3Reader | None = None, ssm: SsmReader | None = None) -> str:
    """Read the list named by IMAGE_LIST: `s3://bucket/key`, `ssm:/name` or a path inside the function package."""
    try:
        if spec.startswith("s3://"):
            bucket, _, key = spec[len("s3://") :].partition("/")
            assert s3 is not None
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_LIST_BYTES + 1)
            return _decode(body, spec)
        if spec.startswith("ssm:"):
            assert ssm is not None
            return str(ssm.get_parameter(Name=spec[len("ssm:") :], WithDecryption=True)["Parameter"]["Value"])
        path = (package_dir / spec).resolve()
        with path.open("rb") as f:
            return _decode(f.read(MAX_LIST_BYTES + 1), spec)
    except ImageListError:
        raise
    except Exception as e:  # any reader's failure (missing key, denied, ...) means the same: no list
        code = getattr(e, "response", {}).get("Error", {}).get("Code") if hasattr(e, "response") else None
        raise ImageListError(f"cannot read the image list {spec!r}: {code or type(e).__name__}") from e


def _decode(body: bytes, spec: str) -> str:
    if len(body) > MAX_LIST_BYTES:
        raise ImageListError(f"the image list {spec!r} is larger than {MAX_LIST_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ImageListError(f"the image list {spec!r} is not UTF-8 text") from None


class _AliasRefused(yaml.YAMLError):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__("alias")
        self.mark = mark


class _ListLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases: a document of a few hundred bytes whose aliases nest expands
    exponentially when walked. Without them a document holds at most as many nodes as it has bytes (capped)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise _AliasRefused(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        return super().compose_node(parent, index)


def parse_document(text: str, where: str) -> list[object]:
    """The raw entries under `images:` of a YAML document (no anchors and aliases)."""
    try:
        document = yaml.load(text, Loader=_ListLoader)  # noqa: S506 (a SafeLoader subclass)
    except _AliasRefused as e:
        raise ImageListError(
            f"the image list {where!r} uses a YAML alias at line {e.mark.line + 1}: image lists may not use "
            "anchors and aliases (write each entry out)"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ImageListError(f"the image list {where!r} is not valid YAML{at}") from None
    except RecursionError:
        raise ImageListError(f"the image list {where!r} nests too deeply") from None
    if not isinstance(document, dict) or "images" not in document:
        raise ImageListError(f"the image list {where!r} must be a mapping with an 'images:' list")
    return check_entries(document["images"], where)


def check_entries(images: object, where: str) -> list[object]:
    if not isinstance(images, list):
        raise ImageListError(f"'images' in {where!r} must be a list, got {type(images).__name__}")
    if not images:
        raise ImageListError(f"the image list {where!r} is empty: nothing to mirror")
    if len(images) > MAX_ENTRIES:
        raise ImageListError(f"the image list {where!r} has {len(images)} entries (at most {MAX_ENTRIES})")
    return images


def _shown(raw: object, limit: int = _SHOWN) -> str:
    """A rejected entry as a person reads it, at most `limit` characters, built without its full representation:
    the walk stops once the budget is spent (a nested structure's full repr can be exponentially large)."""
    if isinstance(raw, str):
        return raw if len(raw) <= limit else raw[:limit] + "..."
    parts: list[str] = []
    budget = [limit + 1]

    def emit(text: str) -> None:
        parts.append(text[: budget[0]])
        budget[0] -= len(text)

    def walk(value: object, depth: int) -> None:
        if budget[0] <= 0:
            return
        if depth > 20:
            emit("...")
        elif isinstance(value, dict):
            emit("{")
            for i, (key, item) in enumerate(value.items()):
                if budget[0] <= 0:
                    break
                emit(", " if i else "")
                walk(key, depth + 1)
                emit(": ")
                walk(item, depth + 1)
            emit("}")
        elif isinstance(value, list | tuple):
            emit("[")
            for i, item in enumerate(value):
                if budget[0] <= 0:
                    break
                emit(", " if i else "")
                walk(item, depth + 1)
            emit("]")
        elif isinstance(value, str):
            emit(repr(value[: budget[0]]))
        elif isinstance(value, int) and value.bit_length() > 256:
            emit(f"<integer of {value.bit_length()} bits>")
        elif value is None or isinstance(value, bool | int | float):
            emit(repr(value))
        else:
            emit(f"<{type(value).__name__}>")

    walk(raw, 0)
    text = "".join(parts)
    return text if len(text) <= limit else text[:limit] + "..."


def parse_entry(index: int, raw: object, prefix: str, sources: Collection[str] | None = None) -> Entry:
    """Validate one entry: a reference string, or a mapping {source: ..., target: ...}; its registry must be one of
    `sources` (when given)."""
    if isinstance(raw, dict):
        unknown = [_shown(k, 40) for k in raw if k not in ("source", "target")]
        if unknown or "source" not in raw:
            listed = ", ".join(sorted(unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            why = f"unknown keys {listed}" if unknown else "no 'source'"
            return Entry(index, _shown(raw), error=f"entry {index + 1}: {why} (expected 'source' and 'target')")
        source_raw, target_raw = raw["source"], raw.get("target")
    elif isinstance(raw, str):
        source_raw, target_raw = raw, None
    else:
        return Entry(
            index,
            _shown(raw),
            error=f"entry {index + 1}: must be a reference string or a mapping with 'source', not {type(raw).__name__}",
        )
    shown = _shown(source_raw)
    try:
        source = parse_reference(source_raw)
        if sources is not None and source.registry not in sources:
            raise ReferenceError(
                f"registry {source.registry} is not an allowed source (SOURCE_REGISTRIES: the deployment's list)"
            )
        if target_raw is None:
            target = default_target(source, prefix)
        else:
            target = parse_target(target_raw, default_tag=source.tag)
            if not target.repository.startswith(prefix + "/"):
                raise ReferenceError(
                    f"target repository {target.repository!r} is outside the mirror prefix '{prefix}/' "
                    "(the deployment may write only there)"
                )
    except ReferenceError as e:
        return Entry(index, shown, error=f"entry {index + 1} ({shown!r}): {e}")
    return Entry(index, str(source), source=source, target=target)


def parse_entries(images: Sequence[object], prefix: str, sources: Collection[str] | None = None) -> list[Entry]:
    """Validate every entry; a second entry writing the same target is a duplicate (same source) or invalid, and
    so is one writing a repository that another entry fills from another upstream repository."""
    entries: list[Entry] = []
    by_target: dict[Target, Entry] = {}
    by_repository: dict[str, Entry] = {}
    for index, raw in enumerate(images):
        entry = parse_entry(index, raw, prefix, sources)
        if entry.target is not None and entry.source is not None:
            owner = by_repository.setdefault(entry.target.repository, entry)
            assert owner.source is not None
            if owner.source.name != entry.source.name:
                entries.append(
                    Entry(
                        index,
                        entry.text,
                        entry.source,
                        entry.target,
                        error=f"entry {index + 1}: target repository {entry.target.repository} is filled from "
                        f"{owner.source.name} by entry {owner.index + 1}; a repository belongs to one upstream",
                    )
                )
                continue
            first = by_target.get(entry.target)
            if first is None:
                by_target[entry.target] = entry
            elif first.source == entry.source:
                entry = Entry(index, entry.text, entry.source, entry.target, duplicate_of=first.index)
            else:
                entry = Entry(
                    index,
                    entry.text,
                    entry.source,
                    entry.target,
                    error=f"entry {index + 1}: target {entry.target} is already written by entry {first.index + 1} "
                    f"({first.text})",
                )
        entries.append(entry)
    return entries

"""The image list: where it comes from (package file, S3, SSM, the event) and its validated entries."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import yaml

from .references import (
    ImageRef,
    Naming,
    ReferenceError,
    Target,
    check_repository_name,
    has_tag_or_digest,
    parse_reference,
    parse_target,
)
from .tagsets import RuleError, Selection, TagRule, parse_rule
from .trust import Platform, PlatformError, parse_platforms

MAX_ENTRIES = 20_000
MAX_LIST_BYTES = 8 * 1024 * 1024
_SHOWN = 200  # characters of a rejected entry echoed in the report


class ImageListError(Exception):
    """The list as a whole cannot be read: the run stops before anything starts."""


class S3Reader(Protocol):
    def get_object(self, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class TagSet:
    """A list entry's tag rule: evaluated against the source's tag list on every run, then expanded."""

    rule: TagRule
    repository: str  # the ECR repository every selected tag goes to, under its own name
    description: str  # "entry 3: docker.io/library/nginx tags semver >=1.26 <2, latest 3"


@dataclass(frozen=True)
class Entry:
    """One list entry; `error` is set for an invalid one, `duplicate_of` when an earlier entry does the same copy.

    `number` is the entry's place in the user's list (an expanded tag keeps its tag set's); `rule` names the tag
    set a tag came from; `failure` is set for a tag set that could not be expanded (its one `failed` record).
    `platforms`: the platforms its copy keeps (its own `platforms`, else the PLATFORMS setting); empty: every one.
    """

    index: int
    text: str
    source: ImageRef | None = None
    target: Target | None = None
    error: str | None = None
    duplicate_of: int | None = None
    number: int = 0
    tag_set: TagSet | None = None
    rule: str | None = None
    failure: str | None = None
    platforms: tuple[Platform, ...] = ()

    @property
    def platform_names(self) -> tuple[str, ...]:
        """Its platforms as the plan, the report and the build name them (`linux/arm64`, in canonical order)."""
        return tuple(str(p) for p in self.platforms)

    @property
    def valid(self) -> bool:
        return self.error is None and self.failure is None and self.tag_set is None


@dataclass(frozen=True)
class _Failed:
    """Stands in the expanded list for a tag set that selected nothing or could not be listed."""

    text: str
    reason: str


#: seconds a warm container reuses a list read from SSM (Powertools' cache) before reading it again
SSM_MAX_AGE = 60


def load_text(spec: str, *, package_dir: Path, s3: S3Reader | None = None) -> str:
    """Read the list named by IMAGE_LIST: `s3://bucket/key`, `ssm:/name` (a String or SecureString, through
    Powertools' Parameters utility) or a path inside the function package."""
    try:
        if spec.startswith("s3://"):
            bucket, _, key = spec[len("s3://") :].partition("/")
            assert s3 is not None
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_LIST_BYTES + 1)
            return _decode(body, spec)
        if spec.startswith("ssm:"):
            from aws_lambda_powertools.utilities import parameters
            from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

            try:
                return str(parameters.get_parameter(spec[len("ssm:") :], decrypt=True, max_age=SSM_MAX_AGE))
            except GetParameterError as e:  # Powertools wraps the SDK's error without chaining it
                raise (e.__context__ if isinstance(e.__context__, Exception) else e) from None
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


def _allowed(source: ImageRef, sources: Collection[str] | None) -> None:
    if sources is not None and source.registry not in sources:
        raise ReferenceError(
            f"registry {source.registry} is not an allowed source (SOURCE_REGISTRIES: the deployment's list)"
        )


def _under_prefix(repository: str, naming: Naming) -> None:
    if not naming.allows(repository):
        shown = ", ".join(f"'{p}/'" for p in naming.prefixes)
        raise ReferenceError(
            f"target repository {repository!r} is outside the mirror prefix {shown} (the deployment may write only "
            "there)"
        )


def _unknown_keys(raw: dict[object, object], allowed: tuple[str, ...]) -> list[str]:
    return [_shown(k, 40) for k in raw if k not in allowed]


def parse_entry(
    index: int,
    raw: object,
    prefix: str | Naming,
    sources: Collection[str] | None = None,
    *,
    number: int | None = None,
    platforms: tuple[Platform, ...] = (),
) -> Entry:
    """Validate one entry: a reference string, a mapping {source, target, platforms}, or a tag set {source, tags,
    target, platforms}; its registry must be one of `sources` (when given). `number` is its place in the user's
    list; `platforms` what an entry that names none copies (the PLATFORMS setting)."""
    number = number or index + 1
    naming = Naming.of(prefix)
    if isinstance(raw, _Failed):
        return Entry(index, raw.text, number=number, failure=raw.reason)
    if isinstance(raw, dict):
        allowed = ("source", "target", "platforms", "tags") if "tags" in raw else ("source", "target", "platforms")
        unknown = _unknown_keys(raw, allowed)
        if unknown or "source" not in raw:
            listed = ", ".join(sorted(unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            why = f"unknown keys {listed}" if unknown else "no 'source'"
            expected = (
                "'source', 'tags', 'target' and 'platforms'" if "tags" in raw else "'source', 'target' and 'platforms'"
            )
            return Entry(index, _shown(raw), number=number, error=f"entry {number}: {why} (expected {expected})")
        if "platforms" in raw:
            try:
                platforms = _entry_platforms(raw["platforms"])
            except PlatformError as e:
                return Entry(
                    index, _shown(raw), number=number, error=f"entry {number} ({_shown(raw['source'])!r}): {e}"
                )
        if "tags" in raw:
            return replace(_parse_tag_set(index, raw, naming, sources, number), platforms=platforms)
        source_raw, target_raw = raw["source"], raw.get("target")
    elif isinstance(raw, str):
        source_raw, target_raw = raw, None
    else:
        return Entry(
            index,
            _shown(raw),
            number=number,
            error=f"entry {number}: must be a reference string or a mapping with 'source', not {type(raw).__name__}",
        )
    shown = _shown(source_raw)
    try:
        source = parse_reference(source_raw)
        _allowed(source, sources)
        if target_raw is None:
            target = naming.default_target(source)
        else:
            target = parse_target(target_raw, default_tag=source.tag)
            _under_prefix(target.repository, naming)
    except ReferenceError as e:
        return Entry(index, shown, number=number, error=f"entry {number} ({shown!r}): {e}")
    return Entry(index, str(source), source=source, target=target, number=number, platforms=platforms)


#: what an entry writes to copy every platform whatever the PLATFORMS setting says
ALL_PLATFORMS = "all"


def _entry_platforms(raw: object) -> tuple[Platform, ...]:
    """An entry's `platforms`: a list such as [linux/amd64, linux/arm64], or `all` (every platform, digests as
    upstream's, whatever PLATFORMS says)."""
    if raw == ALL_PLATFORMS:
        return ()
    if isinstance(raw, str):
        raise PlatformError(f"platforms must be a list such as [linux/amd64, linux/arm64], or {ALL_PLATFORMS!r}")
    return parse_platforms(raw)


def _parse_tag_set(
    index: int, raw: dict[object, object], naming: Naming, sources: Collection[str] | None, number: int
) -> Entry:
    """`{source: nginx, tags: {semver: ">=1.26"}, target: mirror/web}`: a repository, a rule, an optional target
    repository (each selected tag keeps its own name)."""
    source_raw, target_raw = raw["source"], raw.get("target")
    shown = _shown(source_raw)
    try:
        source = parse_reference(source_raw)
        if isinstance(source_raw, str) and has_tag_or_digest(source_raw):
            raise ReferenceError("a tag set's source is a repository, without a tag or digest (the rule picks tags)")
        _allowed(source, sources)
        if target_raw is None:
            repository = naming.default_target(ImageRef(source.registry, source.repository, "x")).repository
        else:
            if not isinstance(target_raw, str) or has_tag_or_digest(target_raw):
                raise ReferenceError("a tag set's target is a repository, without a tag (each tag keeps its name)")
            repository = check_repository_name(target_raw)
            _under_prefix(repository, naming)
        rule = parse_rule(raw["tags"])
    except (ReferenceError, RuleError) as e:
        return Entry(index, shown, number=number, error=f"entry {number} ({shown!r}): {e}")
    source = ImageRef(source.registry, source.repository)
    description = f"entry {number}: {source.name} tags {rule.describe()}"
    return Entry(index, source.name, source=source, number=number, tag_set=TagSet(rule, repository, description))


def parse_entries(
    images: Sequence[object],
    prefix: str | Naming,
    sources: Collection[str] | None = None,
    *,
    numbers: Sequence[int] | None = None,
    rules: Sequence[str | None] | None = None,
    platforms: tuple[Platform, ...] = (),
) -> list[Entry]:
    """Validate every entry; a second entry writing the same target is a duplicate (same source) or invalid, and
    so is one writing a repository that another entry fills from another upstream repository. `numbers` and
    `rules` carry, for an expanded list, each item's place in the user's list and the tag set it came from."""
    entries: list[Entry] = []
    by_target: dict[Target, Entry] = {}
    by_repository: dict[str, Entry] = {}
    for index, raw in enumerate(images):
        number = numbers[index] if numbers is not None else index + 1
        entry = parse_entry(index, raw, prefix, sources, number=number, platforms=platforms)
        if rules is not None and rules[index] is not None:
            entry = replace(entry, rule=rules[index])
        repository = entry.target.repository if entry.target else entry.tag_set.repository if entry.tag_set else None
        if repository is not None and entry.source is not None and entry.error is None:
            owner = by_repository.setdefault(repository, entry)
            assert owner.source is not None
            if owner.source.name != entry.source.name:
                entries.append(
                    replace(
                        entry,
                        tag_set=None,
                        error=f"entry {number}: target repository {repository} is filled from "
                        f"{owner.source.name} by entry {owner.number}; a repository belongs to one upstream",
                    )
                )
                continue
        if entry.target is not None and entry.error is None:
            first = by_target.get(entry.target)
            if first is None:
                by_target[entry.target] = entry
            elif first.source == entry.source and first.platforms == entry.platforms:
                entry = replace(entry, duplicate_of=first.index)
            elif first.source == entry.source:
                entry = replace(
                    entry,
                    error=f"entry {number}: target {entry.target} is already written by entry {first.number} "
                    "with other platforms",
                )
            else:
                entry = replace(
                    entry,
                    error=f"entry {number}: target {entry.target} is already written by entry {first.number} "
                    f"({first.text})",
                )
        entries.append(entry)
    return entries


def expand_tag_sets(
    images: Sequence[object],
    entries: Sequence[Entry],
    listings: Mapping[int, Selection | list[str] | str],
    prefix: str | Naming,
    sources: Collection[str] | None = None,
    *,
    platforms: tuple[Platform, ...] = (),
) -> list[Entry]:
    """The list with each tag set replaced by the tags its rule selected (`listings`: entry index -> the selection,
    the tags listed for the rule to select from without digests, or why they could not be listed), each checked
    and copied as a single-tag entry with `rule` naming its set.
    A rule that selects nothing, or whose listing failed, stays as one record that fails with the reason.

    The expanded list is capped at MAX_ENTRIES records, as the list itself is: every entry keeps at least its one
    record, and the room left over goes to tag sets in list order (an earlier entry keeps all its tags before a
    later one gets any). A tag set that is cut keeps the highest tags it selected, and its last record fails with
    how many it dropped and why. Only the records kept are ever built.
    """
    spare = MAX_ENTRIES - len(entries)  # records beyond each entry's first
    expanded: list[object] = []
    numbers: list[int] = []
    rules: list[str | None] = []
    for entry, raw in zip(entries, images, strict=True):
        tag_set = entry.tag_set
        if tag_set is None or entry.source is None:
            expanded.append(raw)
            numbers.append(entry.number)
            rules.append(None)
            continue
        listed = listings.get(entry.index, "tags not listed")
        items: list[object]
        if isinstance(listed, str):
            items = [_Failed(entry.text, listed)]
        else:
            selection = listed if isinstance(listed, Selection) else tag_set.rule.candidates(listed).selection()
            selected = selection.tags
            kept, spare = _fit(len(selected), spare)
            own = {"platforms": raw["platforms"]} if isinstance(raw, dict) and "platforms" in raw else {}
            items = [
                {"source": f"{entry.source.name}:{tag}", "target": f"{tag_set.repository}:{tag}", **own}
                for tag in selected[:kept]
            ]
            if not selected:
                items.append(
                    _Failed(entry.text, f"tags: the rule selects none of the {selection.listed} tags of {entry.text}")
                )
            elif kept < len(selected):
                items.append(
                    _Failed(
                        entry.text,
                        f"tags: {len(selected) - kept:,} of the {len(selected):,} selected tags dropped: the run's "
                        f"list is capped at {MAX_ENTRIES:,} entries (earlier entries keep theirs first)",
                    )
                )
        expanded.extend(items)
        numbers.extend([entry.number] * len(items))
        rules.extend([tag_set.description] * len(items))
    return parse_entries(expanded, prefix, sources, numbers=numbers, rules=rules, platforms=platforms)


def _fit(selected: int, spare: int) -> tuple[int, int]:
    """How many of a tag set's `selected` tags it keeps, and the spare records left after it. A set that fits
    takes its tags (the first in its own record); one that does not keeps what fits and one record saying so."""
    if selected <= spare + 1:
        return selected, spare - max(selected - 1, 0)
    return max(spare, 0), 0

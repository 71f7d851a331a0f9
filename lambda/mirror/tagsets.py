r"""Tag sets: which of a repository's tags a rule selects (semver ranges, variants, regexes, latest N); pure.

Versions follow Docker's tag convention, as Renovate's "docker" versioning reads tags: one to four dot-separated
numbers of any length, an optional leading `v`, then optionally `-` and a variant (`1.27.3-alpine`,
`20-bookworm-slim`). Each version has a scheme: a calendar tag's first number reads as a year or a date (alpine's
`20260805` edge snapshots, `2024.12.1`), every other version is a release number. A range compares tags of its own
scheme only, so `>=3.20` never selects `20260805`, while `>=20250101` selects the dated tags and nothing else.

`latest: N` counts releases, not names: tags that name one image are one release. The digests say which tags name
one image (the run's HEADs, which cost no pull); where a digest is not known, a tag with fewer numbers names the
newest release it prefixes (`26` and `26.7` name `26.7.0` when that is the newest 26.7.x), as Docker's official
images tag them. Releases are counted within each variant.

A rule's `match` and `exclude` are the user's regular expressions, so they run in RE2 (linear in the tag's length
whatever the pattern): Python's `re` backtracks, and `v?(\d+\.?)+` on a 61-character tag never returns while holding
the GIL, so no deadline could stop it. The module's own fixed patterns below are bounded and stay with `re`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from .trust import ARTIFACT_TAG_RE

# A number has at most 32 digits (a tag has at most 128 characters): build numbers and timestamps are versions.
_VERSION_RE = re.compile(r"v?(\d{1,32}(?:\.\d{1,32}){0,3})(?:-([A-Za-z0-9_.-]+))?")
_COMPARATOR_RE = re.compile(r"(>=|<=|>|<|=|\^|~)?\s*v?(\d{1,32}(?:\.\d{1,32}){0,3})")
_VARIANT_RE = re.compile(r"[A-Za-z0-9_.-]{1,127}")
RULE_KEYS = frozenset({"semver", "variant", "match", "exclude", "latest"})
REGEX_MAX = 200
LATEST_MAX = 1000
RANGE_MAX = 200
VARIANTS_MAX = 50
#: `variant: any`: versions of every variant (releases still counted within each)
ANY = "any"


class RuleError(ValueError):
    """A tag rule that cannot be used; the message says which part and why."""


class Pattern(Protocol):
    """What a rule asks of a compiled RE2 pattern (google-re2's `_Regexp`)."""

    def fullmatch(self, text: str) -> object | None: ...
    def search(self, text: str) -> object | None: ...


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the entry's `invalid` record, not a line on stderr


def compile_pattern(name: str, pattern: str) -> Pattern:
    """`pattern` compiled by RE2; RuleError (naming `name`, the pattern and RE2's reason) when RE2 refuses it:
    backreferences, lookaround, possessive or atomic groups, repetition counts above 1000, and Python's `\\Z`
    (RE2's end of text is `\\z`)."""
    try:
        compiled: Pattern = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as e:
        why = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise RuleError(
            f"tags: {name} {pattern[:60]!r} is not a valid regular expression (RE2 syntax: no backreferences or "
            f"lookaround): {why[:120]}"
        ) from None
    except UnicodeEncodeError:
        raise RuleError(f"tags: {name} is not valid text (it holds an unpaired surrogate)") from None
    return compiled


Numbers = tuple[int, int, int, int]


def is_calendar(first: str) -> bool:
    """Whether a version's first number reads as a date: a year from 1970 to 2099 (`2024.12.1`), or six or more
    digits that start with one and a month (`202608`, `20260805`, `20260805123456`)."""
    if len(first) >= 6:
        return 1970 <= int(first[:4]) <= 2099 and 1 <= int(first[4:6]) <= 12
    return len(first) == 4 and 1970 <= int(first) <= 2099


@dataclass(frozen=True, order=True)
class Version:
    """A tag read as a version: its numbers (padded to four for comparison), how many were written, its variant,
    and whether it is a calendar tag."""

    numbers: Numbers
    parts: int
    variant: str | None
    calendar: bool = False

    @property
    def rank(self) -> tuple[Numbers, int]:
        # On a tie the tag with more parts ranks first: 1.27.0 above 1.27.
        return self.numbers, self.parts

    @property
    def written(self) -> tuple[int, ...]:
        return self.numbers[: self.parts]


def _pad(numbers: list[int]) -> Numbers:
    padded = [*numbers, 0, 0, 0][:4]
    return padded[0], padded[1], padded[2], padded[3]


def parse_version(tag: str) -> Version | None:
    """`1.27.3-alpine` -> Version((1, 27, 3, 0), 3, "alpine"); None for a tag that is not a version."""
    match = _VERSION_RE.fullmatch(tag)
    if match is None:
        return None
    raw = match.group(1).split(".")
    return Version(_pad([int(n) for n in raw]), len(raw), match.group(2), is_calendar(raw[0]))


Bound = tuple[str, Numbers]  # (operator, version) with operator in >=, >, <=, <, =


@dataclass(frozen=True)
class Alternative:
    """Comparators that must all hold (AND), over tags of one scheme (calendar or release numbers)."""

    calendar: bool
    bounds: tuple[Bound, ...]


def _bump(numbers: list[int], at: int) -> Numbers:
    """The first version above every version that starts with numbers[:at + 1]."""
    head = numbers[: at + 1]
    head[-1] += 1
    return _pad(head)


def _comparator(text: str) -> tuple[bool, list[Bound]]:
    match = _COMPARATOR_RE.fullmatch(text)
    if match is None:
        raise RuleError(f"semver: {text[:40]!r} is not a comparator (>=1.26, <2, =1.27.3, 1.27, ~1.27, ^1.2)")
    operator, raw = match.group(1), match.group(2)
    calendar = is_calendar(raw.split(".")[0])
    numbers = [int(n) for n in raw.split(".")]
    if operator is None:  # a bare version is every version it starts: 1.27 := >=1.27 <1.28 (npm's X-range)
        return calendar, [(">=", _pad(numbers)), ("<", _bump(numbers, len(numbers) - 1))]
    if operator == "~":  # ~1.2.3 := >=1.2.3 <1.3; ~1.2 := >=1.2 <1.3; ~1 := >=1 <2
        return calendar, [(">=", _pad(numbers)), ("<", _bump(numbers, min(1, len(numbers) - 1)))]
    if operator == "^":  # the first non-zero number may not change: ^1.2 := >=1.2 <2; ^0.2.3 := >=0.2.3 <0.3
        first = next((i for i, n in enumerate(numbers) if n), len(numbers) - 1)
        return calendar, [(">=", _pad(numbers)), ("<", _bump(numbers, first))]
    return calendar, [(operator, _pad(numbers))]


def parse_range(text: str) -> tuple[Alternative, ...]:
    """`>=1.26 <2 || >=3` -> alternatives (OR) of comparators (AND), each over one scheme."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("semver must be a non-empty range such as '>=1.26 <2'")
    if len(text) > RANGE_MAX:
        raise RuleError(f"semver is longer than {RANGE_MAX} characters")
    alternatives = []
    for alternative in text.split("||"):
        # ">= 1.26" is one comparator: join an operator to the version that follows it
        words = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", alternative.strip()).split()
        if not words:
            raise RuleError(f"semver {text[:60]!r} has an empty alternative")
        comparators = [_comparator(word) for word in words]
        schemes = {calendar for calendar, _ in comparators}
        if len(schemes) > 1:
            raise RuleError(
                f"semver {alternative.strip()[:60]!r} joins a calendar bound (a year or a date) with a release "
                "number: write them as alternatives (||)"
            )
        alternatives.append(Alternative(schemes.pop(), tuple(b for _, bounds in comparators for b in bounds)))
    return tuple(alternatives)


def _holds(bound: Bound, numbers: Numbers) -> bool:
    operator, version = bound
    return {
        ">=": numbers >= version,
        ">": numbers > version,
        "<=": numbers <= version,
        "<": numbers < version,
        "=": numbers == version,
    }[operator]


def in_range(version: Version, alternatives: tuple[Alternative, ...]) -> bool:
    return any(
        a.calendar == version.calendar and all(_holds(b, version.numbers) for b in a.bounds) for a in alternatives
    )


@dataclass(frozen=True)
class Selection:
    """What a rule selected from a tag list, in order (releases newest first, then other tags A-Z), and each tag
    left out under the reason it was."""

    tags: tuple[str, ...]
    left_out: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def listed(self) -> int:
        """How many tags the rule chose from."""
        return len(self.tags) + sum(len(tags) for tags in self.left_out.values())


@dataclass(frozen=True)
class Candidates:
    """The tags a rule's filters let through, before `latest` counts releases: for each variant (in the rule's
    order) and scheme, its releases as the tag names say (`groups`, newest first: each the newest tag of its
    numbers, then the shorter tags that float to it)."""

    latest: int | None
    buckets: tuple[tuple[tuple[str, ...], ...], ...]
    others: tuple[str, ...]
    left_out: Mapping[str, tuple[str, ...]]

    def _walk(self, bucket: tuple[tuple[str, ...], ...], digests: Mapping[str, str | None]) -> tuple[int, list[str]]:
        """How many of a bucket's groups `latest` looks at, and the releases they count, in order. A release is
        what a group's first (most specific) tag names: its digest, or the group where the digest is unknown. A
        shorter tag never counts a release of its own: a stale alias (`8-alpine3.22` still on 8.4.0) only ever
        joins a release already counted."""
        releases: dict[str, None] = {}
        for walked, group in enumerate(bucket):
            if self.latest is not None and len(releases) >= self.latest:
                return walked, list(releases)
            releases.setdefault(_release(group[0], group, digests))
        return len(bucket), list(releases)

    def wanted(self, digests: Mapping[str, str | None]) -> list[str]:
        """The tags whose digests `latest` still needs (those not yet in `digests`): each bucket's groups, newest
        first, until N releases are counted with what is known. Asked again after the answers, it names the next
        groups where tags that name one image merged releases, and nothing once the count is settled."""
        if self.latest is None:
            return []
        asked: list[str] = []
        for bucket in self.buckets:
            walked, _ = self._walk(bucket, digests)
            asked.extend(t for group in bucket[:walked] for t in group if t not in digests)
        return asked

    def selection(self, digests: Mapping[str, str | None] | None = None) -> Selection:
        """The selected tags: with `latest`, each bucket's N newest releases under every name of theirs among the
        groups counted (tags with one digest are one release; without digests, the groups the names make); else
        every candidate."""
        digests = digests or {}
        left_out = {k: list(v) for k, v in self.left_out.items()}
        chosen: list[str] = []
        for bucket in self.buckets:
            if self.latest is None:
                chosen.extend(t for group in bucket for t in group)
                continue
            walked, releases = self._walk(bucket, digests)
            named: dict[str, list[str]] = {r: [] for r in releases}
            older = f"older than the {self.latest} newest release{'s' if self.latest > 1 else ''}"
            for group in bucket[:walked]:
                first = _release(group[0], group, digests)
                for tag in group:
                    key = _release(tag, group, digests)
                    if key not in named and digests.get(group[0]) is None:
                        key = first  # the first tag's digest is unknown (its HEAD failed): the group by its names
                    if key in named:
                        named[key].append(tag)
                    else:
                        left_out.setdefault(f"names an image {older}", []).append(tag)
            chosen.extend(t for tags in named.values() for t in tags)
            left_out.setdefault(older, []).extend(t for group in bucket[walked:] for t in group)
        return Selection((*chosen, *self.others), {k: tuple(v) for k, v in left_out.items() if v})


def _release(tag: str, group: tuple[str, ...], digests: Mapping[str, str | None]) -> str:
    """Which release a tag names: its digest where known, else its group's (the first tag's digest, or the group)."""
    return digests.get(tag) or digests.get(group[0]) or f"group {group[0]}"


def _groups(versions: list[tuple[Version, str]]) -> list[tuple[str, ...]]:
    """One bucket's versions as releases by name, newest first: a tag names the newest tag its numbers prefix
    (`26` -> `26.7.0`, `1.27` -> `1.27.3`), so a group is a release and the shorter tags that float to it."""
    versions = sorted(versions, key=lambda vt: (vt[0].rank, vt[1]), reverse=True)
    newest: dict[tuple[int, ...], str] = {}
    for version, tag in versions:
        written = version.written
        for end in range(1, len(written) + 1):
            newest.setdefault(written[:end], tag)
    groups: dict[str, list[str]] = {}
    for version, tag in versions:
        groups.setdefault(newest[version.written], []).append(tag)
    return [tuple(tags) for tags in groups.values()]


#: a variant that is a pre-release (`rc1`, `beta2`, `M01`, `rc-alpine`): `variant: any` leaves it out (name it)
_PRERELEASE_RE = re.compile(r"(?i)(?:alpha|beta|rc|pre|preview|dev|m)\.?\d*(?:[-.].*)?")
_CALENDAR = "a calendar tag (a year or a date: only a calendar range such as >=20250101 selects it)"
_NOT_CALENDAR = "not a calendar tag (the range compares dates)"


@dataclass(frozen=True)
class TagRule:
    """A validated rule: every given filter must hold; `latest` applies last.

    `variant` is None (tags without a variant; every variant when `match` or `exclude` is given, since a pattern
    sees every tag), a tuple of variants, or ANY.
    """

    semver: str | None = None
    variant: tuple[str, ...] | str | None = None
    match: str | None = None
    exclude: str | None = None
    latest: int | None = None

    @property
    def needs_versions(self) -> bool:
        """Whether only version tags can be selected (anything but a bare match/exclude)."""
        return self.semver is not None or self.variant is not None or self.latest is not None

    def describe(self) -> str:
        """`semver >=1.26 <2, latest 3`, as the report names the rule."""
        variant = ", ".join(self.variant) if isinstance(self.variant, tuple) else self.variant
        parts = [
            f"{name} {value}"
            for name, value in (
                ("semver", self.semver),
                ("variant", f"[{variant}]" if isinstance(self.variant, tuple) and len(self.variant) > 1 else variant),
                ("match", self.match),
                ("exclude", self.exclude),
                ("latest", self.latest),
            )
            if value is not None
        ]
        return ", ".join(parts)

    def _variants(self) -> tuple[str | None, ...] | None:
        """The variants selected, in order; None: every variant (`any`, or no `variant` but a pattern: `match` and
        `exclude` see every tag)."""
        if self.variant == ANY or (self.variant is None and (self.match is not None or self.exclude is not None)):
            return None
        return self.variant if isinstance(self.variant, tuple) else (None,)

    def candidates(self, tags: Iterable[str]) -> Candidates:
        """What the filters let through, grouped for `latest`, and why each other tag is left out. A range judges
        a group by its first tag, the release the others name: under `>=3.20`, `3` is in when it names 3.24.1."""
        alternatives = parse_range(self.semver) if self.semver is not None else None
        schemes = {a.calendar for a in alternatives} if alternatives is not None else {False}
        match = compile_pattern("match", self.match) if self.match is not None else None
        exclude = compile_pattern("exclude", self.exclude) if self.exclude is not None else None
        variants = self._variants()
        by_variant: dict[str | None, list[tuple[Version, str]]] = {v: [] for v in variants or ()}
        others: list[str] = []
        left_out: dict[str, list[str]] = {}
        for tag in dict.fromkeys(tags):  # each tag once, in the order listed
            why = None
            version = parse_version(tag)
            if ARTIFACT_TAG_RE.fullmatch(tag):
                why = "the tag of a signature, attestation or SBOM (mirrored with its image)"
            elif match is not None and not match.fullmatch(tag):
                why = "not matched by match"
            elif exclude is not None and exclude.search(tag):
                why = "excluded by exclude"
            elif version is None:
                if not self.needs_versions:
                    others.append(tag)
                    continue
                why = "not a version"
            elif variants is not None and version.variant not in by_variant:
                why = "another variant"
            elif self.variant == ANY and version.variant and _PRERELEASE_RE.fullmatch(version.variant):
                why = "a pre-release (variant any leaves it out: name its variant to select it)"
            elif self.needs_versions and version.calendar not in schemes:
                why = _CALENDAR if version.calendar else _NOT_CALENDAR
            if why is not None:
                left_out.setdefault(why, []).append(tag)
                continue
            assert version is not None
            by_variant.setdefault(version.variant, []).append((version, tag))
        # Releases are counted within each variant (in the rule's order; with any, plain tags first, then A-Z),
        # and within each scheme: release numbers first, then calendar tags.
        order = list(by_variant) if variants is not None else sorted(by_variant, key=lambda v: (v is not None, v))
        buckets = []
        for variant in order:
            for scheme in (False, True):
                versions = [vt for vt in by_variant[variant] if vt[0].calendar == scheme]
                groups = _groups(versions)
                if alternatives is not None:
                    heads = dict((tag, version) for version, tag in versions)
                    outside = [g for g in groups if not in_range(heads[g[0]], alternatives)]
                    left_out.setdefault("outside the range", []).extend(t for g in outside for t in g)
                    groups = [g for g in groups if in_range(heads[g[0]], alternatives)]
                if groups:
                    buckets.append(tuple(groups))
        return Candidates(
            self.latest,
            tuple(buckets),
            tuple(sorted(others)),
            {k: tuple(v) for k, v in left_out.items() if v},
        )

    def select(self, tags: Iterable[str], digests: Mapping[str, str | None] | None = None) -> list[str]:
        """The tags this rule selects (`digests`: what is known of which tags name one image)."""
        return list(self.candidates(tags).selection(digests).tags)


_CALENDAR = "a calendar tag (a year or a date: only a calendar range such as >=20250101 selects it)"


def _parse_variant(variant: object) -> tuple[str, ...] | str | None:
    if variant is None or variant == ANY:
        return variant
    listed = [variant] if isinstance(variant, str) else variant
    if (
        not isinstance(listed, list)
        or not 1 <= len(listed) <= VARIANTS_MAX
        or not all(isinstance(v, str) and _VARIANT_RE.fullmatch(v) for v in listed)
    ):
        raise RuleError(
            "tags: variant must be a tag's text after its first '-' (letters, digits, '_', '.', '-'), a list of "
            f"at most {VARIANTS_MAX} of them, or 'any'"
        )
    return tuple(dict.fromkeys(listed))


def parse_rule(raw: object) -> TagRule:
    """Validate a list entry's `tags:` mapping; a RuleError names the part that is wrong."""
    if not isinstance(raw, Mapping) or not raw:
        raise RuleError("tags must be a mapping of semver, variant, match, exclude and latest")
    unknown = sorted(str(k)[:40] for k in raw if k not in RULE_KEYS)
    if unknown:
        raise RuleError(f"tags: unknown keys {', '.join(unknown[:5])} (expected {', '.join(sorted(RULE_KEYS))})")
    semver, variant, match, exclude, latest = (raw.get(k) for k in ("semver", "variant", "match", "exclude", "latest"))
    if semver is not None:
        if isinstance(semver, int | float) and not isinstance(semver, bool):
            semver = str(semver)  # YAML reads `semver: 20` as a number
        parse_range(semver)
    for name, pattern in (("match", match), ("exclude", exclude)):
        if pattern is None:
            continue
        if not isinstance(pattern, str) or not pattern or len(pattern) > REGEX_MAX:
            raise RuleError(f"tags: {name} must be a regular expression of 1 to {REGEX_MAX} characters")
        compile_pattern(name, pattern)
    if latest is not None and (
        isinstance(latest, bool) or not isinstance(latest, int) or not 1 <= latest <= LATEST_MAX
    ):
        raise RuleError(f"tags: latest must be a whole number from 1 to {LATEST_MAX}")
    return TagRule(semver, _parse_variant(variant), match, exclude, latest)

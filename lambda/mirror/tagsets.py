r"""Tag sets: which of a repository's tags a rule selects (semver ranges, variants, regexes, latest N); pure.

Versions follow Docker's tag convention, as Renovate's "docker" versioning reads tags: one to four dot-separated
numbers, an optional leading `v`, then optionally `-` and a variant (`1.27.3-alpine`, `20-bookworm-slim`). Only
tags of one variant are compared with each other.

A rule's `match` and `exclude` are the user's regular expressions, so they run in RE2 (linear in the tag's length
whatever the pattern): Python's `re` backtracks, and `v?(\d+\.?)+` on a 61-character tag never returns while holding
the GIL, so no deadline could stop it. The module's own fixed patterns below are bounded and stay with `re`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

_VERSION_RE = re.compile(r"v?(\d{1,9}(?:\.\d{1,9}){0,3})(?:-([A-Za-z0-9_.-]+))?")
_COMPARATOR_RE = re.compile(r"(>=|<=|>|<|=|\^|~)?\s*v?(\d{1,9}(?:\.\d{1,9}){0,3})")
_VARIANT_RE = re.compile(r"[A-Za-z0-9_.-]{1,127}")
RULE_KEYS = frozenset({"semver", "variant", "match", "exclude", "latest"})
REGEX_MAX = 200
LATEST_MAX = 1000
RANGE_MAX = 200


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


@dataclass(frozen=True, order=True)
class Version:
    """A tag read as a version: its numbers (padded to four for comparison), how many were written, its variant."""

    numbers: tuple[int, int, int, int]
    parts: int
    variant: str | None

    @property
    def rank(self) -> tuple[tuple[int, int, int, int], int]:
        # On a tie the tag with more parts ranks first: 1.27.0 above 1.27.
        return self.numbers, self.parts


def _pad(numbers: list[int]) -> tuple[int, int, int, int]:
    padded = [*numbers, 0, 0, 0][:4]
    return padded[0], padded[1], padded[2], padded[3]


def parse_version(tag: str) -> Version | None:
    """`1.27.3-alpine` -> Version((1, 27, 3, 0), 3, "alpine"); None for a tag that is not a version."""
    match = _VERSION_RE.fullmatch(tag)
    if match is None:
        return None
    numbers = [int(n) for n in match.group(1).split(".")]
    return Version(_pad(numbers), len(numbers), match.group(2))


Bound = tuple[str, tuple[int, int, int, int]]  # (operator, version) with operator in >=, >, <=, <, =


def _bump(numbers: list[int], at: int) -> tuple[int, int, int, int]:
    """The first version above every version that starts with numbers[:at + 1]."""
    head = numbers[: at + 1]
    head[-1] += 1
    return _pad(head)


def _comparator(text: str) -> list[Bound]:
    match = _COMPARATOR_RE.fullmatch(text)
    if match is None:
        raise RuleError(f"semver: {text[:40]!r} is not a comparator (>=1.26, <2, =1.27.3, 1.27, ~1.27, ^1.2)")
    operator, raw = match.group(1), match.group(2)
    numbers = [int(n) for n in raw.split(".")]
    if operator is None:  # a bare version is every version it starts: 1.27 := >=1.27 <1.28 (npm's X-range)
        return [(">=", _pad(numbers)), ("<", _bump(numbers, len(numbers) - 1))]
    if operator == "~":  # ~1.2.3 := >=1.2.3 <1.3; ~1.2 := >=1.2 <1.3; ~1 := >=1 <2
        return [(">=", _pad(numbers)), ("<", _bump(numbers, min(1, len(numbers) - 1)))]
    if operator == "^":  # the first non-zero number may not change: ^1.2 := >=1.2 <2; ^0.2.3 := >=0.2.3 <0.3
        first = next((i for i, n in enumerate(numbers) if n), len(numbers) - 1)
        return [(">=", _pad(numbers)), ("<", _bump(numbers, first))]
    return [(operator, _pad(numbers))]


def parse_range(text: str) -> tuple[tuple[Bound, ...], ...]:
    """`>=1.26 <2 || >=3` -> alternatives (OR) of comparators (AND)."""
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
        alternatives.append(tuple(bound for word in words for bound in _comparator(word)))
    return tuple(alternatives)


def _holds(bound: Bound, numbers: tuple[int, int, int, int]) -> bool:
    operator, version = bound
    return {
        ">=": numbers >= version,
        ">": numbers > version,
        "<=": numbers <= version,
        "<": numbers < version,
        "=": numbers == version,
    }[operator]


def in_range(version: Version, alternatives: tuple[tuple[Bound, ...], ...]) -> bool:
    return any(all(_holds(b, version.numbers) for b in alternative) for alternative in alternatives)


@dataclass(frozen=True)
class TagRule:
    """A validated rule: every given filter must hold; `latest` applies last."""

    semver: str | None = None
    variant: str | None = None
    match: str | None = None
    exclude: str | None = None
    latest: int | None = None

    @property
    def needs_versions(self) -> bool:
        """Whether only version tags can be selected (anything but a bare match/exclude)."""
        return self.semver is not None or self.variant is not None or self.latest is not None

    def describe(self) -> str:
        """`semver >=1.26 <2, latest 3`, as the report names the rule."""
        parts = [
            f"{name} {value}"
            for name, value in (
                ("semver", self.semver),
                ("variant", self.variant),
                ("match", self.match),
                ("exclude", self.exclude),
                ("latest", self.latest),
            )
            if value is not None
        ]
        return ", ".join(parts)

    def select(self, tags: Iterable[str]) -> list[str]:
        """The tags this rule selects: versions highest first (more parts first on a tie), then other tags A-Z."""
        alternatives = parse_range(self.semver) if self.semver is not None else None
        match = compile_pattern("match", self.match) if self.match is not None else None
        exclude = compile_pattern("exclude", self.exclude) if self.exclude is not None else None
        versions: list[tuple[Version, str]] = []
        others: list[str] = []
        for tag in dict.fromkeys(tags):  # each tag once, in the order listed
            if match is not None and not match.fullmatch(tag):
                continue
            if exclude is not None and exclude.search(tag):
                continue
            version = parse_version(tag)
            if version is None:
                if not self.needs_versions:
                    others.append(tag)
                continue
            if version.variant != self.variant:
                continue
            if alternatives is not None and not in_range(version, alternatives):
                continue
            versions.append((version, tag))
        versions.sort(key=lambda vt: (vt[0].rank, vt[1]), reverse=True)
        chosen = [tag for _, tag in versions]
        if self.latest is not None:
            chosen = chosen[: self.latest]
        return chosen + sorted(others)


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
    if variant is not None and (not isinstance(variant, str) or not _VARIANT_RE.fullmatch(variant)):
        raise RuleError("tags: variant must be a tag's text after its first '-' (letters, digits, '_', '.', '-')")
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
    return TagRule(semver, variant, match, exclude, latest)

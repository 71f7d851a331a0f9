"""The reference grammar against upstream's own test tables (distribution/reference), normalised as Docker does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mirror.references import ReferenceError, parse_reference

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "data" / "distribution_reference.json").read_text())


def normalised(case: dict[str, Any]) -> tuple[str, str, str | None, str | None]:
    """What upstream's ParseNormalizedNamed makes of a case of its Parse table (splitDockerDomain)."""
    first, slash, rest = case["repository"].partition("/")
    if slash and (first == "localhost" or "." in first or ":" in first or first != first.lower()):
        registry, path = first.lower(), rest
    else:
        registry, path = "docker.io", case["repository"]
        if "/" not in path:
            path = f"library/{path}"
    registry = "docker.io" if registry == "index.docker.io" else registry
    digest = case.get("digest") or None
    return registry, path, case.get("tag") or (None if digest else "latest"), digest


ACCEPTED = [c for c in VECTORS["parse"] if "err" not in c and "repository" in c]
REFUSED = [c for c in VECTORS["parse"] if "err" in c]


@pytest.mark.parametrize("case", ACCEPTED, ids=[c["input"][:60] for c in ACCEPTED])
def test_what_upstream_parses_is_parsed_the_same(case: dict[str, Any]) -> None:
    ref = parse_reference(case["input"])
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == normalised(case)


@pytest.mark.parametrize("case", REFUSED, ids=[f"{c['input'][:50]} ({c['err']})" for c in REFUSED])
def test_what_upstream_refuses_is_refused(case: dict[str, Any]) -> None:
    with pytest.raises(ReferenceError):
        parse_reference(case["input"])


@pytest.mark.parametrize("name", VECTORS["validNames"])
def test_upstreams_valid_names_are_accepted(name: str) -> None:
    parse_reference(name)


@pytest.mark.parametrize("name", VECTORS["invalidNames"])
def test_upstreams_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ReferenceError):
        parse_reference(name)


def test_the_tables_are_all_there() -> None:
    assert len(VECTORS["parse"]) == 48
    assert len(ACCEPTED) + len(REFUSED) == 48
    assert "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a" in VECTORS["invalidNames"]

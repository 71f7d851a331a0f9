"""Platforms as a list names them and as indexes carry them: parsed, normalised and matched as containerd does
(cases from containerd/platforms platforms_test.go, TestParseSelector), selected from a real official image's index
(tests/data/hello-world-index.json, from docker-library/meta-scripts), and the index the mirror writes of them."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from mirror.imagelist import parse_entries
from mirror.planning import Check, Status, plan
from mirror.registry import DeadlineError, ManifestHead, NotFoundError, RegistryClient
from mirror.settings import ConfigurationError, Settings
from mirror.stages import DEADLINE_REASON, check_images
from mirror.trust import (
    PLATFORM_LIST,
    PLATFORMS_MAX,
    SHOWN_PLATFORMS,
    UPSTREAM_DIGEST,
    Platform,
    PlatformError,
    config_platform,
    describe_platforms,
    descriptor_platform,
    filtered_from,
    filtered_index,
    parse_platform,
    parse_platforms,
    platform_list,
    select_platforms,
)

INDEX: dict[str, Any] = json.loads((Path(__file__).parents[1] / "data" / "hello-world-index.json").read_text())
A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def spec(os: str, architecture: str, variant: str | None = None, *, more: dict[str, Any] | None = None) -> Platform:
    """An index descriptor's platform, normalised as the matcher reads it."""
    raw: dict[str, object] = {"os": os, "architecture": architecture, **(more or {})}
    if variant is not None:
        raw["variant"] = variant
    found = descriptor_platform({"platform": raw})
    assert found is not None
    return found


# containerd/platforms TestParseSelector: each input, the platforms it matches, its formatted form
@pytest.mark.parametrize(
    ("written", "matches", "formatted"),
    [
        ("linux/arm64", [("linux", "aarch64"), ("linux", "aarch64", "v8"), ("linux", "arm64", "v8")], "linux/arm64"),
        ("linux/arm64/v8", [("linux", "aarch64"), ("linux", "aarch64", "v8"), ("linux", "arm64")], "linux/arm64"),
        ("linux/arm", [("linux", "arm", "v7"), ("linux", "armhf"), ("linux", "arm", "7")], "linux/arm/v7"),
        ("linux/arm/v6", [("linux", "armel")], "linux/arm/v6"),
        ("linux/arm/v7", [("linux", "arm"), ("linux", "armhf")], "linux/arm/v7"),
        ("Linux/x86_64", [("linux", "amd64")], "linux/amd64"),
        ("linux/s390x", [("linux", "s390x")], "linux/s390x"),
        ("linux/i386", [("linux", "386")], "linux/386"),
        ("macos/arm64", [("darwin", "arm64")], "darwin/arm64"),
    ],
)
def test_a_platform_matches_what_containerd_s_matcher_matches(
    written: str, matches: list[tuple[str, ...]], formatted: str
) -> None:
    wanted = parse_platform(written)
    assert str(wanted) == formatted
    for platform in matches:
        assert wanted.matches(spec(*platform)), platform


@pytest.mark.parametrize(
    ("written", "other"),
    [
        ("linux/amd64", ("linux", "arm64")),
        ("linux/arm64", ("linux", "arm64", "v9")),
        ("linux/arm/v7", ("linux", "arm", "v6")),
        ("linux/amd64", ("windows", "amd64")),
        ("linux/amd64", ("linux", "amd64", "v3")),  # strict: a variant written upstream is asked for
        ("linux/amd64", ("unknown", "unknown")),
    ],
)
def test_a_platform_does_not_match_another(written: str, other: tuple[str, ...]) -> None:
    assert not parse_platform(written).matches(spec(*other))


def test_os_version_and_features_count_only_where_written() -> None:
    ltsc2019 = spec("windows", "amd64", more={"os.version": "10.0.17763.5576"})
    ltsc2022 = spec("windows", "amd64", more={"os.version": "10.0.20348.2340"})
    assert parse_platform("windows/amd64").matches(ltsc2019)
    assert parse_platform("windows/amd64").matches(ltsc2022)
    assert parse_platform("windows(10.0.17763)/amd64").matches(ltsc2019)
    assert not parse_platform("windows(10.0.17763)/amd64").matches(ltsc2022)
    assert not parse_platform("windows(10.0.1776)/amd64").matches(ltsc2019), "a version is matched by its parts"
    gpu = spec("linux", "amd64", more={"os.features": ["gpu"]})
    assert parse_platform("linux/amd64").matches(gpu)
    assert parse_platform("linux(+gpu+simd)/amd64").matches(gpu)
    assert not parse_platform("linux(+simd)/amd64").matches(gpu)
    assert str(parse_platform("linux(+unsorted+erofs)/amd64")) == "linux(+erofs+unsorted)/amd64"


@pytest.mark.parametrize(
    "written",
    ["", "linux", "/linux/arm", "linux/arm/", "linux /arm", "linux/&arm", "linux/arm/foo/bar", "linux/*", 7, None],
)
def test_what_is_not_a_platform_is_refused_with_the_reason(written: object) -> None:
    with pytest.raises(PlatformError, match="platform"):
        parse_platform(written)


def test_a_list_of_platforms_is_bounded_deduplicated_and_canonical() -> None:
    assert (
        platform_list(parse_platforms(["linux/arm64/v8", "linux/amd64", "linux/aarch64"])) == "linux/amd64,linux/arm64"
    )
    assert parse_platforms("linux/amd64, linux/arm64") == parse_platforms(["linux/arm64", "linux/amd64"])
    with pytest.raises(PlatformError, match="non-empty list"):
        parse_platforms([])
    with pytest.raises(PlatformError, match=f"at most {PLATFORMS_MAX}"):
        parse_platforms([f"linux/arch{i}" for i in range(PLATFORMS_MAX + 1)])


def digests_of(written: list[str]) -> list[str]:
    return [d[:19] for d in select_platforms(INDEX, parse_platforms(written)).digests]


def test_a_real_index_keeps_the_selected_platforms_with_their_attestations_in_its_order() -> None:
    # hello-world's amd64 is e2fc4e50..., described by the attestation 579b3724...
    assert digests_of(["linux/amd64"]) == ["sha256:579b3724a7b1", "sha256:e2fc4e5012d1"]
    assert digests_of(["linux/arm64/v8"]) == ["sha256:1f11fbd1720f", "sha256:2d4e459f4ecb"]
    assert digests_of(["linux/arm"]) == ["sha256:20aea1c63c90", "sha256:70304c314d8a"]
    assert digests_of(["windows(10.0.17763)/amd64"]) == ["sha256:3a0bd0fb5ad6"]  # Windows images carry none
    assert len(digests_of(["windows/amd64"])) == 2
    assert digests_of(["linux/s390x", "linux/amd64"]) == [
        "sha256:50f420e87106",
        "sha256:579b3724a7b1",
        "sha256:65f4b0d18025",
        "sha256:e2fc4e5012d1",
    ]


def test_an_index_without_the_platforms_says_which_it_has() -> None:
    selected = select_platforms(INDEX, parse_platforms(["linux/sparc64"]))
    assert selected.manifests == ()
    assert [str(p) for p in selected.platforms] == [
        "linux/arm/v6",
        "linux/arm/v7",
        "linux/arm64",
        "windows(10.0.20348.2340)/amd64",
        "windows(10.0.17763.5576)/amd64",
        "linux/s390x",
        "linux/riscv64",
        "linux/mips64le",
        "linux/arm/v5",
        "linux/386",
        "linux/amd64",
        "linux/ppc64le",
    ]


@pytest.mark.parametrize("index", [None, {}, {"manifests": "x"}, {"manifests": [{"size": 1}]}, [1]])
def test_what_is_no_index_is_refused(index: object) -> None:
    with pytest.raises(PlatformError):
        select_platforms(index, parse_platforms(["linux/amd64"]))


def test_the_mirror_s_index_is_stable_annotated_and_read_back() -> None:
    wanted = parse_platforms(["linux/arm64", "linux/amd64"])
    selected = select_platforms(INDEX, wanted)
    body = filtered_index(selected, A, wanted)
    assert body == filtered_index(select_platforms(json.loads(json.dumps(INDEX)), reversed(wanted)), A, wanted)
    document = json.loads(body)
    assert document["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert document["manifests"] == [m for m in INDEX["manifests"] if m["digest"] in selected.digests]
    assert document["annotations"] == {UPSTREAM_DIGEST: A, PLATFORM_LIST: "linux/amd64,linux/arm64"}
    assert filtered_from(document) == (A, "linux/amd64,linux/arm64")
    assert filtered_from(INDEX) is None
    assert filtered_from({"annotations": {UPSTREAM_DIGEST: 1, PLATFORM_LIST: "x"}}) is None
    assert hashlib.sha256(body).hexdigest() != hashlib.sha256(filtered_index(selected, B, wanted)).hexdigest()


def test_an_image_config_names_its_platform() -> None:
    assert config_platform({"architecture": "arm64", "os": "linux", "variant": "v8", "rootfs": {}}) == spec(
        "linux", "arm64"
    )
    assert config_platform({"architecture": 7}) is None
    assert config_platform([]) is None


def test_an_entry_a_tag_set_and_the_setting_choose_platforms() -> None:
    setting = parse_platforms(["linux/amd64"])
    entries = parse_entries(
        [
            "nginx:1.27",
            {"source": "redis:7", "platforms": ["linux/arm64"]},
            {"source": "node", "tags": {"latest": 1}, "platforms": ["linux/arm/v7"]},
            {"source": "python:3", "platforms": "all"},
            {"source": "bad:1", "platforms": ["linux"]},
            {"source": "bad:2", "platforms": "linux/amd64"},
        ],
        "mirror",
        platforms=setting,
    )
    assert [platform_list(e.platforms) for e in entries[:4]] == ["linux/amd64", "linux/arm64", "linux/arm/v7", ""]
    assert entries[4].error is not None
    assert "entry 5 ('bad:1'): 'linux' is not a platform" in entries[4].error
    assert entries[5].error is not None
    assert "a list such as [linux/amd64, linux/arm64], or 'all'" in entries[5].error


def test_one_target_with_two_platform_lists_is_invalid() -> None:
    first, second = parse_entries(
        [{"source": "redis:7", "platforms": ["linux/arm64"]}, {"source": "redis:7", "platforms": ["linux/amd64"]}],
        "mirror",
    )
    assert first.error is None
    assert second.error == "entry 2: target mirror/library/redis:7 is already written by entry 1 with other platforms"


def test_the_platforms_setting_is_read_and_a_bad_one_stops_the_run() -> None:
    env = {"CODEBUILD_PROJECT": "copy"}
    assert Settings.from_env(env).platforms == ()
    assert Settings.from_env({**env, "PLATFORMS": "linux/arm64/v8,linux/amd64"}).platforms == parse_platforms(
        ["linux/amd64", "linux/arm64"]
    )
    with pytest.raises(ConfigurationError, match="PLATFORMS: 'amd64' is not a platform"):
        Settings.from_env({**env, "PLATFORMS": "amd64"})


def test_the_plan_copies_a_filtered_index_once_per_repository_and_keeps_its_platforms() -> None:
    wanted = parse_platforms(["linux/amd64"])
    entries = parse_entries(["node:22", "node:22.1", "node:latest"], "mirror", platforms=wanted)
    checks = {
        0: Check(A, None, pulls=3, up_to_date=False, platforms=("linux/amd64",)),
        1: Check(A, None, pulls=3, up_to_date=False, platforms=("linux/amd64",)),
        2: Check(B, A, up_to_date=True, mirrored_from=B, platforms=("linux/amd64",)),  # another upstream digest
    }
    result = plan(entries, checks)
    first, second, third = result.decisions
    assert (first.status, second.status, third.status) == (Status.MISSING, Status.MISSING, Status.UNCHANGED)
    assert first.copy is not None
    assert second.copy is not None
    assert (first.copy.platforms, first.copy.pulls, first.copy.retag) == (("linux/amd64",), 3, False)
    assert (second.copy.platforms, second.copy.pulls, second.copy.retag, second.copy.after) == (
        ("linux/amd64",),
        0,
        True,
        0,
    )
    assert third.copy is None
    assert third.mirrored_from == B


def test_an_index_that_lists_one_manifest_for_two_platforms_gives_it_once_under_the_platform_asked() -> None:
    shared = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": A, "size": 1}
    index = {
        "manifests": [
            {**shared, "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
            {**shared, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
            {"digest": B, "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                          "vnd.docker.reference.digest": ["not", "a", "digest"]}},
        ]
    }  # fmt: skip
    selected = select_platforms(index, parse_platforms(["linux/arm/v7"]))
    assert [m["platform"] for m in selected.manifests] == [{"os": "linux", "architecture": "arm", "variant": "v7"}]
    both = select_platforms(index, parse_platforms(["linux/arm/v7", "linux/arm/v6"]))
    assert both.digests == (A,)


def test_a_reason_names_upstream_s_platforms_bounded_and_escaped() -> None:
    many = [Platform("linux", f"arch{n}\n" + "x" * 200) for n in range(SHOWN_PLATFORMS + 5)]
    text = describe_platforms(many)
    assert "\n" not in text
    assert text.endswith(" and 5 more")
    assert len(text) < (SHOWN_PLATFORMS + 1) * 82
    assert describe_platforms([]) == "no platform"


class Cutoff(RegistryClient):
    """A registry client whose time runs out at the first GET of a manifest (the mirror's index)."""

    def manifest_head(self, host: str, repository: str, reference: str) -> ManifestHead:
        return ManifestHead(A if host == "docker.io" else B, True)

    def manifest(self, host: str, repository: str, reference: str) -> bytes:
        raise DeadlineError("deadline: no time left for the request")


def test_a_platform_check_cut_by_the_deadline_is_incomplete_not_failed() -> None:
    entries = parse_entries(["nginx:1.27"], "mirror", platforms=parse_platforms(["linux/amd64"]))
    (check,) = check_images(
        entries, Cutoff(), "123456789012.dkr.ecr.us-east-1.amazonaws.com", concurrency=1, log=logging.getLogger()
    ).values()
    assert (check.error, check.complete) == (DEADLINE_REASON, False)


def test_a_copy_of_platforms_another_tag_holds_up_to_date_is_a_re_tag_of_the_mirror_s_index() -> None:
    wanted = parse_platforms(["linux/amd64"])
    entries = parse_entries(["node:22", "node:latest", "node:other"], "mirror", platforms=wanted)
    kept = ("linux/amd64",)
    checks = {
        0: Check(A, B, up_to_date=True, mirrored_from=A, platforms=kept),
        1: Check(A, None, pulls=3, up_to_date=False, platforms=kept),
        2: Check(B, None, pulls=3, up_to_date=False, platforms=kept),  # another upstream digest: copied
    }
    _, latest, other = plan(entries, checks).decisions
    assert latest.copy is not None
    assert (latest.copy.digest, latest.copy.retag, latest.copy.pulls, latest.copy.platforms) == (B, True, 0, ())
    assert latest.source_digest == A
    assert other.copy is not None
    assert (other.copy.digest, other.copy.retag, other.copy.platforms) == (B, False, kept)


class SaysSingle(RegistryClient):
    """quay.io answering a HEAD of an index with a single manifest's Content-Type, and its GET with the index."""

    def manifest_head(self, host: str, repository: str, reference: str) -> ManifestHead:
        if host == "quay.io":
            return ManifestHead(A, False)
        raise NotFoundError(f"{host}/{repository}:{reference}")

    def manifest(self, host: str, repository: str, reference: str) -> bytes:
        return json.dumps(INDEX).encode()


def test_an_index_whose_head_says_one_manifest_is_still_filtered() -> None:
    entries = parse_entries(["quay.io/org/app:1"], "mirror", platforms=parse_platforms(["linux/amd64"]))
    (check,) = check_images(
        entries, SaysSingle(), "123456789012.dkr.ecr.us-east-1.amazonaws.com", concurrency=1, log=logging.getLogger()
    ).values()
    assert check.error is None
    assert (check.platforms, check.single, check.pulls, check.up_to_date) == (("linux/amd64",), False, 3, False)

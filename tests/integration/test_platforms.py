"""Only the platforms a list names are mirrored: the function checks the mirror's own index of them against the
upstream digest it records (free), the real build copies each selected platform manifest by its digest and writes
that index, and Docker Hub's pulls are counted from the selection (the Docker-Hub-like stand-in counts one per
manifest GET, as Docker Hub does: docker/docs, manuals/docker-hub/usage/pulls.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from devtools.buildspec import BuildRun, run_build_phase
from devtools.registries import ECR_PASSWORD, ECR_USER, auth_file
from mirror.registry import MANIFEST_ACCEPT
from mirror.trust import PLATFORM_LIST, UPSTREAM_DIGEST
from tests.integration.conftest import Mirror, ecr_digest

THREE = ("amd64", "arm64/v8", "arm/v7")


def build(
    mirror: Mirror, workdir: Path, *, succeed: bool = True, entries: list[dict[str, Any]] | None = None
) -> BuildRun:
    """The real build of the last StartBuild the function made (or of `entries`)."""
    auth = auth_file(workdir / "auth.json", {mirror.registries.ecr.location: (ECR_USER, ECR_PASSWORD)})
    run = run_build_phase(
        mirror.mirror_images()[-1] if entries is None else entries,
        auth,
        cwd=workdir,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=mirror.env["REGISTRY_ENDPOINTS"],
    )
    assert (run.returncode == 0) is succeed, run.output
    return run


def ecr_manifest(mirror: Mirror, repository: str, reference: str) -> dict[str, Any]:
    response = requests.get(
        f"{mirror.registries.ecr.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": MANIFEST_ACCEPT},
        auth=(ECR_USER, ECR_PASSWORD),
        timeout=5,
    )
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def test_a_three_platform_index_filtered_to_one_is_mirrored_with_its_digest_then_unchanged(
    mirror: Mirror, tmp_path: Path
) -> None:
    hub = mirror.registries.hub
    # Given a Docker Hub index of three platforms, and an entry that runs arm64 only
    upstream = mirror.seed("app", "three platforms", tag="1", arches=THREE)
    arm64 = next(m for m in upstream.manifests() if m["platform"]["architecture"] == "arm64")  # type: ignore[index]
    entry = {"source": f"{mirror.image('app')}:1", "platforms": ["linux/arm64"]}

    # When the function runs, then it pulls nothing and asks the build for that platform, counted from the selection
    before = hub.pulls()
    (record,) = mirror.invoke({"images": [entry]})["images"]
    assert hub.pulls() == before
    assert record["status"] == "missing"
    assert record["platforms"] == ["linux/arm64"]
    assert record["sourceDigest"] == upstream.digest
    assert record["pulls"] == 3  # the index, and the platform with the attestation the official images carry
    (payload,) = mirror.mirror_images()[-1:]
    assert payload[0]["platforms"] == ["linux/arm64"]

    # When the real build copies it
    before = hub.pulls()
    run = build(mirror, tmp_path)

    # Then ECR's index lists one child, upstream's arm64 manifest by its own digest, and names what it was made from
    assert hub.pulls() - before == 2, run.output  # the index and one platform manifest
    assert "2 Docker Hub pulls spent" in run.output
    repository = "mirror/" + mirror.image("app")
    mirrored = ecr_manifest(mirror, repository, "1")
    assert [m["digest"] for m in mirrored["manifests"]] == [arm64["digest"]]
    assert mirrored["manifests"][0]["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert mirrored["annotations"] == {UPSTREAM_DIGEST: upstream.digest, PLATFORM_LIST: "linux/arm64"}
    assert ecr_digest(mirror, repository, str(arm64["digest"])) == arm64["digest"]
    assert ecr_digest(mirror, repository, upstream.digest) is None, "the upstream index cannot be in ECR"

    # When the function runs again, then the image is unchanged, free, and no build starts
    builds = len(mirror.builds)
    before = hub.pulls()
    (again,) = mirror.invoke({"images": [entry]})["images"]
    assert again["status"] == "unchanged", again
    assert again["sourceDigest"] == upstream.digest
    assert again["targetDigest"] == ecr_digest(mirror, repository, "1") != upstream.digest
    assert again["mirroredFrom"] == upstream.digest
    assert len(mirror.builds) == builds
    assert hub.pulls() == before

    # When the platform list changes, then it is changed, and the build's new index keeps both platforms
    wider = {**entry, "platforms": ["linux/amd64", "linux/arm64"]}
    (widened,) = mirror.invoke({"images": [wider]})["images"]
    assert widened["status"] == "changed"
    assert widened["mirroredFrom"] == upstream.digest
    before = hub.pulls()
    run = build(mirror, tmp_path)
    assert hub.pulls() - before == 2, run.output  # the index and amd64: arm64 is in the mirror already
    both = ecr_manifest(mirror, repository, "1")
    assert sorted(m["platform"]["architecture"] for m in both["manifests"]) == ["amd64", "arm64"]
    assert both["annotations"][PLATFORM_LIST] == "linux/amd64,linux/arm64"
    (settled,) = mirror.invoke({"images": [wider]})["images"]
    assert settled["status"] == "unchanged"

    # When upstream changes, then it is changed, and the copy records the new upstream digest
    changed = mirror.seed("app", "three platforms, rebuilt", tag="1", arches=THREE)
    (rebuilt,) = mirror.invoke({"images": [wider]})["images"]
    assert rebuilt["status"] == "changed"
    assert (rebuilt["sourceDigest"], rebuilt["mirroredFrom"]) == (changed.digest, upstream.digest)
    build(mirror, tmp_path)
    assert ecr_manifest(mirror, repository, "1")["annotations"][UPSTREAM_DIGEST] == changed.digest
    (last,) = mirror.invoke({"images": [wider]})["images"]
    assert last["status"] == "unchanged"


def test_attestations_of_the_selected_platforms_travel_and_are_counted(mirror: Mirror, tmp_path: Path) -> None:
    # Given an index as BuildKit writes the official images: each platform followed by its attestation manifest
    upstream = mirror.seed("attested", "attested platforms", tag="1", arches=THREE, attestations=True)
    children = upstream.manifests()
    amd64 = next(m for m in children if m["platform"]["architecture"] == "amd64")  # type: ignore[index]
    attestation = next(
        m
        for m in children
        if m.get("annotations", {}).get("vnd.docker.reference.digest") == amd64["digest"]  # type: ignore[attr-defined]
    )
    entry = {"source": f"{mirror.image('attested')}:1", "platforms": ["linux/amd64"]}

    # When the function runs and the build copies it
    mirror.invoke({"images": [entry]})
    before = mirror.registries.hub.pulls()
    run = build(mirror, tmp_path)

    # Then amd64 and its attestation (and nothing else) are in the mirror's index: three pulls
    assert mirror.registries.hub.pulls() - before == 3, run.output
    mirrored = ecr_manifest(mirror, "mirror/" + mirror.image("attested"), "1")
    assert [m["digest"] for m in mirrored["manifests"]] == [amd64["digest"], attestation["digest"]]


def test_a_tag_set_and_the_setting_choose_platforms_and_an_entry_s_own_list_wins(
    mirror: Mirror, tmp_path: Path
) -> None:
    # Given PLATFORMS=linux/amd64 for the whole list, a tag set of two tags of one index, and an entry of its own
    mirror.env["PLATFORMS"] = "linux/amd64"
    upstream = mirror.seed("set", "a tag set", tag="2.0", arches=THREE)
    mirror.seed("set", "a tag set", tag="2", arches=THREE)
    own = mirror.seed("own", "its own list", tag="1", arches=THREE)
    images = [
        {"source": mirror.image("set"), "tags": {"semver": ">=2"}},
        {"source": f"{mirror.image('own')}:1", "platforms": ["linux/arm/v7"]},
        {"source": f"{mirror.image('own')}:1", "target": "mirror/everything:1", "platforms": "all"},
    ]

    # When the function runs
    report = mirror.invoke({"images": images})

    # Then the tag set's tags keep the setting's platform, the entry its own, and `all` every platform
    by_target = {r["target"].rsplit("/", 1)[-1]: r for r in report["images"]}
    assert {r["platforms"][0] for r in report["images"] if "platforms" in r} == {"linux/amd64", "linux/arm/v7"}
    assert "platforms" not in by_target["everything:1"]
    (payload,) = mirror.mirror_images()
    kept = {p["target"].rsplit("/", 1)[-1]: p.get("platforms") for p in payload}
    assert kept == {
        "set:2.0": ["linux/amd64"],
        "set:2": ["linux/amd64"],
        "own:1": ["linux/arm/v7"],
        "everything:1": None,
    }
    assert [p.get("retag") for p in payload if p["target"].endswith("set:2")] == [True]  # one copy, then a re-tag

    # When the build runs, then the two tags hold one index of amd64, and the whole index is copied as it is
    before = mirror.registries.hub.pulls()
    run = build(mirror, tmp_path)
    set_repo = "mirror/" + mirror.image("set")
    assert ecr_digest(mirror, set_repo, "2.0") == ecr_digest(mirror, set_repo, "2") != upstream.digest
    assert ecr_digest(mirror, "mirror/everything", "1") == own.digest
    own_index = ecr_manifest(mirror, "mirror/" + mirror.image("own"), "1")
    assert [m["platform"].get("variant") for m in own_index["manifests"]] == ["v7"]
    # set: its index and amd64; own: its index and arm/v7; everything: the index and its three platforms
    assert mirror.registries.hub.pulls() - before == 2 + 2 + 4, run.output
    again = mirror.invoke({"images": images})
    assert {r["status"] for r in again["images"]} == {"unchanged"}, again


def test_a_single_platform_source_is_copied_as_it_is_or_fails_naming_its_platform(
    mirror: Mirror, tmp_path: Path
) -> None:
    # Given two single-platform Docker Hub images (amd64), one entry that runs amd64 and one that runs arm64
    single = mirror.seed("single", "one platform", kind="oci-manifest", tag="1")
    other = mirror.seed("other", "one platform too", kind="oci-manifest", tag="1")
    images = [
        {"source": f"{mirror.image('single')}:1", "platforms": ["linux/amd64"]},
        {"source": f"{mirror.image('other')}:1", "platforms": ["linux/arm64"]},
    ]

    # When the function runs and the build copies them (it learns their platforms only when it fetches them)
    mirror.invoke({"images": images})
    run = build(mirror, tmp_path, succeed=False)

    # Then the matching one is mirrored as it is, digest unchanged; the other fails naming its platform, untagged
    assert ecr_digest(mirror, "mirror/" + mirror.image("single"), "1") == single.digest
    assert ecr_digest(mirror, "mirror/" + mirror.image("other"), "1") is None
    (failed,) = run.lines("FAILED")
    assert "is linux/amd64 alone, none of linux/arm64" in failed

    # When the function runs again, then it reads the platform from the mirror (free) and fails it without a build
    builds, before = len(mirror.builds), mirror.registries.hub.pulls()
    first, second = mirror.invoke({"images": images})["images"]
    assert first["status"] == "unchanged"
    assert second["status"] == "failed"
    assert (
        second["error"]
        == f"platforms: docker.io/{mirror.image('other')}@{other.digest} is linux/amd64 alone, none of linux/arm64"
    )
    assert len(mirror.builds) == builds
    assert mirror.registries.hub.pulls() == before


def test_a_registry_that_counts_no_pulls_fails_an_index_without_the_platforms_in_the_check(mirror: Mirror) -> None:
    # Given a quay.io index of amd64 and arm64, and an entry that runs s390x
    mirror.seed_plain("noplatform", "two platforms", tag="1")
    entry = {"source": f"quay.io/{mirror.image('noplatform')}:1", "platforms": ["linux/s390x"]}

    # When the function runs
    (record,) = mirror.invoke({"images": [entry]})["images"]

    # Then its record fails naming the platforms the index has, and no build starts
    assert record["status"] == "failed"
    assert "has linux/amd64, linux/arm64, none of linux/s390x" in record["error"]
    assert mirror.builds == []


def test_the_build_refuses_platforms_that_are_not_platforms(mirror: Mirror, tmp_path: Path) -> None:
    upstream = mirror.seed("refused", "refused", tag="1")
    host = json.loads(mirror.env["REGISTRY_ENDPOINTS"])["docker.io"].split("//", 1)[1]
    base = {
        "source": f"{host}/{mirror.image('refused')}@{upstream.digest}",
        "target": f"{mirror.registries.ecr.location}/mirror/refused:1",
        "digest": upstream.digest,
        "registry": "docker.io",
        "pulls": 3,
    }
    bad = [{**base, "platforms": ["linux"]}, {**base, "platforms": "linux/amd64"}, {**base, "single": True}]
    run = build(mirror, tmp_path, succeed=False, entries=bad)
    refused = run.lines("REFUSED")
    assert len(refused) == 3, run.output
    assert "platforms:" in refused[0]
    assert "not a platform" in refused[0]
    assert "non-empty list" in refused[1]
    assert "comes with platforms" in refused[2]


def test_a_docker_hub_index_without_the_platforms_fails_in_its_build_then_in_the_check_free(
    mirror: Mirror, tmp_path: Path
) -> None:
    hub = mirror.registries.hub
    # Given a Docker Hub index of amd64 and arm64, and an entry that runs s390x
    mirror.seed("elsewhere", "two platforms", tag="1")
    entry = {"source": f"{mirror.image('elsewhere')}:1", "platforms": ["linux/s390x"]}

    # When the function runs, then it cannot know without a pull: the build reads the index, once, and fails it
    (first,) = mirror.invoke({"images": [entry]})["images"]
    assert first["status"] == "missing"
    before = hub.pulls()
    run = build(mirror, tmp_path, succeed=False)
    assert hub.pulls() - before == 1
    (failed,) = run.lines("FAILED")
    assert "has linux/amd64, linux/arm64, none of linux/s390x" in failed
    assert ecr_digest(mirror, "mirror/" + mirror.image("elsewhere"), "1") is None

    # When the function runs again, then the entry fails at the check, free, and no build starts
    builds, before = len(mirror.builds), hub.pulls()
    (again,) = mirror.invoke({"images": [entry]})["images"]
    assert again["status"] == "failed"
    assert "has none of linux/s390x, as the build that read its index found" in again["error"]
    assert (len(mirror.builds), hub.pulls()) == (builds, before)

    # When the list asks for a platform the index has, then it is copied
    (fixed,) = mirror.invoke({"images": [{**entry, "platforms": ["linux/arm64"]}]})["images"]
    assert fixed["status"] == "missing"


def test_a_pinned_single_manifest_with_platforms_is_copied_once_then_unchanged(mirror: Mirror, tmp_path: Path) -> None:
    hub = mirror.registries.hub
    single = mirror.seed("pinned", "one platform, pinned", kind="oci-manifest", tag="1")
    entry = {"source": f"{mirror.image('pinned')}:1@{single.digest}", "platforms": ["linux/amd64"]}

    (first,) = mirror.invoke({"images": [entry]})["images"]
    assert first["status"] == "missing"
    assert first["pulls"] == 1  # its HEAD (free) says it is one manifest
    before = hub.pulls()
    build(mirror, tmp_path)
    assert hub.pulls() - before == 1
    assert ecr_digest(mirror, "mirror/" + mirror.image("pinned"), "1") == single.digest

    builds = len(mirror.builds)
    (again,) = mirror.invoke({"images": [entry]})["images"]
    assert again["status"] == "unchanged"
    assert len(mirror.builds) == builds


def test_a_new_tag_of_an_index_mirrored_for_those_platforms_is_a_re_tag_of_the_mirror_s_index(
    mirror: Mirror, tmp_path: Path
) -> None:
    hub = mirror.registries.hub
    # Given an index mirrored for arm64 under tag 1, and tag 2 of the same index upstream, not yet in the list
    upstream = mirror.seed("moved", "moved", tag="1", arches=THREE)
    mirror.seed("moved", "moved", tag="2", arches=THREE)
    entries = [{"source": f"{mirror.image('moved')}:{t}", "platforms": ["linux/arm64"]} for t in ("1", "2")]
    mirror.invoke({"images": entries[:1]})
    build(mirror, tmp_path)
    repository = "mirror/" + mirror.image("moved")
    made = ecr_digest(mirror, repository, "1")
    assert made is not None

    # When the list gains tag 2, then its copy is a re-tag of the mirror's own index: no pull, the same digest
    first, second = mirror.invoke({"images": entries})["images"]
    assert first["status"] == "unchanged"
    assert (second["status"], second["sourceDigest"], second.get("retag"), second["pulls"]) == (
        "missing",
        upstream.digest,
        True,
        0,
    )
    before = hub.pulls()
    build(mirror, tmp_path)
    assert hub.pulls() == before
    assert ecr_digest(mirror, repository, "2") == made
    assert [r["status"] for r in mirror.invoke({"images": entries})["images"]] == ["unchanged", "unchanged"]

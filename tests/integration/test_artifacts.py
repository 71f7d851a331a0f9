"""Signatures, attestations and SBOMs travel with the image: signed the way cosign signs (devtools.signing, a key
made by the test), found by the function with HEADs and the referrers API, copied by the real build with their
digests, and verified against the mirror's copy as an admission controller verifies it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.buildspec import run_build_phase
from devtools.profiles import PROFILES
from devtools.registries import ECR_ACCOUNT_HOST, ECR_PASSWORD, ECR_USER, HubProxy, answer, auth_file, push_token
from devtools.signing import IN_TOTO, OCI_INDEX, Repo, Signer, attestation, referrers_of, sha, verify
from devtools.standins import RegistryFront
from mirror.planning import ASSUMED_PULLS
from tests.integration.conftest import Mirror, Registries, copy_entries, ecr_digest


@pytest.fixture
def quay(registries: Registries) -> Iterator[RegistryFront]:
    """quay.io as it answers, with its referrers API, in front of the registry without auth."""
    front = RegistryFront(PROFILES["quay.io"], registries.plain)
    try:
        yield front
    finally:
        front.close()


@pytest.fixture
def site(mirror: Mirror, quay: RegistryFront) -> Mirror:
    mirror.env["REGISTRY_ENDPOINTS"] = json.dumps(
        {"docker.io": mirror.registries.hub.url, ECR_ACCOUNT_HOST: mirror.registries.ecr.url, "quay.io": quay.url}
    )
    return mirror


def hub_repo(mirror: Mirror, name: str) -> Repo:
    """The Docker Hub side's repository, as its one user who may push."""
    token = push_token(mirror.registries.tokens, mirror.image(name))
    return Repo(mirror.registries.upstream.url, mirror.image(name), {"Authorization": f"Bearer {token}"})


def ecr_repo(mirror: Mirror, repository: str) -> Repo:
    login = base64.b64encode(f"{ECR_USER}:{ECR_PASSWORD}".encode()).decode()
    return Repo(mirror.registries.ecr.url, repository, {"Authorization": f"Basic {login}"})


def sig_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def test_signatures_and_an_attestation_are_mirrored_verified_and_then_unchanged(
    site: Mirror, quay: RegistryFront, tmp_path: Path
) -> None:
    mirror, hub = site, site.registries.hub
    signer = Signer()
    # Given a signed Docker Hub image, and a quay.io image with a signature and an attestation as a referrer
    signed = mirror.seed("signed", "a signed app")
    upstream = hub_repo(mirror, "signed")
    signer.sign(upstream, signed.digest)
    attested = mirror.seed_plain("attested", "an attested app", tag="1")
    quay_repo = Repo(mirror.registries.plain.url, mirror.image("attested"), {})
    signer.sign(quay_repo, attested.digest)
    index = quay_repo.get(f"manifests/{attested.digest}").content
    statement = attestation(quay_repo, attested.digest, OCI_INDEX, len(index), "https://slsa.dev/provenance/v1")
    provenance = quay.add_referrer(mirror.image("attested"), statement)
    images = [f"{mirror.image('signed')}:latest", f"quay.io/{mirror.image('attested')}:1"]

    # When the function runs
    checked = hub.pulls()
    report = mirror.invoke({"images": images})

    # Then each record lists what refers to its image, and the build is given it, counted
    assert hub.pulls() == checked, "looking for artifacts pulled from Docker Hub"
    first, second = report["images"]
    assert first["status"] == second["status"] == "missing"
    assert [(a["kind"], a["tag"], a["subject"], a["mirrored"]) for a in first["artifacts"]] == [
        ("signature", sig_tag(signed.digest), signed.digest, False)
    ]
    assert sorted((a["kind"], a["tag"], a["digest"]) for a in second["artifacts"]) == sorted(
        [
            ("attestation", None, provenance),
            ("signature", sig_tag(attested.digest), second["artifacts"][0]["digest"]),
        ]
    )
    assert (report["summary"]["artifactsFound"], report["summary"]["artifactsCopying"]) == (3, 3)
    ((hub_entry, quay_entry),) = mirror.mirror_images()
    assert hub_entry["pulls"] == ASSUMED_PULLS + 1  # the index and its platforms, assumed; the signature, one
    assert [a["tag"] for a in hub_entry["artifacts"]] == [sig_tag(signed.digest)]
    assert len(quay_entry["artifacts"]) == 2

    # When the real build copies them
    before = hub.pulls()
    run = copy_entries(mirror, [hub_entry, quay_entry], tmp_path)

    # Then every artifact is in ECR with its digest, and the signatures verify against the mirrored images
    assert len(run.lines("ARTIFACT")) == 3, run.output
    assert not run.lines("WARNING"), run.output
    assert hub.pulls() - before == 3 + 1  # an index, two platforms, one signature
    hub_target = first["target"].split("/", 1)[1].rsplit(":", 1)[0]
    quay_target = second["target"].split("/", 1)[1].rsplit(":", 1)[0]
    assert ecr_digest(mirror, hub_target, "latest") == signed.digest
    (payload,) = verify(ecr_repo(mirror, hub_target), signed.digest, signer.public_pem)
    assert payload["critical"]["image"]["docker-manifest-digest"] == signed.digest
    verify(ecr_repo(mirror, quay_target), attested.digest, signer.public_pem)
    assert ecr_digest(mirror, quay_target, provenance) == provenance
    # The local ECR stand-in has no referrers API: the attestation is found through the fallback tag.
    assert referrers_of(ecr_repo(mirror, quay_target), attested.digest) == [provenance]

    # When the function runs again: unchanged, everything mirrored, nothing started
    again = mirror.invoke({"images": images})
    assert [r["status"] for r in again["images"]] == ["unchanged", "unchanged"]
    assert all(a["mirrored"] for r in again["images"] for a in r["artifacts"])
    assert (again["summary"]["artifactsCopying"], again["summary"]["buildsStarted"]) == (0, 0)
    assert len(mirror.builds) == 1

    # When the upstream image is signed again (cosign appends a signature: a new manifest under the same tag)
    signer.sign(upstream, signed.digest, note="re-signed")
    third = mirror.invoke({"images": images})

    # Then only the new signature is copied, on a re-tag of the unchanged image, for one pull
    resigned, untouched = third["images"]
    assert (resigned["status"], untouched["status"]) == ("unchanged", "unchanged")
    assert [a["mirrored"] for a in resigned["artifacts"]] == [False]
    assert resigned["build"] is not None
    assert untouched["build"] is None
    ((entry,),) = mirror.mirror_images()[1:]
    assert (entry["retag"], entry["pulls"], [a["tag"] for a in entry["artifacts"]]) == (
        True,
        1,
        [sig_tag(signed.digest)],
    )
    before = hub.pulls()
    run = copy_entries(mirror, [entry], tmp_path)
    assert len(run.lines("ARTIFACT")) == 1, run.output
    assert hub.pulls() - before == 1
    assert len(verify(ecr_repo(mirror, hub_target), signed.digest, signer.public_pem)) == 2

    fourth = mirror.invoke({"images": images})
    assert [r["status"] for r in fourth["images"]] == ["unchanged", "unchanged"]
    assert len(mirror.builds) == 2


def test_an_index_under_the_fallback_tag_is_copied_whole_with_its_referrers(mirror: Mirror, tmp_path: Path) -> None:
    # Given a registry without the referrers API (distribution, as ghcr.io is) holding an SBOM referrer of an
    # image, listed by the index under the fallback tag that clients keep there (distribution-spec v1.1)
    layout = mirror.seed_plain("sbom", "an app with an sbom", tag="2")
    repo = Repo(mirror.registries.plain.url, mirror.image("sbom"), {})
    index = repo.get(f"manifests/{layout.digest}").content
    sbom = json.loads(attestation(repo, layout.digest, OCI_INDEX, len(index), "https://spdx.dev/Document"))
    sbom["artifactType"] = "application/spdx+json"
    body = json.dumps(sbom).encode()
    digest = repo.put_manifest(sha(body), body)
    listed = {"mediaType": sbom["mediaType"], "digest": digest, "size": len(body), "artifactType": sbom["artifactType"]}
    fallback = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [listed]}).encode()
    index_digest = repo.put_manifest(layout.digest.replace(":", "-"), fallback, OCI_INDEX)

    # When the function runs and the build copies
    report = mirror.invoke({"images": [f"quay.io/{mirror.image('sbom')}:2"]})
    (record,) = report["images"]
    assert [(a["kind"], a["digest"], a["tag"]) for a in record["artifacts"]] == [
        ("referrers", index_digest, layout.digest.replace(":", "-"))
    ]
    ((entry,),) = mirror.mirror_images()
    run = copy_entries(mirror, [entry], tmp_path)

    # Then the index is in ECR under its tag with its digest, and the referrer it lists with its own
    assert len(run.lines("ARTIFACT")) == 1, run.output
    target = record["target"].split("/", 1)[1].rsplit(":", 1)[0]
    assert ecr_digest(mirror, target, layout.digest.replace(":", "-")) == index_digest
    assert ecr_digest(mirror, target, digest) == digest
    assert referrers_of(ecr_repo(mirror, target), layout.digest) == [digest]
    again = mirror.invoke({"images": [f"quay.io/{mirror.image('sbom')}:2"]})
    assert [r["status"] for r in again["images"]] == ["unchanged"]
    assert len(mirror.builds) == 1


def test_copy_artifacts_off_looks_for_none(mirror: Mirror) -> None:
    signed = mirror.seed("off", "signed but not wanted")
    Signer().sign(hub_repo(mirror, "off"), signed.digest)
    mirror.env["COPY_ARTIFACTS"] = "false"

    report = mirror.invoke({"images": [f"{mirror.image('off')}:latest"]})

    (record,) = report["images"]
    assert record["status"] == "missing"
    assert "artifacts" not in record
    assert not [p for _, p in mirror.hub_requests() if "/manifests/sha256-" in p or "/referrers/" in p]
    ((entry,),) = mirror.mirror_images()
    assert "artifacts" not in entry


def test_an_index_signed_with_its_platforms_brings_each_platforms_signature(
    site: Mirror, quay: RegistryFront, tmp_path: Path
) -> None:
    # Given an index signed as `cosign sign --recursive` signs it: the index and each platform manifest
    layout = site.seed_plain("recursive", "signed all the way down", tag="3")
    repo = Repo(site.registries.plain.url, site.image("recursive"), {})
    signer = Signer()
    platforms = [str(m["digest"]) for m in layout.manifests()]
    for digest in [layout.digest, *platforms]:
        signer.sign(repo, digest)

    # When the function runs (quay.io counts no pulls: the index is read there) and the build copies
    report = site.invoke({"images": [f"quay.io/{site.image('recursive')}:3"]})
    (record,) = report["images"]
    assert sorted(a["subject"] for a in record["artifacts"]) == sorted([layout.digest, *platforms])
    ((entry,),) = site.mirror_images()
    run = copy_entries(site, [entry], tmp_path)

    # Then each signature verifies against its own manifest in the mirror
    assert len(run.lines("ARTIFACT")) == 3, run.output
    target = ecr_repo(site, record["target"].split("/", 1)[1].rsplit(":", 1)[0])
    for digest in [layout.digest, *platforms]:
        verify(target, digest, signer.public_pem)
    again = site.invoke({"images": [f"quay.io/{site.image('recursive')}:3"]})
    assert [a["mirrored"] for a in again["images"][0]["artifacts"]] == [True, True, True]
    assert len(site.mirror_images()) == 1


def test_an_artifact_the_build_cannot_copy_is_a_warning_and_the_image_stands(mirror: Mirror, tmp_path: Path) -> None:
    # Given a signed image whose signature is gone upstream by the time the build copies it
    layout = mirror.seed_plain("gone", "signature deleted after the check", tag="1")
    repo = Repo(mirror.registries.plain.url, mirror.image("gone"), {})
    signature = Signer().sign(repo, layout.digest)
    mirror.invoke({"images": [f"quay.io/{mirror.image('gone')}:1"]})
    ((entry,),) = mirror.mirror_images()
    assert repo.get(f"manifests/{signature}").status_code == 200
    requests.delete(f"{repo.url}/v2/{repo.name}/manifests/{signature}", timeout=10).raise_for_status()

    # When the build runs
    run = copy_entries(mirror, [entry], tmp_path)  # asserts it succeeded and copied the image

    # Then the image is copied, the signature is a warning naming it, and the build does not fail
    (warning,) = run.lines("WARNING")
    assert f"signature {signature} not copied: copy failed" in warning
    assert "0 artifacts copied, 1 not" in run.output
    target = entry["target"].split("/", 1)[1].rsplit(":", 1)[0]
    assert ecr_digest(mirror, target, "1") == layout.digest
    assert ecr_digest(mirror, target, sig_tag(layout.digest)) is None


def test_a_tag_set_over_a_signed_repository_asks_only_for_the_tags_its_listing_holds(mirror: Mirror) -> None:
    # Given three releases on the Docker Hub side, the newest signed (its `.sig` tag is in the tag list)
    digests = mirror.seed_tags("released", ["1.0.0", "1.1.0", "1.2.0"], release=lambda t: t)
    Signer().sign(hub_repo(mirror, "released"), digests["1.2.0"])

    # When a tag set selects them
    report = mirror.invoke({"images": [{"source": mirror.image("released"), "tags": {"semver": ">=1"}}]})

    # Then the signature tag is no image, the signed release lists it, and no absent tag was asked for
    by_tag = {r["source"].rsplit(":", 1)[1]: r for r in report["images"]}
    assert set(by_tag) == {"1.0.0", "1.1.0", "1.2.0"}
    assert [a["tag"] for a in by_tag["1.2.0"]["artifacts"]] == [sig_tag(digests["1.2.0"])]
    assert "artifacts" not in by_tag["1.0.0"]
    asked = [p for m, p in mirror.hub_requests() if "/manifests/sha256-" in p]
    assert asked
    assert all(p.endswith(sig_tag(digests["1.2.0"])) for p in asked)


def test_a_build_caller_cannot_write_the_artifact_tags_of_another_image(mirror: Mirror, tmp_path: Path) -> None:
    # Given two images mirrored in one repository, and a caller who hands the build an entry for the first whose
    # "signature" names the second as its subject, and a referrer whose own subject is another image
    first = mirror.seed_plain("pair", "the first", tag="1")
    second = mirror.seed_plain("pair", "the second", tag="2")
    repo = Repo(mirror.registries.plain.url, mirror.image("pair"), {})
    signature = Signer().sign(repo, first.digest)
    index = repo.get(f"manifests/{second.digest}").content
    elsewhere = attestation(repo, second.digest, OCI_INDEX, len(index), "https://slsa.dev/provenance/v1")
    stray = repo.put_manifest(sha(elsewhere), elsewhere)
    report = mirror.invoke({"images": [f"quay.io/{mirror.image('pair')}:1", f"quay.io/{mirror.image('pair')}:2"]})
    (entries,) = mirror.mirror_images()
    hostile = {
        **entries[0],
        "artifacts": [
            {"kind": "signature", "digest": signature, "subject": second.digest, "tag": sig_tag(second.digest)},
            {"kind": "attestation", "digest": stray, "subject": first.digest},
        ],
    }

    # When the build copies them
    run = copy_entries(mirror, [entries[1], hostile], tmp_path)

    # Then both images are copied and neither artifact is written where the caller wanted it
    target = report["images"][0]["target"].split("/", 1)[1].rsplit(":", 1)[0]
    warnings = run.lines("WARNING")
    assert len(warnings) == 2, run.output
    assert f"it refers to {second.digest}, neither the image nor one of its platforms" in warnings[0]
    assert f"it does not refer to {first.digest}" in warnings[1]
    assert ecr_digest(mirror, target, sig_tag(second.digest)) is None
    assert referrers_of(ecr_repo(mirror, target), first.digest) == []


def test_a_fallback_index_the_build_cannot_read_is_left_as_it_is(
    site: Mirror, quay: RegistryFront, tmp_path: Path
) -> None:
    # Given a quay.io image with an attestation (a referrer), and a mirror whose fallback index for the image
    # already lists an earlier referrer, but answers 503 when the build reads it
    layout = site.seed_plain("kept", "a referrer index to keep", tag="1")
    repo = Repo(site.registries.plain.url, site.image("kept"), {})
    index = repo.get(f"manifests/{layout.digest}").content
    statement = attestation(repo, layout.digest, OCI_INDEX, len(index), "https://slsa.dev/provenance/v1")
    provenance = quay.add_referrer(site.image("kept"), statement)
    site.invoke({"images": [f"quay.io/{site.image('kept')}:1"]})
    ((entry,),) = site.mirror_images()
    target = entry["target"].split("/", 1)[1].rsplit(":", 1)[0]
    earlier = site.seed_ecr(target, "an earlier referrer", kind="oci-manifest", tag="earlier")
    size = len((earlier.path / "blobs" / "sha256" / earlier.digest.split(":", 1)[1]).read_bytes())
    listed = {"mediaType": earlier.media_type, "digest": earlier.digest, "size": size, "artifactType": IN_TOTO}
    kept = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [listed]}).encode()
    held = ecr_repo(site, target).put_manifest(layout.digest.replace(":", "-"), kept, OCI_INDEX)
    front = HubProxy(site.registries.ecr)  # ECR as the build reaches it, with a fault on that one read
    front.faults[f"/manifests/{layout.digest.replace(':', '-')}"] = answer(503)
    try:
        auth = auth_file(tmp_path / "auth.json", {front.location: (ECR_USER, ECR_PASSWORD)})
        entry["target"] = entry["target"].replace(site.registries.ecr.location, front.location, 1)
        run = run_build_phase(
            [entry],
            auth,
            cwd=tmp_path,
            ecr_registry=front.location,
            registry_endpoints=site.env["REGISTRY_ENDPOINTS"],
        )
    finally:
        front.close()

    # Then the image and the attestation are copied, the index is not overwritten, and the build says so
    assert run.returncode == 0, run.output
    assert len(run.lines("COPIED")) == 1, run.output
    (warning,) = run.lines("WARNING")
    assert f"attestation {provenance} not copied:" in warning
    assert "answered HTTP 503: it is left as it is" in warning
    assert ecr_digest(site, target, provenance) == provenance
    assert ecr_digest(site, target, layout.digest.replace(":", "-")) == held

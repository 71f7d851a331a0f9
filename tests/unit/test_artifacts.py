"""The signatures, attestations and SBOMs that refer to an image: their kinds read from what the registry lists, and
the search for them (cosign's tags, the referrers API, the OCI fallback tag) on a fake registry that counts what it
is asked."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from mirror.artifacts import (
    PLATFORMS_MAX,
    REFERRERS,
    Artifact,
    Found,
    Repository,
    cosign_tags,
    discover,
    parse_referrers,
    platform_digests,
    referrer_kind,
    unmirrored,
)
from mirror.registry import (
    BadResponseError,
    DeadlineError,
    ManifestHead,
    NotFoundError,
    RegistryClient,
    RegistryError,
    UpstreamError,
)
from mirror.trust import ARTIFACTS_MAX, REFERRERS_PULLS, digest_tag


def sha(c: str) -> str:
    return "sha256:" + c * 64


IMAGE = sha("a")
SIG = sha("b")
ATT = sha("c")
LISTING = sha("d")  # an index of referrers under the fallback tag
P1 = sha("1")
P2 = sha("2")
ATTESTATION_MANIFEST = sha("3")
NOTARY = sha("4")
SBOM = sha("5")
OTHER = sha("6")

SOURCE = Repository("ghcr.io", "org/app")
TARGET = Repository("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "mirror/ghcr.io/org/app")

BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


# --- the kinds of what refers to an image ---


@pytest.mark.parametrize(
    ("artifact_type", "annotations", "kind"),
    [
        (BUNDLE, {"dev.sigstore.bundle.content": "dsse-envelope"}, "attestation"),  # cosign v3 attest
        (BUNDLE, {"dev.sigstore.bundle.content": "message-signature"}, "signature"),  # cosign v3 sign
        (BUNDLE, {}, "signature"),
        (BUNDLE, {"dev.sigstore.bundle.predicateType": "https://slsa.dev/provenance/v1"}, "attestation"),
        ("application/vnd.in-toto+json", {}, "attestation"),
        ("application/spdx+json", {}, "sbom"),
        ("application/vnd.cyclonedx+json", {}, "sbom"),
        ("application/vnd.cncf.notary.signature", {}, "signature"),
        ("APPLICATION/VND.CNCF.NOTARY.SIGNATURE", {}, "signature"),  # media types are case-insensitive
        ("application/vnd.example.thing+json", {}, "referrer"),
        ("", {}, "referrer"),  # a referrer without an artifactType
    ],
)
def test_a_referrers_kind_is_read_from_its_artifact_type(
    artifact_type: str, annotations: dict[str, Any], kind: str
) -> None:
    assert referrer_kind(artifact_type, annotations) == kind


def index_of(*manifests: object) -> bytes:
    return json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": list(manifests)}
    ).encode()


def descriptor(digest: str, artifact_type: str | None = None, **annotations: str) -> dict[str, Any]:
    d: dict[str, Any] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 100}
    if artifact_type is not None:
        d["artifactType"] = artifact_type
    if annotations:
        d["annotations"] = annotations
    return d


def test_a_referrers_index_lists_each_referrer_with_its_kind_and_subject_and_no_tag() -> None:
    body = index_of(
        descriptor(NOTARY, "application/vnd.cncf.notary.signature"),
        descriptor(ATT, BUNDLE, **{"dev.sigstore.bundle.content": "dsse-envelope"}),
        descriptor(SBOM, "application/spdx+json"),
        descriptor(OTHER),
    )

    found = parse_referrers(body, IMAGE, "ghcr.io/org/app referrers")

    assert found == [
        Artifact("signature", NOTARY, IMAGE),
        Artifact("attestation", ATT, IMAGE),
        Artifact("sbom", SBOM, IMAGE),
        Artifact("referrer", OTHER, IMAGE),
    ]
    assert all(a.tag is None and not a.mirrored for a in found)


def test_an_empty_referrers_index_lists_nothing() -> None:
    assert parse_referrers(index_of(), IMAGE, "x") == []


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>not found</html>", "is not JSON"),
        (b"[" * 100_000, "is not JSON"),  # nested past the parser's recursion limit
        (b"[]", "is not an index"),
        (b'{"schemaVersion": 2}', "is not an index"),
        (b'{"manifests": {"digest": "sha256:x"}}', "is not an index"),
        (json.dumps({"manifests": [{"size": 1}]}).encode(), "not a descriptor"),
        (json.dumps({"manifests": [{"digest": "sha256:abc"}]}).encode(), "not a descriptor"),
        (json.dumps({"manifests": [{"digest": 7}]}).encode(), "not a descriptor"),
        (json.dumps({"manifests": [SIG]}).encode(), "not a descriptor"),
        (json.dumps({"manifests": [descriptor(SIG), {"digest": "md5:00"}]}).encode(), "not a descriptor"),
    ],
)
def test_a_referrers_answer_that_is_not_an_index_of_descriptors_is_a_bad_response(body: bytes, why: str) -> None:
    with pytest.raises(BadResponseError, match=why) as raised:
        parse_referrers(body, IMAGE, "ghcr.io/org/app referrers")
    assert "ghcr.io/org/app referrers" in str(raised.value)


def test_an_index_platforms_are_its_manifests_without_dockers_attestation_manifests() -> None:
    body = index_of(
        descriptor(P1),
        descriptor(ATTESTATION_MANIFEST, **{"vnd.docker.reference.type": "attestation-manifest"}),
        descriptor(P2, **{"org.opencontainers.image.title": "arm64"}),
        {"digest": "not a digest"},
        "junk",
    )
    assert platform_digests(body) == [P1, P2]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"manifests": 3}', b"{}"])
def test_what_is_not_an_index_has_no_platforms(body: bytes) -> None:
    assert platform_digests(body) == []


def test_cosign_keeps_a_signature_an_attestation_and_an_sbom_under_tags_derived_from_the_digest() -> None:
    stem = "sha256-" + "a" * 64
    assert digest_tag(IMAGE) == stem
    assert cosign_tags(IMAGE) == [
        ("signature", f"{stem}.sig"),
        ("attestation", f"{stem}.att"),
        ("sbom", f"{stem}.sbom"),
    ]


def test_an_index_of_referrers_costs_the_index_and_its_referrers_and_any_other_artifact_one_pull() -> None:
    assert Artifact(REFERRERS, LISTING, IMAGE, digest_tag(IMAGE)).pulls == REFERRERS_PULLS == 3
    assert Artifact("signature", SIG, IMAGE, f"{digest_tag(IMAGE)}.sig").pulls == 1
    assert Artifact("sbom", SBOM, IMAGE).pulls == 1


def test_only_the_artifacts_the_mirror_does_not_hold_are_new() -> None:
    held = Artifact("signature", SIG, IMAGE, "t", mirrored=True)
    new = Artifact("attestation", ATT, IMAGE, "u")
    assert unmirrored(Found((held, new)).artifacts) == (new,)


# --- the search, on a fake registry ---


class FakeRegistry:
    """A registry client answering from a table: `tags` maps (host, reference) to what a HEAD answers, `listings`
    maps a digest to the referrers API's answer (absent: the registry has no such API), `failures` maps (host,
    reference) or ("referrers", digest) to the error raised. Every request is recorded."""

    def __init__(self) -> None:
        self.tags: dict[tuple[str, str], ManifestHead] = {}
        self.listings: dict[str, bytes] = {}
        self.failures: dict[tuple[str, str], RegistryError] = {}
        self.heads: list[tuple[str, str, str]] = []
        self.referrer_calls: list[tuple[str, str, str]] = []
        #: (host, reference) -> a manifest's body, for GETs (the mirror's fallback index)
        self.bodies: dict[tuple[str, str], bytes] = {}

    def manifest(self, host: str, repository: str, reference: str) -> bytes:
        self.heads.append((host, repository, f"GET {reference}"))
        body = self.bodies.get((host, reference))
        if body is None:
            raise NotFoundError(f"{host}/{repository}:{reference}")
        return body

    def manifest_head(self, host: str, repository: str, reference: str) -> ManifestHead:
        self.heads.append((host, repository, reference))
        failure = self.failures.get((host, reference))
        if failure is not None:
            raise failure
        head = self.tags.get((host, reference))
        if head is None:
            raise NotFoundError(f"{host}/{repository}:{reference}")
        return head

    def referrers(self, host: str, repository: str, digest: str) -> bytes | None:
        self.referrer_calls.append((host, repository, digest))
        failure = self.failures.get(("referrers", digest))
        if failure is not None:
            raise failure
        return self.listings.get(digest)

    def source(self, reference: str, digest: str, index: bool | None = False) -> None:
        self.tags[(SOURCE.host, reference)] = ManifestHead(digest, index)

    def mirror(self, reference: str, digest: str) -> None:
        self.tags[(TARGET.host, reference)] = ManifestHead(digest, False)

    def asked(self, host: str) -> list[str]:
        return [reference for h, _, reference in self.heads if h == host]


class Index:
    """`read_index`: the index's body, counting the reads."""

    def __init__(self, body: bytes | None) -> None:
        self.body = body
        self.reads = 0

    def __call__(self) -> bytes | None:
        self.reads += 1
        return self.body


def search(
    registry: FakeRegistry,
    *,
    index: bool | None = False,
    held: bool = True,
    read_index: Index | None = None,
    digest: str = IMAGE,
    listed: frozenset[str] | None = None,
) -> Found:
    return discover(
        cast(RegistryClient, registry),
        SOURCE,
        digest,
        index=index,
        target=TARGET,
        held=held,
        read_index=read_index or Index(None),
        listed=listed,
    )


def sig_tag(digest: str = IMAGE) -> str:
    return f"{digest_tag(digest)}.sig"


def test_an_image_nothing_refers_to_has_no_artifacts_and_no_warnings() -> None:
    registry = FakeRegistry()

    found = search(registry)

    assert found == Found((), ())
    stem = digest_tag(IMAGE)
    assert registry.asked(SOURCE.host) == [f"{stem}.sig", f"{stem}.att", f"{stem}.sbom", stem]
    assert registry.asked(TARGET.host) == []  # nothing to compare with the mirror


@pytest.mark.parametrize(
    ("in_mirror", "mirrored"),
    [
        (SIG, True),  # the mirror's tag holds the very signature
        (OTHER, False),  # an older signature: the upstream one moved
        (None, False),  # not in the mirror yet
    ],
)
def test_a_cosign_signature_is_mirrored_only_when_the_mirrors_tag_holds_its_digest(
    in_mirror: str | None, mirrored: bool
) -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)
    if in_mirror is not None:
        registry.mirror(sig_tag(), in_mirror)

    found = search(registry)

    assert found.artifacts == (Artifact("signature", SIG, IMAGE, sig_tag(), mirrored=mirrored),)
    assert found.warnings == ()
    assert registry.asked(TARGET.host) == [sig_tag()]
    assert unmirrored(found.artifacts) == (() if mirrored else found.artifacts)


def test_an_image_the_mirror_does_not_hold_never_has_its_artifacts_looked_for_in_the_mirror() -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)
    registry.mirror(sig_tag(), SIG)  # even were it there

    found = search(registry, held=False)

    assert found.artifacts == (Artifact("signature", SIG, IMAGE, sig_tag(), mirrored=False),)
    assert registry.asked(TARGET.host) == []


def test_an_index_of_referrers_under_the_fallback_tag_is_found_where_there_is_no_referrers_api() -> None:
    registry = FakeRegistry()
    registry.source(digest_tag(IMAGE), LISTING, index=True)

    found = search(registry)

    (listing,) = found.artifacts
    assert listing == Artifact(REFERRERS, LISTING, IMAGE, digest_tag(IMAGE))
    assert listing.pulls == REFERRERS_PULLS
    assert registry.asked(TARGET.host) == [digest_tag(IMAGE)]  # compared under its tag
    assert len(registry.referrer_calls) == 1


@pytest.mark.parametrize("index", [True, None])
def test_a_fallback_tag_that_resolves_to_the_image_itself_is_no_index_of_referrers(index: bool | None) -> None:
    # GitLab (oras-project/oras#2148) answers a HEAD of the tag sha256-<hex> with the manifest of that digest.
    registry = FakeRegistry()
    registry.source(digest_tag(IMAGE), IMAGE, index=index)

    assert search(registry, index=index) == Found((), ())


def test_a_fallback_tag_holding_an_image_manifest_is_no_index_of_referrers() -> None:
    registry = FakeRegistry()
    registry.source(digest_tag(IMAGE), OTHER, index=False)

    assert search(registry) == Found((), ())


def test_a_fallback_tag_of_unknown_type_is_taken_for_an_index_of_referrers() -> None:
    registry = FakeRegistry()
    registry.source(digest_tag(IMAGE), LISTING, index=None)

    assert search(registry).artifacts == (Artifact(REFERRERS, LISTING, IMAGE, digest_tag(IMAGE)),)


def test_where_the_referrers_api_answers_the_fallback_tag_is_not_asked() -> None:
    registry = FakeRegistry()
    registry.listings[IMAGE] = index_of(descriptor(NOTARY, "application/vnd.cncf.notary.signature"))
    registry.source(digest_tag(IMAGE), LISTING, index=True)  # a stale fallback index: not believed over the API
    registry.mirror(NOTARY, NOTARY)

    found = search(registry)

    assert found.artifacts == (Artifact("signature", NOTARY, IMAGE, None, mirrored=True),)
    assert digest_tag(IMAGE) not in registry.asked(SOURCE.host)
    # a referrer without a tag is mirrored when the mirror lists it for its subject (here, by its referrers API)
    assert registry.referrer_calls == [(SOURCE.host, SOURCE.repository, IMAGE), (TARGET.host, TARGET.repository, IMAGE)]
    assert registry.asked(TARGET.host) == []


def test_an_unsigned_index_costs_three_cosign_heads_one_listing_and_one_fallback_head() -> None:
    registry = FakeRegistry()
    body = Index(index_of(descriptor(P1), descriptor(P2)))

    found = search(registry, index=True, read_index=body)

    assert found == Found((), ())
    assert len(registry.asked(SOURCE.host)) == 4  # .sig, .att, .sbom and the fallback tag
    assert registry.referrer_calls == [(SOURCE.host, SOURCE.repository, IMAGE)]
    assert body.reads == 0  # its platforms are not looked at
    assert registry.asked(TARGET.host) == []


def test_a_signed_index_has_the_artifacts_of_its_platforms_looked_for_too_but_not_of_its_attestations() -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)
    registry.source(f"{digest_tag(P1)}.att", ATT)
    body = Index(
        index_of(
            descriptor(P1),
            descriptor(P2),
            descriptor(ATTESTATION_MANIFEST, **{"vnd.docker.reference.type": "attestation-manifest"}),
        )
    )

    found = search(registry, index=True, read_index=body)

    assert found.artifacts == (
        Artifact("signature", SIG, IMAGE, sig_tag()),
        Artifact("attestation", ATT, P1, f"{digest_tag(P1)}.att"),
    )
    assert body.reads == 1
    assert [c[2] for c in registry.referrer_calls] == [IMAGE, P1, P2]
    assert len(registry.asked(SOURCE.host)) == 3 * 4
    assert not any(digest_tag(ATTESTATION_MANIFEST) in r for r in registry.asked(SOURCE.host))


def test_a_signed_image_that_is_not_an_index_has_no_platforms_to_read() -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)
    body = Index(index_of(descriptor(P1)))

    found = search(registry, index=False, read_index=body)

    assert [a.digest for a in found.artifacts] == [SIG]
    assert body.reads == 0


def test_a_signed_image_of_unknown_type_has_its_index_read_where_that_is_free() -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)
    registry.source(f"{digest_tag(P1)}.sig", OTHER)
    body = Index(index_of(descriptor(P1)))

    found = search(registry, index=None, read_index=body)

    assert body.reads == 1
    assert [(a.digest, a.subject) for a in found.artifacts] == [(SIG, IMAGE), (OTHER, P1)]


def test_a_signed_index_that_cannot_be_read_free_has_only_its_own_artifacts() -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)

    found = search(registry, index=True, read_index=Index(None))  # Docker Hub, not in the mirror: a GET is a pull

    assert [a.digest for a in found.artifacts] == [SIG]
    assert [c[2] for c in registry.referrer_calls] == [IMAGE]


def test_only_the_first_platforms_of_a_signed_index_are_searched_and_the_rest_is_a_warning() -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)
    platforms = [f"sha256:{n:064x}" for n in range(1, PLATFORMS_MAX + 5)]
    body = Index(index_of(*(descriptor(p) for p in platforms)))

    found = search(registry, index=True, read_index=body)

    assert [c[2] for c in registry.referrer_calls] == [IMAGE, *platforms[:PLATFORMS_MAX]]
    assert found.warnings == (f"artifacts of only the first {PLATFORMS_MAX} of {len(platforms)} platforms looked for",)


def test_a_referrers_listing_that_fails_is_a_warning_and_the_fallback_tag_is_asked_instead() -> None:
    registry = FakeRegistry()
    registry.failures[("referrers", IMAGE)] = UpstreamError("ghcr.io/org/app: HTTP 503")
    registry.source(sig_tag(), SIG)
    registry.source(digest_tag(IMAGE), LISTING, index=True)

    found = search(registry, held=False)

    assert [a.kind for a in found.artifacts] == ["signature", REFERRERS]
    (warning,) = found.warnings
    assert warning.startswith(f"referrers of {IMAGE} not read: upstream error")
    assert "HTTP 503" in warning


def test_a_cosign_tag_that_cannot_be_read_is_a_warning_and_the_others_are_still_found() -> None:
    registry = FakeRegistry()
    registry.failures[(SOURCE.host, sig_tag())] = UpstreamError("HTTP 500")
    registry.source(f"{digest_tag(IMAGE)}.att", ATT)

    found = search(registry, held=False)

    assert found.artifacts == (Artifact("attestation", ATT, IMAGE, f"{digest_tag(IMAGE)}.att"),)
    assert found.warnings == (f"{sig_tag()} not read: upstream error: HTTP 500",)


def test_a_mirror_that_cannot_be_asked_leaves_the_artifact_to_copy_with_a_warning() -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)
    registry.failures[(TARGET.host, sig_tag())] = UpstreamError("HTTP 500")

    found = search(registry)

    assert unmirrored(found.artifacts) == (Artifact("signature", SIG, IMAGE, sig_tag()),)
    assert found.warnings == (f"{sig_tag()} not read: upstream error: HTTP 500",)


def test_a_malformed_referrers_answer_is_a_warning_and_the_fallback_tag_is_read_instead() -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)
    registry.source(digest_tag(IMAGE), LISTING, index=True)
    registry.listings[IMAGE] = b"<html>"

    found = search(registry, held=False)

    assert [(a.kind, a.digest) for a in found.artifacts] == [("signature", SIG), (REFERRERS, LISTING)]
    (warning,) = found.warnings
    assert warning.startswith(f"referrers of {IMAGE} not read: bad response:")
    assert "is not JSON" in warning


def test_a_malformed_referrers_answer_for_a_platform_loses_none_of_the_others() -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)
    registry.source(f"{digest_tag(P2)}.sig", OTHER)
    registry.listings[P1] = b"[]"

    found = search(registry, index=True, read_index=Index(index_of(descriptor(P1), descriptor(P2))), held=False)

    assert [(a.digest, a.subject) for a in found.artifacts] == [(SIG, IMAGE), (OTHER, P2)]
    (warning,) = found.warnings
    assert warning.startswith(f"referrers of {P1} not read: bad response:")


def test_a_referrer_the_mirror_holds_but_does_not_list_is_copied_again() -> None:
    # Given a referrer upstream that the mirror's fallback index (it has no referrers API) does not list
    registry = FakeRegistry()
    registry.listings[IMAGE] = index_of(descriptor(NOTARY, "application/vnd.cncf.notary.signature"))
    listed = index_of(descriptor(OTHER, "application/spdx+json"))

    def referrers(host: str, repository: str, digest: str) -> bytes | None:
        registry.referrer_calls.append((host, repository, digest))
        return registry.listings.get(digest) if host == SOURCE.host else None

    registry.referrers = referrers  # type: ignore[method-assign]
    registry.bodies[(TARGET.host, digest_tag(IMAGE))] = listed

    found = search(registry)

    # Then it is not mirrored (a client would not find it), and the mirror's index was read once
    assert [(a.digest, a.mirrored) for a in found.artifacts] == [(NOTARY, False)]
    assert registry.asked(TARGET.host) == [f"GET {digest_tag(IMAGE)}"]


def test_past_the_most_artifacts_one_image_may_bring_the_rest_are_a_warning() -> None:
    registry = FakeRegistry()
    listed = [f"sha256:{n:064x}" for n in range(1, ARTIFACTS_MAX + 11)]
    registry.listings[IMAGE] = index_of(*(descriptor(d, "application/spdx+json") for d in listed))

    found = search(registry, held=False)

    assert [a.digest for a in found.artifacts] == listed[:ARTIFACTS_MAX]
    assert found.warnings == (
        f"{len(listed)} artifacts refer to the image: only the first {ARTIFACTS_MAX} are mirrored",
    )


def test_an_artifact_listed_twice_is_found_once() -> None:
    registry = FakeRegistry()
    listed = descriptor(SBOM, "application/spdx+json")
    registry.listings[IMAGE] = index_of(listed, listed)

    found = search(registry, held=False)

    assert found.artifacts == (Artifact("sbom", SBOM, IMAGE),)


def test_the_deadline_met_asking_a_tag_passes_up() -> None:
    registry = FakeRegistry()
    registry.failures[(SOURCE.host, f"{digest_tag(IMAGE)}.att")] = DeadlineError("no time left")

    with pytest.raises(DeadlineError):
        search(registry)


def test_the_deadline_met_asking_the_mirror_passes_up() -> None:
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)
    registry.failures[(TARGET.host, sig_tag())] = DeadlineError("no time left")

    with pytest.raises(DeadlineError):
        search(registry)


def test_the_deadline_met_listing_referrers_passes_up() -> None:
    registry = FakeRegistry()
    registry.failures[("referrers", IMAGE)] = DeadlineError("no time left")

    with pytest.raises(DeadlineError):
        search(registry)


def test_a_tag_a_tag_sets_listing_lacks_is_not_asked_for() -> None:
    # Given the source repository's tags, as a tag set listed them: a signature, no attestation, no SBOM
    registry = FakeRegistry()
    registry.source(sig_tag(), SIG)

    found = search(registry, listed=frozenset({"1.2.3", sig_tag()}), held=False)

    # Then only the listed tag is asked for, and it is found
    assert found.artifacts == (Artifact("signature", SIG, IMAGE, sig_tag()),)
    assert registry.asked(SOURCE.host) == [sig_tag()]
    assert registry.referrer_calls == [(SOURCE.host, SOURCE.repository, IMAGE)]


def test_an_unsigned_image_of_a_listed_repository_costs_only_the_referrers_listing() -> None:
    registry = FakeRegistry()

    found = search(registry, listed=frozenset({"1.2.3", "latest"}))

    assert found == Found((), ())
    assert registry.asked(SOURCE.host) == []

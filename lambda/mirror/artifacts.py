"""The signatures, attestations and SBOMs that refer to an image, found for free: cosign's tags (`sha256-<hex>.sig`,
`.att`, `.sbom`) by HEAD, OCI 1.1 referrers through the referrers API (else the fallback tag `sha256-<hex>` that
holds an index of them), each compared with what the mirror holds. The mirror keeps every digest, so an upstream
signature copied byte for byte still verifies there: cosign checks only the digest its payload names."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from .references import is_digest
from .registry import (
    BadResponseError,
    DeadlineError,
    ManifestHead,
    NotFoundError,
    RegistryClient,
    RegistryError,
)
from .trust import ARTIFACTS_MAX, COSIGN_SUFFIXES, REFERRERS_PULLS, digest_tag, is_attestation

#: the kind of an index under the OCI fallback tag (distribution-spec v1.1, "Referrers Tag Schema"): copied whole,
#: with the referrers it lists
REFERRERS = "referrers"
#: the most platform manifests of a signed index whose own artifacts are looked for
PLATFORMS_MAX = 16


@dataclass(frozen=True)
class Artifact:
    """A manifest that refers to an image: its kind, digest, the digest it refers to (`subject`: the image's, or one
    of its platform manifests'), its tag where it has one (cosign's, or the fallback tag; None for a referrer listed
    by the API), and whether the mirror holds it already."""

    kind: str
    digest: str
    subject: str
    tag: str | None = None
    mirrored: bool = False

    @property
    def pulls(self) -> int:
        """What copying it costs on a registry that counts pulls: one per manifest fetched."""
        return REFERRERS_PULLS if self.kind == REFERRERS else 1

    def record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tag": self.tag,
            "digest": self.digest,
            "subject": self.subject,
            "mirrored": self.mirrored,
        }


@dataclass(frozen=True)
class Found:
    """What the search for one image's artifacts found, and what it could not look at (warnings, never failures)."""

    artifacts: tuple[Artifact, ...] = ()
    warnings: tuple[str, ...] = ()


def unmirrored(artifacts: Iterable[Artifact]) -> tuple[Artifact, ...]:
    """Those the mirror does not hold yet: what a copy carries."""
    return tuple(a for a in artifacts if not a.mirrored)


def cosign_tags(digest: str) -> list[tuple[str, str]]:
    """(kind, tag) of each tag cosign may keep for `digest`."""
    return [(kind, f"{digest_tag(digest)}.{suffix}") for suffix, kind in COSIGN_SUFFIXES]


def referrer_kind(artifact_type: str, annotations: dict[str, Any]) -> str:
    """What a referrer is, from its `artifactType` (and, for a Sigstore bundle, what the bundle holds: cosign v3
    writes `dev.sigstore.bundle.content`, a DSSE envelope for an attestation, a message signature otherwise)."""
    kind = artifact_type.lower()
    if kind.startswith("application/vnd.dev.sigstore.bundle"):
        content = str(annotations.get("dev.sigstore.bundle.content", ""))
        attested = content == "dsse-envelope" or "dev.sigstore.bundle.predicateType" in annotations
        return "attestation" if attested else "signature"
    if "in-toto" in kind or "dsse" in kind or kind.endswith(".att.v1+json"):
        return "attestation"
    if "spdx" in kind or "cyclonedx" in kind or "syft" in kind or "sbom" in kind:
        return "sbom"
    if "signature" in kind or kind.endswith(".sig.v1+json"):  # notation's application/vnd.cncf.notary.signature
        return "signature"
    return "referrer"


def parse_referrers(body: bytes, subject: str, what: str) -> list[Artifact]:
    """The artifacts an index of referrers lists (the referrers API's answer): strict, a JSON object whose
    `manifests` is a list of descriptors with a digest; anything else is BadResponseError."""
    try:
        index = json.loads(body)
    except (ValueError, RecursionError):
        raise BadResponseError(f"{what}: the referrers answer is not JSON") from None
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        raise BadResponseError(f"{what}: the referrers answer is not an index")
    found = []
    for m in manifests:
        if not isinstance(m, dict) or not isinstance(m.get("digest"), str) or not is_digest(m["digest"]):
            raise BadResponseError(f"{what}: the referrers answer lists something that is not a descriptor")
        annotations, artifact_type = m.get("annotations"), m.get("artifactType")
        kind = referrer_kind(
            artifact_type if isinstance(artifact_type, str) else "",
            annotations if isinstance(annotations, dict) else {},
        )
        found.append(Artifact(kind, m["digest"], subject))
    return found


def platform_digests(body: bytes) -> list[str]:
    """The platform manifests an index lists, without Docker's attestation manifests (which refer to a platform
    and are copied with the index anyway)."""
    try:
        index = json.loads(body)
    except (ValueError, RecursionError):
        return []
    manifests = index.get("manifests") if isinstance(index, dict) else None
    digests = []
    for m in manifests if isinstance(manifests, list) else []:
        if not isinstance(m, dict) or not isinstance(m.get("digest"), str) or not is_digest(m["digest"]):
            continue
        if not is_attestation(m):
            digests.append(m["digest"])
    return digests


@dataclass(frozen=True)
class Repository:
    """A repository on a registry."""

    host: str
    repository: str


def discover(
    client: RegistryClient,
    source: Repository,
    digest: str,
    *,
    index: bool | None,
    target: Repository,
    held: bool,
    read_index: Callable[[], bytes | None],
    listed: frozenset[str] | None = None,
) -> Found:
    """The artifacts that refer to `digest` at `source`, and to each platform manifest of it when it is an index
    that has artifacts of its own (cosign signs an index and, with `--recursive`, each platform), compared with
    `target` when it holds the image (`held`). `read_index` reads the index where that is free (the mirror's copy,
    or a source that counts no pulls), or gives None. Only HEADs and listings reach the source: no pull.
    `listed`: the source repository's tags where a tag set listed them already; a tag not among them is not asked
    for (most images are unsigned: their search then costs no request for a tag). A failure to look is a warning;
    the deadline passes up (DeadlineError)."""
    warnings: list[str] = []

    def tagged(tag: str) -> ManifestHead | None:
        return None if listed is not None and tag not in listed else _head(client, source, tag, warnings)

    def of(subject: str) -> list[Artifact]:
        found: list[Artifact] = []
        for kind, tag in cosign_tags(subject):
            head = tagged(tag)
            if head is not None:
                found.append(Artifact(kind, head.digest, subject, tag))
        referrers = _referrers(client, source, subject, warnings)
        if referrers is not None:
            return found + [Artifact(kind, d, subject) for kind, d in referrers]
        fallback = tagged(digest_tag(subject))
        # A registry may resolve the tag `sha256-<hex>` as the digest itself (oras-project/oras#2148): only an index
        # that is not the image is an index of referrers.
        if fallback is not None and fallback.digest != subject and fallback.index is not False:
            found.append(Artifact(REFERRERS, fallback.digest, subject, digest_tag(subject)))
        return found

    artifacts = of(digest)
    if artifacts and index is not False:
        body = read_index()
        platforms = platform_digests(body) if body is not None else []
        if len(platforms) > PLATFORMS_MAX:
            warnings.append(f"artifacts of only the first {PLATFORMS_MAX} of {len(platforms)} platforms looked for")
        for platform in platforms[:PLATFORMS_MAX]:
            artifacts += of(platform)
    artifacts = list({(a.digest, a.tag): a for a in reversed(artifacts)}.values())[::-1]  # each once, as first found
    if len(artifacts) > ARTIFACTS_MAX:
        warnings.append(f"{len(artifacts)} artifacts refer to the image: only the first {ARTIFACTS_MAX} are mirrored")
        artifacts = artifacts[:ARTIFACTS_MAX]
    if held:
        in_mirror: dict[str, set[str]] = {}  # subject -> the referrers the mirror lists for it

        def mirrored(a: Artifact) -> bool:
            if a.tag is not None:  # under its tag, with its digest
                head = _head(client, target, a.tag, warnings)
                return head is not None and head.digest == a.digest
            if a.subject not in in_mirror:  # listed for its subject (so that a client finds it), not only held
                listing = _referrers(client, target, a.subject, warnings)
                if listing is None:
                    listing = _fallback_index(client, target, a.subject, warnings)
                in_mirror[a.subject] = {d for _, d in listing}
            return a.digest in in_mirror[a.subject]

        artifacts = [replace(a, mirrored=mirrored(a)) for a in artifacts]
    return Found(tuple(artifacts), tuple(warnings))


def _head(client: RegistryClient, place: Repository, reference: str, warnings: list[str]) -> ManifestHead | None:
    try:
        return client.manifest_head(place.host, place.repository, reference)
    except DeadlineError:
        raise
    except NotFoundError:
        return None
    except RegistryError as e:
        warnings.append(f"{reference} not read: {e}")
        return None


def _referrers(
    client: RegistryClient, place: Repository, subject: str, warnings: list[str]
) -> list[tuple[str, str]] | None:
    """(kind, digest) of each referrer of `subject` the referrers API lists, or None where there is no API, or its
    answer could not be read or believed (a warning; the fallback tag is read instead)."""
    what = f"{place.host}/{place.repository}@{subject} referrers"
    try:
        body = client.referrers(place.host, place.repository, subject)
        return None if body is None else [(a.kind, a.digest) for a in parse_referrers(body, subject, what)]
    except DeadlineError:
        raise
    except RegistryError as e:
        warnings.append(f"referrers of {subject} not read: {e}")
        return None


def _fallback_index(
    client: RegistryClient, place: Repository, subject: str, warnings: list[str]
) -> list[tuple[str, str]]:
    """(kind, digest) of each referrer the index under the fallback tag lists; none where there is none."""
    tag = digest_tag(subject)
    try:
        body = client.manifest(place.host, place.repository, tag)
        return [(a.kind, a.digest) for a in parse_referrers(body, subject, f"{place.host}/{place.repository}:{tag}")]
    except DeadlineError:
        raise
    except NotFoundError:
        return []
    except RegistryError as e:
        warnings.append(f"{tag} not read: {e}")
        return []

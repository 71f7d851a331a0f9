"""The signatures, attestations and SBOMs that refer to an image, found for free: cosign's tags (`sha256-<hex>.sig`,
`.att`, `.sbom`) by HEAD, OCI 1.1 referrers through the referrers API (else the fallback tag `sha256-<hex>` that
holds an index of them), each compared with what the mirror holds. The mirror keeps every digest, so an upstream
signature copied byte for byte still verifies there: cosign checks only the digest its payload names."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
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

#: cosign's tag suffixes and what each holds (cosign specs/SIGNATURE_SPEC.md, "Tag-based Discovery")
COSIGN_SUFFIXES = (("sig", "signature"), ("att", "attestation"), ("sbom", "sbom"))
#: the kind of an index under the OCI fallback tag (distribution-spec v1.1, "Referrers Tag Schema"): copied whole,
#: with the referrers it lists
REFERRERS = "referrers"
#: the tags an artifact is kept under (cosign's, and the OCI fallback tag): never an image of a tag set
ARTIFACT_TAG_RE = re.compile(r"sha256-[a-f0-9]{64}(?:\.(?:sig|att|sbom))?")
#: the most artifacts one image may bring (a real one has a few); past it the rest are a warning
ARTIFACTS_MAX = 50
#: the most platform manifests of a signed index whose own artifacts are looked for
PLATFORMS_MAX = 16
#: what an index under the fallback tag is assumed to cost to copy from Docker Hub (its manifests are not read by
#: the check, which asks only HEADs there): the index and two referrers
REFERRERS_PULLS = 3
INDEX_TYPES = frozenset(
    {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
)


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

    @property
    def new(self) -> tuple[Artifact, ...]:
        return tuple(a for a in self.artifacts if not a.mirrored)


def digest_tag(digest: str) -> str:
    """The tag form of a digest (`sha256:<hex>` -> `sha256-<hex>`): the OCI fallback tag, and the stem of cosign's."""
    return digest.replace(":", "-", 1)


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
        annotations = m.get("annotations")
        if isinstance(annotations, dict) and annotations.get("vnd.docker.reference.type") == "attestation-manifest":
            continue
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
    referrers_api: bool = True,
    listed: frozenset[str] | None = None,
) -> Found:
    """The artifacts that refer to `digest` at `source`, and to each platform manifest of it when it is an index
    that has artifacts of its own (cosign signs an index and, with `--recursive`, each platform), compared with
    `target` when it holds the image (`held`). `read_index` reads the index where that is free (the mirror's copy,
    or a source that counts no pulls), or gives None. Only HEADs and listings reach the source: no pull. Without
    `referrers_api` (a registry known to have none) the referrers listing is not asked, only the fallback tag.
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
        listed = None
        try:
            if referrers_api:
                listed = client.referrers(source.host, source.repository, subject)
        except DeadlineError:
            raise
        except RegistryError as e:
            warnings.append(f"referrers of {subject} not read: {e}")
        if listed is not None:
            return found + parse_referrers(listed, subject, f"{source.host}/{source.repository}@{subject} referrers")
        fallback = tagged(digest_tag(subject))
        # A registry may resolve the tag `sha256-<hex>` as the digest itself (oras-project/oras#2148): only an index
        # that is not the image is an index of referrers.
        if fallback is not None and fallback.digest != subject and fallback.index is not False:
            found.append(Artifact(REFERRERS, fallback.digest, subject, digest_tag(subject)))
        return found

    try:
        artifacts = of(digest)
    except BadResponseError as e:
        return Found((), (f"artifacts not read: {e}",))
    if artifacts and index is not False:
        body = read_index()
        platforms = platform_digests(body) if body is not None else []
        if len(platforms) > PLATFORMS_MAX:
            warnings.append(f"artifacts of only the first {PLATFORMS_MAX} of {len(platforms)} platforms looked for")
        for platform in platforms[:PLATFORMS_MAX]:
            try:
                artifacts += of(platform)
            except BadResponseError as e:
                warnings.append(f"artifacts of {platform} not read: {e}")
    artifacts = list({(a.digest, a.tag): a for a in reversed(artifacts)}.values())[::-1]  # each once, as first found
    if len(artifacts) > ARTIFACTS_MAX:
        warnings.append(f"{len(artifacts)} artifacts refer to the image: only the first {ARTIFACTS_MAX} are mirrored")
        artifacts = artifacts[:ARTIFACTS_MAX]
    if held:
        artifacts = [replace(a, mirrored=_mirrored(client, target, a, warnings)) for a in artifacts]
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


def _mirrored(client: RegistryClient, target: Repository, artifact: Artifact, warnings: list[str]) -> bool:
    """Whether the mirror holds the artifact: under its tag with its digest, or (a referrer) by its digest."""
    head = _head(client, target, artifact.tag or artifact.digest, warnings)
    return head is not None and head.digest == artifact.digest


def records(artifacts: Sequence[Artifact]) -> list[dict[str, Any]]:
    return [a.record() for a in artifacts]

"""What a check learns of an entry that copies some platforms only (`platforms:` or PLATFORMS): whether the mirror's
own index of them is up to date, what its copy will cost, and, where it can be read free, whether the source has any
of them. The rules (matching, selection, the index the mirror writes) are mirror.trust's, shared with the build."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .references import DOCKER_HUB, is_digest
from .registry import NotFoundError, RegistryClient
from .trust import (
    Platform,
    PlatformError,
    config_platform,
    describe_platforms,
    empty_index,
    filtered_from,
    platform_list,
    select_platforms,
)

#: a filtered copy of an index is assumed to fetch, when its source cannot be read free, the index and, for each
#: platform, its manifest and Docker's attestation manifest (the official images carry one per platform)
PULLS_PER_PLATFORM = 2


@dataclass(frozen=True)
class Filtered:
    """The check of an entry with platforms. `up_to_date`: the mirror's index was made from this upstream digest
    with these platforms (or a single manifest of one of them is mirrored as it is). `mirrored_from`: the upstream
    digest the mirror's index records. `pulls`: what the copy is estimated to fetch. `single`: the source is one
    manifest, copied as it is once its platform is known to match (by the build, when the check could not read it
    free). `error`: why the entry cannot be copied (none of its platforms, or its manifests unreadable). `index`:
    the source is an index (whatever its HEAD said), and all of this is of its selection."""

    up_to_date: bool = False
    mirrored_from: str | None = None
    pulls: int | None = None
    single: bool = False
    error: str | None = None
    index: bool = False


class Recorded:
    """What each of the mirror's indexes records (`trust.filtered_from`), read from ECR once per repository and
    digest in a run: a tag set's aliases share one index."""

    def __init__(self, client: RegistryClient, ecr_host: str) -> None:
        self._client, self._host = client, ecr_host
        self._lock = threading.Lock()
        self._read: dict[tuple[str, str], tuple[str, str] | None] = {}

    def __call__(self, repository: str, digest: str) -> tuple[str, str] | None:
        """RegistryError passes up (the check's error); a read that failed is asked again by the next alias."""
        key = (repository, digest)
        with self._lock:
            if key in self._read:
                return self._read[key]
        found = filtered_from(_json(self._client.manifest(self._host, repository, digest)))
        with self._lock:
            self._read[key] = found
        return found


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def check_filtered(
    client: RegistryClient,
    source: tuple[str, str],
    digest: str,
    index: bool | None,
    target: tuple[str, str],
    target_digest: str | None,
    platforms: Sequence[Platform],
    *,
    recorded: Callable[[str, str], tuple[str, str] | None],
    held: bool = False,
) -> Filtered:
    """Whether the entry's copy in the mirror is up to date, asking nothing that counts a pull: the mirror's
    manifests (ECR), and the source's only where it counts none (any registry but Docker Hub). `index`: what the
    source's HEAD said (None: not said). `held`: the mirror holds `digest` (a single manifest, under another tag or
    none); `recorded` reads what one of the mirror's indexes records (a `Recorded`, shared by the run's checks).
    RegistryError passes up (the check's error)."""
    (host, repository), (ecr_host, target_repository) = source, target
    wanted = platform_list(platforms)
    shown = f"{host}/{repository}@{digest}"
    mirror = (ecr_host, target_repository)
    if index is False or (index is None and target_digest == digest):
        # One manifest, or the image mirrored as it is: which is it, read where it is free.
        where = mirror if held or target_digest == digest else source if host != DOCKER_HUB else None
        if where is None:
            return Filtered(pulls=1, single=True)
        document = _json(client.manifest(*where, digest))
        if isinstance(document, dict) and "manifests" not in document:
            return _single(client, where, document, platforms, shown, up_to_date=target_digest == digest)
        if target_digest == digest:  # upstream's whole index, copied before this list: now a selection of it
            return Filtered(pulls=1 + PULLS_PER_PLATFORM * len(platforms), index=True)
    mirrored = None
    if target_digest is not None:
        mirrored = recorded(target_repository, target_digest)
    if mirrored == (digest, wanted):
        return Filtered(index=True, up_to_date=True, mirrored_from=digest)
    mirrored_from = mirrored[0] if mirrored is not None else None
    if host == DOCKER_HUB:  # its index is a counted pull: the build reads it, once, for the copy
        if _found_none(client, mirror, digest, platforms):
            return Filtered(
                index=True,
                error=f"platforms: {shown} has none of {wanted}, as the build that read its index found (its log "
                "names the platforms it has)",
                mirrored_from=mirrored_from,
            )
        return Filtered(index=True, mirrored_from=mirrored_from, pulls=1 + PULLS_PER_PLATFORM * len(platforms))
    document = _json(client.manifest(host, repository, digest))
    if isinstance(document, dict) and "manifests" not in document:  # one manifest after all (a pinned digest)
        return _single(client, source, document, platforms, shown, up_to_date=False)
    try:
        selected = select_platforms(document, platforms)
    except PlatformError as e:
        return Filtered(index=True, error=f"platforms: {shown}: {e}", mirrored_from=mirrored_from)
    if not selected.manifests:
        return Filtered(
            index=True,
            error=f"platforms: {shown} has {describe_platforms(selected.platforms)}, none of {wanted}",
            mirrored_from=mirrored_from,
        )
    return Filtered(index=True, mirrored_from=mirrored_from, pulls=1 + len(selected.manifests))


def _single(
    client: RegistryClient,
    where: tuple[str, str],
    manifest: dict[str, object],
    platforms: Sequence[Platform],
    shown: str,
    *,
    up_to_date: bool,
) -> Filtered:
    """A single manifest is copied as it is when the platform its config names (a blob: no pull anywhere) is one of
    the list's."""
    config = manifest.get("config")
    config_digest = config.get("digest") if isinstance(config, dict) else None
    if not isinstance(config_digest, str) or not is_digest(config_digest):
        return Filtered(error=f"platforms: {shown} is a manifest without a config to read its platform from")
    found = config_platform(_json(client.blob(*where, config_digest)))
    if found is None or not any(p.matches(found) for p in platforms):
        alone = describe_platforms([found]) if found is not None else "of no platform"
        return Filtered(error=f"platforms: {shown} is {alone} alone, none of {platform_list(platforms)}")
    return Filtered(up_to_date=up_to_date, pulls=1)


def _found_none(client: RegistryClient, mirror: tuple[str, str], digest: str, platforms: Sequence[Platform]) -> bool:
    """Whether a build that read the upstream index `digest` found none of the platforms in it: it leaves, untagged
    in the mirror, the empty index of that digest and list (`trust.empty_index`), whose digest is known here."""
    marker = "sha256:" + hashlib.sha256(empty_index(digest, platforms)).hexdigest()
    try:
        client.manifest_head(*mirror, marker)
    except NotFoundError:
        return False
    return True

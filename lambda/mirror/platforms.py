"""What a check learns of an entry that copies some platforms only (`platforms:` or PLATFORMS): whether the mirror's
own index of them is up to date, what its copy will cost, and, where it can be read free, whether the source has any
of them. The rules (matching, selection, the index the mirror writes) are mirror.trust's, shared with the build."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from .references import DOCKER_HUB
from .registry import RegistryClient
from .trust import (
    Platform,
    PlatformError,
    config_platform,
    describe_platforms,
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
    free). `error`: why the entry cannot be copied (none of its platforms, or its manifests unreadable)."""

    up_to_date: bool = False
    mirrored_from: str | None = None
    pulls: int | None = None
    single: bool = False
    error: str | None = None


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
    held: bool = False,
) -> Filtered:
    """Whether the entry's copy in the mirror is up to date, asking nothing that counts a pull: the mirror's
    manifests (ECR), and the source's only where it counts none (any registry but Docker Hub). `held`: the mirror
    holds `digest` (a single manifest, under another tag or none). RegistryError passes up (the check's error)."""
    (host, repository), (ecr_host, target_repository) = source, target
    wanted = platform_list(platforms)
    shown = f"{host}/{repository}@{digest}"
    if index is False:
        # One manifest: copied as it is when its platform is one of the list's, read from its config where free.
        where = target if held or target_digest == digest else source if host != DOCKER_HUB else None
        if where is None:
            return Filtered(up_to_date=False, pulls=1, single=True)
        manifest = _json(client.manifest(*where, digest))
        config = manifest.get("config") if isinstance(manifest, dict) else None
        config_digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(config_digest, str):
            return Filtered(error=f"platforms: {shown} is a manifest without a config to read its platform from")
        found = config_platform(_json(client.blob(*where, config_digest)))
        if found is None or not any(p.matches(found) for p in platforms):
            return Filtered(error=f"platforms: {shown} is {found or 'of no platform'} alone, none of {wanted}")
        return Filtered(up_to_date=target_digest == digest, pulls=1)
    mirrored = None
    if target_digest is not None:
        mirrored = filtered_from(_json(client.manifest(ecr_host, target_repository, target_digest)))
    if mirrored == (digest, wanted):
        return Filtered(up_to_date=True, mirrored_from=digest)
    mirrored_from = mirrored[0] if mirrored is not None else None
    if host == DOCKER_HUB:  # its index is a counted pull: the build reads it, once, for the copy
        return Filtered(mirrored_from=mirrored_from, pulls=1 + PULLS_PER_PLATFORM * len(platforms))
    try:
        selected = select_platforms(_json(client.manifest(host, repository, digest)), platforms)
    except PlatformError:
        return Filtered(mirrored_from=mirrored_from, pulls=1, single=True)  # one manifest after all (a pinned digest)
    if not selected.manifests:
        return Filtered(
            error=f"platforms: {shown} has {describe_platforms(selected.platforms)}, none of {wanted}",
            mirrored_from=mirrored_from,
        )
    return Filtered(mirrored_from=mirrored_from, pulls=1 + len(selected.manifests))

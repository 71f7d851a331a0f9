"""The run's stages, which the function (`sync`) and the plan (`devtools.plan`) both call: load the list, list
and select tag sets, check, claim repositories, start builds. What decides among them is pure (`tagsets`,
`planning`); here is what reads and writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .artifacts import Found, Repository, discover
from .budget import Budget, Share
from .codebuild import BuildStartError, idempotency_token, mirror_images, start_build
from .credentials import build_logins
from .ecr import SOURCE_TAG, claim_repository
from .imagelist import Entry, check_entries, expand_tag_sets, load_text, parse_document, parse_entries
from .planning import Check, Copy, Outcome, Plan, batches, plan
from .platforms import Filtered, Recorded, check_filtered
from .references import DOCKER_HUB
from .registry import (
    Credential,
    DeadlineError,
    ManifestHead,
    NotFoundError,
    RegistryClient,
    RegistryError,
    RegistryTimeoutError,
)
from .settings import Settings
from .tagsets import Selection

NOT_STARTED_REASON = "deadline: not started before the function's deadline"
DEADLINE_REASON = "deadline: not checked before the function's deadline"


class Log(Protocol):
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def exception(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Aws:
    """The AWS clients of one run (secrets and SSM parameters are read through Powertools' Parameters utility)."""

    ecr: Any
    codebuild: Any
    s3: Any

    @classmethod
    def from_session(cls, session: Any) -> Aws:
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)
        # CodeBuild's StartBuild is retried by start_build itself, which knows the account-limit error.
        once = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5, read_timeout=20)
        return cls(
            ecr=session.client("ecr", config=config),
            codebuild=session.client("codebuild", config=once),
            s3=session.client("s3", config=config),
        )


def registry_client(
    settings: Settings,
    credentials: Mapping[str, Credential],
    budget: Budget,
    kind: type[RegistryClient] = RegistryClient,
) -> RegistryClient:
    """The run's registry client: the deployment's endpoints and limits, every request within the budget."""
    return kind(
        endpoints=settings.registry_endpoints,
        credentials=credentials,
        timeout=settings.request_timeout,
        pool_size=settings.max_concurrency,
        remaining_seconds=budget.for_requests,
    )


@dataclass(frozen=True)
class Loaded:
    """The run's list: its raw items and their validated entries (tag sets not yet expanded)."""

    images: list[object]
    entries: list[Entry]
    sources: frozenset[str]


def load_entries(
    images: list[object] | None, settings: Settings, aws: Aws, package_dir: Path, ecr_host: str | None = None
) -> Loaded:
    """The run's entries (the event's `images`, else the list IMAGE_LIST names), validated; sources only from the
    deployment's registries (never this account's ECR)."""
    if images is not None:
        images = check_entries(images, "event")
    else:
        text = load_text(settings.image_list, package_dir=package_dir, s3=aws.s3)
        images = parse_document(text, settings.image_list)
    sources = settings.source_registries - {ecr_host}
    entries = parse_entries(images, settings.naming, sources, platforms=settings.platforms)
    return Loaded(images, entries, frozenset(sources))


def list_tag_sets(
    entries: Sequence[Entry], client: RegistryClient, share: Share, *, concurrency: int, timeout: float, log: Log
) -> dict[int, list[str] | str]:
    """Each tag set's source tags (or why they could not be listed), concurrently, within the listings' `share` of
    the run (the client's requests are bounded by it); typed errors become reasons, anything else that one listing
    raises becomes `internal error: <type>` for that entry alone."""
    out_of_time = f"deadline: tags not listed within the {share.seconds:.0f}s the run gives tag listings"

    def listing(entry: Entry) -> list[str] | str:
        assert entry.source is not None
        try:
            return client.list_tags(entry.source.registry, entry.source.repository)
        except DeadlineError:
            return out_of_time
        except RegistryTimeoutError as e:
            # Less of the share left than one request may take: the share cut the last page short.
            return out_of_time if share.left() < timeout else f"source {e}"
        except RegistryError as e:
            return f"source {e}"
        except Exception as e:
            log.exception("internal error while listing tags", extra={"entry": entry.number})
            return f"internal error: {type(e).__name__}"

    todo = [e for e in entries if e.tag_set is not None and e.error is None]
    # Each repository listed once, however many tag sets read it.
    first: dict[tuple[str, str], Entry] = {}
    for e in todo:
        assert e.source is not None
        first.setdefault((e.source.registry, e.source.repository), e)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tags") as pool:
        listed = dict(zip(first, pool.map(listing, first.values()), strict=True))
    return {e.index: listed[(e.source.registry, e.source.repository)] for e in todo if e.source}


#: tag sets' rounds of HEADs for `latest` (each names the next releases when digests merged some); past it, the
#: rest are counted by their names
RELEASE_ROUNDS = 10

Heads = dict[tuple[str, str, str], ManifestHead]  # (registry, repository, tag) -> what its HEAD told


def select_tags(
    entries: Sequence[Entry],
    listings: Mapping[int, list[str] | str],
    client: RegistryClient,
    *,
    concurrency: int,
    log: Log,
) -> tuple[dict[int, Selection | str], Heads]:
    """What each tag set's rule selects from its listing (or why it has nothing). `latest: N` counts releases by
    digest: the source's HEADs (free of Docker Hub's quota) are asked newest first and only as far as the count
    needs, and each is kept for the check, which then asks nothing again. A HEAD that fails leaves its tag to be
    counted by name; the check reports its error."""
    candidates = {
        e.index: e.tag_set.rule.candidates(listed)
        for e in entries
        if e.tag_set is not None and e.source is not None and isinstance(listed := listings.get(e.index), list)
    }
    by_index = {e.index: e for e in entries}
    digests: dict[tuple[str, str], dict[str, str | None]] = {}
    heads: Heads = {}

    def head(key: tuple[str, str, str]) -> tuple[tuple[str, str, str], ManifestHead | None]:
        try:
            return key, client.manifest_head(*key)
        except (RegistryError, DeadlineError):
            return key, None
        except Exception:
            log.exception("internal error while reading a tag's digest", extra={"tag": key[2]})
            return key, None

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="releases") as pool:
        for _ in range(RELEASE_ROUNDS):
            wanted: dict[tuple[str, str, str], None] = {}
            for index, found in candidates.items():
                source = by_index[index].source
                assert source is not None
                known = digests.setdefault((source.registry, source.repository), {})
                wanted.update(dict.fromkeys((source.registry, source.repository, t) for t in found.wanted(known)))
            if not wanted:
                break
            for key, answer in pool.map(head, wanted):
                digests[key[:2]][key[2]] = answer.digest if answer is not None else None
                if answer is not None:
                    heads[key] = answer
    selections: dict[int, Selection | str] = {}
    for e in entries:
        listed = listings.get(e.index)
        if isinstance(listed, str):
            selections[e.index] = listed
        elif e.index in candidates:
            assert e.source is not None
            known = digests.get((e.source.registry, e.source.repository), {})
            selections[e.index] = candidates[e.index].selection(known)
    return selections, heads


def check_images(
    entries: Sequence[Entry],
    client: RegistryClient,
    ecr_host: str,
    *,
    concurrency: int,
    log: Log,
    budget: Budget | None = None,
    order: Callable[[Entry], float] | None = None,
    heads: Mapping[tuple[str, str, str], ManifestHead] | None = None,
    artifacts: bool = False,
    tag_lists: Mapping[tuple[str, str], frozenset[str]] | None = None,
) -> dict[int, Check]:
    """Source and target digest of each distinct valid entry, concurrently; never past the deadline.

    Entries are checked least recently checked first (`order`, then list order), so a list too long for one run is
    checked in rotation. A source tag whose HEAD tag-set selection already asked (`heads`) is not asked again. A
    source digest the target repository already holds (a free HEAD by digest on ECR) makes the copy a re-tag. With
    `artifacts`, the signatures, attestations and SBOMs that refer to each image are found too (`artifacts.discover`,
    once per repository and digest, asking no tag a tag set's listing of that repository lacks: `tag_lists`), each
    compared with the mirror's copy.
    This is the fault boundary of a check: below it errors are typed (`RegistryError`); whatever else one image's
    check raises becomes that image's `failed` record, logged with its traceback, and the other images go on.
    """
    heads = heads or {}
    tag_lists = tag_lists or {}
    recorded = Recorded(client, ecr_host)  # what the mirror's own indexes of some platforms record
    searches: dict[tuple[str, str, str, str], Found] = {}
    searching: dict[tuple[str, str, str, str], threading.Lock] = {}
    guard = threading.Lock()

    def find(entry: Entry, digest: str, index: bool | None, held: bool) -> Found:
        """The image's artifacts, looked for once per source, digest and target repository (a tag set's aliases
        share them); the deadline makes them a warning, not the image's failure."""
        assert entry.source is not None
        assert entry.target is not None
        source = Repository(entry.source.registry, entry.source.repository)
        target = Repository(ecr_host, entry.target.repository)
        key = (source.host, source.repository, digest, target.repository)
        with guard:  # a search done is read without waiting on its own lock (every alias of a tag set asks)
            if key in searches:
                return searches[key]
            lock = searching.setdefault(key, threading.Lock())
        with lock:
            if key in searches:
                return searches[key]

            def read_index() -> bytes | None:
                # Free where it is read: the mirror's copy, or a source that counts no pulls (Docker Hub does).
                where = target if held else source if source.host != DOCKER_HUB else None
                try:
                    return client.manifest(where.host, where.repository, digest) if where is not None else None
                except RegistryError:
                    return None

            try:
                found = discover(
                    client,
                    source,
                    digest,
                    index=index,
                    target=target,
                    held=held,
                    read_index=read_index,
                    listed=tag_lists.get((source.host, source.repository)),
                )
            except DeadlineError:
                found = Found(warnings=("artifacts: not looked for before the function's deadline",))
            except Exception as e:  # the search's surprise is a warning on its image, never the image's failure
                log.exception("internal error while looking for artifacts", extra={"entry": entry.number})
                found = Found(warnings=(f"artifacts: internal error: {type(e).__name__}",))
            with guard:
                searches[key] = found
            return found

    def lookup(side: str, host: str, repository: str, reference: str) -> tuple[ManifestHead | None, str | None]:
        """(what the HEAD told, None); (None, None) for a target not in ECR yet; (None, reason) on failure.
        Deadline passes."""
        try:
            return client.manifest_head(host, repository, reference), None
        except DeadlineError:
            raise
        except NotFoundError as e:
            return None, f"{side} {e}" if side == "source" else None
        except RegistryError as e:
            return None, f"{side} {e}"

    def check(entry: Entry) -> Check:
        assert entry.source is not None
        assert entry.target is not None
        source_digest, error, index = entry.source.digest, None, None
        try:
            if source_digest is not None and entry.platforms:
                # pinned: what kind of manifest it is decides how platforms are kept (a HEAD, free)
                pinned, _ = lookup("source", entry.source.registry, entry.source.repository, source_digest)
                index = pinned.index if pinned is not None else None
            if source_digest is None:
                source, ref = entry.source, entry.source.reference
                head = heads.get((source.registry, source.repository, ref))
                if head is None:
                    head, error = lookup("source", source.registry, source.repository, ref)
                source_digest, index = (head.digest, head.index) if head is not None else (None, None)
            repository = entry.target.repository
            target, target_error = lookup("target", ecr_host, repository, entry.target.tag)
            target_digest = target.digest if target is not None else None
            if entry.platforms and index is not False and error is None and target_error is None:
                assert source_digest is not None
                return filtered(entry, source_digest, target_digest, keeps(entry, source_digest, index, target_digest))
            changed = error is None and source_digest is not None and source_digest != target_digest
            held = None
            if changed and target_error is None and source_digest is not None:
                held, why = lookup("target", ecr_host, repository, source_digest)
                if why is not None:  # not known to be mirrored: copied as usual
                    log.warning("mirrored digest not read; copied", extra={"entry": entry.number, "error": why})
        except DeadlineError:
            # Reported, never dropped: the next run checks it first. A source error found first is the reason.
            return Check(source_digest, None, error or DEADLINE_REASON, complete=False)
        kept = Filtered()
        if entry.platforms and error is None and target_error is None and source_digest is not None:
            # one manifest: copied as it is, if it is of one of the entry's platforms
            learnt = keeps(entry, source_digest, False, target_digest, held=held is not None)
            if isinstance(learnt, Check):
                return learnt
            if learnt.index:  # its HEAD said one manifest, its bytes say an index: its platforms are selected
                return filtered(entry, source_digest, target_digest, learnt)
            if learnt.error is not None:
                return Check(source_digest, target_digest, learnt.error)
            kept = learnt
        found = Found()
        if artifacts and error is None and target_error is None and source_digest is not None:
            found = find(entry, source_digest, index, held is not None or source_digest == target_digest)
        pulls = None
        if held is not None:
            pulls = 0  # already mirrored under another tag: a re-tag from ECR, no pull
        elif changed:
            # A single manifest costs one pull; an index costs what its copy in ECR counts, when there is one.
            if index is False:
                pulls = 1
            elif target_digest is not None:
                pulls = copy_cost(repository, target_digest)
        result = Check(
            source_digest,
            target_digest,
            error or target_error,
            pulls=pulls,
            mirrored=held is not None,
            artifacts=found.artifacts,
            warnings=found.warnings,
            platforms=entry.platform_names if kept.single else (),
            single=kept.single,
        )
        if budget is not None:
            budget.found(result, entry.target.repository)
        return result

    def keeps(
        entry: Entry, digest: str, index: bool | None, target_digest: str | None, *, held: bool = False
    ) -> Filtered | Check:
        """What `platforms.check_filtered` learns of an entry with platforms, or the Check its error makes (the
        deadline: incomplete, to be checked first next run)."""
        assert entry.source is not None
        assert entry.target is not None
        try:
            return check_filtered(
                client,
                (entry.source.registry, entry.source.repository),
                digest,
                index,
                (ecr_host, entry.target.repository),
                target_digest,
                entry.platforms,
                held=held,
                recorded=recorded,
            )
        except DeadlineError:
            return Check(digest, None, DEADLINE_REASON, complete=False)
        except RegistryError as e:
            return Check(digest, target_digest, f"platforms: {e}")

    def filtered(entry: Entry, digest: str, target_digest: str | None, kept: Filtered | Check) -> Check:
        """The check of an index whose copy keeps the entry's platforms only, from what `keeps` learnt: the mirror's
        own index of them is compared; no upstream digest is ever mirrored under another tag as it is."""
        assert entry.target is not None
        if isinstance(kept, Check):
            return kept
        result = Check(
            digest,
            target_digest,
            kept.error,
            pulls=kept.pulls,
            up_to_date=kept.up_to_date,
            mirrored_from=kept.mirrored_from,
            platforms=entry.platform_names,
            single=kept.single,
        )
        if budget is not None and kept.error is None:
            budget.found(result, entry.target.repository)
        return result

    def copy_cost(repository: str, digest: str) -> int | None:
        """What copying this image again costs, counted free from the copy in ECR; None (an assumption is made)
        when it cannot be read. Never fails the check, and never runs it past the deadline."""
        try:
            return client.manifest_count(ecr_host, repository, digest)
        except RegistryError:
            return None

    def contained(entry: Entry) -> Check:
        try:
            return check(entry)
        except Exception as e:
            log.exception("internal error while checking an image", extra={"entry": entry.number})
            return Check(None, None, f"internal error: {type(e).__name__}")

    todo = [e for e in entries if e.valid and e.duplicate_of is None]
    if order is not None:
        todo.sort(key=lambda e: (order(e), e.index))
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="check") as pool:
        return dict(zip((e.index for e in todo), pool.map(contained, todo), strict=True))


@dataclass(frozen=True)
class Checked:
    """The read-only part of a run: the list with its tag sets expanded, what each tag set selected (or why it has
    nothing), each image's check, and the plan."""

    entries: list[Entry]
    selections: dict[int, Selection | str]
    checks: dict[int, Check]
    plan: Plan
    tag_sets: int


def check_list(
    loaded: Loaded,
    client: RegistryClient,
    ecr_host: str,
    settings: Settings,
    budget: Budget,
    log: Log,
    *,
    order: Callable[[Entry], float] | None = None,
) -> Checked:
    """List and select each tag set's tags (within the listings' share), expand them, check every image, plan:
    what the function and the plan (`devtools.plan`) both do before anything is written."""
    entries = loaded.entries
    tag_sets = sum(1 for e in entries if e.tag_set is not None)
    selections: dict[int, Selection | str] = {}
    heads = None
    tag_lists: dict[tuple[str, str], frozenset[str]] = {}
    if tag_sets:
        with budget.listings() as share:
            listings = list_tag_sets(
                entries,
                client,
                share,
                concurrency=settings.max_concurrency,
                timeout=settings.request_timeout,
                log=log,
            )
        selections, heads = select_tags(entries, listings, client, concurrency=settings.max_concurrency, log=log)
        tag_lists = {
            (e.source.registry, e.source.repository): frozenset(listed)
            for e in entries
            if e.source is not None and isinstance(listed := listings.get(e.index), list)
        }
        entries = expand_tag_sets(
            loaded.images, entries, selections, settings.naming, loaded.sources, platforms=settings.platforms
        )
        budget.entries(len(entries))
    checks = check_images(
        entries,
        client,
        ecr_host,
        concurrency=settings.max_concurrency,
        log=log,
        budget=budget,
        order=order,
        heads=heads,
        artifacts=settings.copy_artifacts,
        tag_lists=tag_lists,
    )
    return Checked(entries, selections, checks, plan(entries, checks), tag_sets)


def claim_repositories(
    copies: Sequence[Copy], aws: Aws, ecr_host: str, budget: Budget, log: Log, *, dry_run: bool = False
) -> dict[str, Outcome]:
    """Claim each target repository for its upstream (creating it where missing), while the rest of the run still
    fits before the deadline; returns the repositories whose copies may not be started, and why. A repository that
    belongs to another upstream is never written: its copies are `invalid`. A dry run only reads."""
    refused: dict[str, Outcome] = {}
    sources = {c.target.repository: c.source.name for c in copies}  # one upstream per repository (the list's rule)
    for name in sorted(sources):
        if budget.left() < budget.repository_pace:
            refused[name] = Outcome(error=NOT_STARTED_REASON)
            continue
        started = time.monotonic()
        claim = claim_repository(aws.ecr, ecr_host, name, sources[name], dry_run=dry_run)
        budget.took("repository", time.monotonic() - started)
        if claim.warning:
            log.warning(claim.warning)
        if claim.adopted and not dry_run:
            log.info("repository adopted", extra={"repository": name, "source": sources[name]})
        if claim.error:
            refused[name] = Outcome(error=claim.error)
        elif claim.owner is not None:
            refused[name] = Outcome(
                error=f"target repository {name} mirrors {claim.owner} (its {SOURCE_TAG} tag), not "
                f"{sources[name]}: a repository belongs to one upstream, so this entry is never copied",
                invalid=True,
            )
    return refused


def start_builds(
    ready: Sequence[Copy],
    settings: Settings,
    aws: Aws,
    client: RegistryClient,
    ecr_host: str,
    budget: Budget,
    *,
    run_id: str = "",
) -> tuple[dict[int, Outcome], int]:
    """Start builds for the admitted copies, in batches, each only while the rest of the run still fits before the
    deadline. Returns what became of each copy, and the builds started."""
    outcomes: dict[int, Outcome] = {}
    builds = 0
    for batch in batches(ready, settings.images_per_build):
        if budget.left() < budget.build_pace:
            outcome = Outcome(error=NOT_STARTED_REASON)
        else:
            payload = mirror_images(batch, client.location, client.location(ecr_host))
            hosts = {c.source.registry for c in batch if c.source.registry in settings.registry_credentials}
            logins = build_logins({h: client.location(h) for h in hosts}, settings)
            started = time.monotonic()
            try:
                build = start_build(
                    aws.codebuild,
                    settings.codebuild_project,
                    payload,
                    remaining_seconds=budget.for_builds,
                    extra=logins,
                    token=idempotency_token(run_id, payload),
                    run_id=run_id,
                )
                outcome = Outcome(build=build)
                builds += 1
            except BuildStartError as e:
                outcome = Outcome(error=str(e))
            budget.took("build", time.monotonic() - started)
        for c in batch:
            outcomes[c.index] = outcome
    return outcomes, builds

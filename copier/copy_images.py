"""The copy CodeBuild runs (embedded in template.yaml's buildspec): each MIRROR_IMAGES entry copied with skopeo,
every platform and every digest kept, into this account's mirror only, the tag written only after its digest is
verified. Standard library only: the build image has python3, not this project's packages.

Nothing from the variable reaches a shell: it is parsed as JSON, each string is checked against strict patterns
(the target must be <this account's registry>/$TARGET_PREFIX/..., the source pinned by digest), and skopeo runs
from an argument list. What the build trusts it derives: this account's registry from CODEBUILD_BUILD_ARN (a
StartBuild caller cannot set a CODEBUILD_ variable), an entry's registry from its source host (an entry naming
another is refused). An entry marked `retag` names a digest the target repository already holds: its tag is
written from that manifest (tag()), and its source is sent no request for the image (its pulls are those of its
artifacts, 0 without any). An entry's `artifacts` (signatures, attestations, SBOMs) are copied only once its image
is in place, each with its digest and under its tag where it has one: a tag derived from the digest it refers to,
which must be the image's or one of its platforms' (mirror.trust.is_artifact_tag), copied from upstream's own tag;
a referrer is also listed in the mirror's OCI fallback index. One line per entry: COPIED, FAILED <target>: <reason>,
DEFERRED <target>: <reason> or REFUSED entry <n>: <reason>; then one line per artifact: ARTIFACT
<repository>:<tag> (<kind> of <subject>) (`@<digest>` for a referrer), or WARNING <target>: <kind> <digest> not
copied: <reason> (the image stands).

Copies run COPY_CONCURRENCY at a time, those into one repository one after another (a tag set's tags share
layers). Before each Docker Hub copy the build reads its own `ratelimit-remaining` with a HEAD of a manifest at
Docker Hub's own endpoint (not a counted pull): a copy whose estimated pulls do not fit above DOCKERHUB_PULL_RESERVE
is deferred, not failed, and the next run copies it. The Docker Hub pulls spent (one per manifest copied) go to
MIRROR_PULLS_FILE for the buildspec to export. One deadline per entry, COPY_TIMEOUT_SECONDS from its start, covers
its quota check, copy and tag.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from base64 import b64encode
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from urllib.parse import urlencode

# The realm, host and loopback rules are the function's own (lambda/mirror/trust.py): imported here, inlined in
# their place by the buildspec's embed step (devtools.buildspec), since the build has nothing but its buildspec.
# -- begin mirror.trust --
from mirror.trust import (
    ARTIFACTS_MAX,
    DOCKER_HUB,
    DOCKER_HUB_HOSTS,
    OCI_INDEX,
    REFERRERS_PULLS,
    Platform,
    PlatformError,
    UntrustedURLError,
    config_platform,
    describe_platforms,
    digest_tag,
    empty_index,
    endpoint_url,
    filtered_index,
    is_artifact_tag,
    is_loopback,
    parse_platforms,
    parse_url,
    platform_list,
    realm_takes_credentials,
    registry_of,
    select_platforms,
)

# -- end mirror.trust --

HOST = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]{1,5})?"
)
PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
DIGEST = r"sha256:[a-f0-9]{64}"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
SOURCE = re.compile(rf"({HOST})/({PATH})@({DIGEST})")
MAX_LENGTH = 512
FIELDS = {"source", "target", "digest", "registry", "pulls"}
OPTIONAL = {"retag", "artifacts", "platforms", "single"}
ARTIFACT_KIND = r"[a-z]{1,20}"
ARTIFACT_FIELDS = {"kind", "digest", "subject"}
#: the most referrers an index under the fallback tag may list before it is not believed
REFERRERS_MAX = 100

#: seconds one entry (its quota check, copy and tag) may take before it fails with "timeout" (the next still run)
DEFAULT_TIMEOUT = 900
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 16
MAX_PULLS = 100_000
DEFAULT_RESERVE = 10
MANIFEST_ACCEPT = (
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
)
#: the rate-limit check: the most seconds of an entry's time its whole exchange may take, and the most of a token
#: answer it reads
PROBE_SECONDS = 10.0
TOKEN_CAP = 65536
#: registries refuse manifests over 4 MiB
MANIFEST_CAP = 4 * 2**20
#: the build's own ARN (CodeBuild sets it; a StartBuild caller cannot): partition, region and account
BUILD_ARN = re.compile(r"arn:(aws[a-z-]*):codebuild:([a-z]{2}(?:-[a-z]+)+-[0-9]):([0-9]{12}):build/[A-Za-z0-9_:.-]+")
#: the DNS suffix of ECR's registries in each partition a build may run in
ECR_DOMAINS = {"aws": "amazonaws.com", "aws-cn": "amazonaws.com.cn", "aws-us-gov": "amazonaws.com"}


@dataclass(frozen=True)
class Job:
    """One checked entry: the source (its host and repository path), the target (its host and repository), the
    digest, the source's registry as users name it (derived from the source host), the Docker Hub pulls the
    function estimated, and whether it is a re-tag (the digest is in the target repository already: the tag is
    written from that manifest, and the source is sent no request). With `platforms`, only those of the source
    index are copied, into an index the build writes (`single`: the source is one manifest, tagged only if it is
    of one of them); a re-tag with platforms tags the index an earlier entry of this build wrote of them."""

    number: int
    source: str
    source_host: str
    source_path: str
    target: str
    target_host: str
    repository: str
    tag: str
    digest: str
    registry: str
    pulls: int
    retag: bool = False
    artifacts: tuple[Artifact, ...] = ()
    platforms: tuple[Platform, ...] = ()
    single: bool = False


@dataclass(frozen=True)
class Artifact:
    """A manifest that refers to the entry's image (or one of its platforms: `subject`), copied after it."""

    kind: str
    digest: str
    subject: str
    tag: str | None


@dataclass(frozen=True)
class Deadline:
    """One entry's time: COPY_TIMEOUT_SECONDS from when it starts, for its quota check, its copy and its tag."""

    seconds: int
    at: float

    @classmethod
    def start(cls, seconds: int) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def left(self) -> float:
        return self.at - time.monotonic()


@dataclass(frozen=True)
class AccountRegistry:
    """This account's registry, the one place the build writes; `region` is None outside CodeBuild (tests and the
    sandbox, where the registry is a loopback one and its login is already in REGISTRY_AUTH_FILE)."""

    host: str
    region: str | None


def account_registry(environ: Mapping[str, str]) -> AccountRegistry:
    """Where the build may write, from what a StartBuild caller cannot set: CODEBUILD_BUILD_ARN
    (`arn:<partition>:codebuild:<region>:<account>:build/<project>:<id>`) names the account and region, hence
    `<account>.dkr.ecr.<region>.amazonaws.com`. ECR_REGISTRY, which any caller may override, must then be unset or
    that very host. Outside CodeBuild (no CODEBUILD_BUILD_ARN) ECR_REGISTRY is taken only when it is a loopback
    registry. Raises ValueError saying why not."""
    arn = environ.get("CODEBUILD_BUILD_ARN", "")
    named = environ.get("ECR_REGISTRY", "")
    if not arn:
        if not re.fullmatch(HOST, named) or not is_loopback(named):
            raise ValueError(
                f"ECR_REGISTRY {named[:100]!r}: outside CodeBuild (no CODEBUILD_BUILD_ARN) the build writes only to "
                "a loopback registry"
            )
        return AccountRegistry(named, None)
    match = BUILD_ARN.fullmatch(arn)
    if match is None or match.group(1) not in ECR_DOMAINS:
        raise ValueError(f"CODEBUILD_BUILD_ARN {arn[:200]!r} does not name a build's partition, region and account")
    partition, region, account = match.groups()
    host = f"{account}.dkr.ecr.{region}.{ECR_DOMAINS[partition]}"
    if named and named != host:
        raise ValueError(
            f"ECR_REGISTRY {named[:100]!r} is not this build's registry {host} (from CODEBUILD_BUILD_ARN): where the "
            "build writes is not a StartBuild caller's to choose"
        )
    return AccountRegistry(host, region)


def registry_endpoints(raw: str) -> dict[str, str]:
    """REGISTRY_ENDPOINTS as the function reads it: a JSON object of registry -> base URL (https, or plain http on
    loopback; no path, query or credentials), `index.docker.io` and `registry-1.docker.io` meaning docker.io.
    Raises ValueError saying what is wrong."""
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        raise ValueError("REGISTRY_ENDPOINTS is not JSON") from None
    if not isinstance(parsed, dict):
        raise ValueError("REGISTRY_ENDPOINTS is not a JSON object of registry -> base URL")
    endpoints = {}
    for name, url in parsed.items():
        if not re.fullmatch(HOST, name) or not isinstance(url, str):
            raise ValueError(f"REGISTRY_ENDPOINTS[{name[:100]!r}] must map a registry host to a URL")
        try:
            where = parse_url(url)
        except UntrustedURLError as e:
            raise ValueError(f"REGISTRY_ENDPOINTS[{name!r}]: {e}") from None
        if where.target != "/":
            raise ValueError(f"REGISTRY_ENDPOINTS[{name!r}]: {url[:100]!r} must be a base URL without a path")
        if where.scheme == "http" and not is_loopback(where.host):
            raise ValueError(f"REGISTRY_ENDPOINTS[{name!r}]: plain http is allowed only for loopback addresses")
        name = name.lower()
        endpoints[DOCKER_HUB if name in DOCKER_HUB_HOSTS else name] = where.origin
    return endpoints


def target_pattern(registry: str, prefix: str, upstream: str = "") -> re.Pattern[str] | None:
    """Targets this build may write: this account's registry, under the stack's prefix or one of the prefixes of
    UPSTREAM_PREFIXES (a JSON object of registry host -> prefix, as the function reads it), nowhere else."""
    prefixes = [prefix]
    if upstream.strip():
        try:
            mapped = json.loads(upstream)
        except ValueError:
            return None
        if not isinstance(mapped, dict) or not all(isinstance(p, str) for p in mapped.values()):
            return None
        prefixes += [p.strip("/") for p in mapped.values()]
    if not re.fullmatch(HOST, registry or "") or not all(re.fullmatch(PATH, p or "") for p in prefixes):
        return None
    under = "|".join(re.escape(p) for p in prefixes)
    return re.compile(rf"({re.escape(registry)})/((?:{under})/{PATH}):({TAG})")


def tls(host: str) -> str:
    # Loopback registries (tests, sandboxes) speak plain HTTP: the function's rule, nothing else.
    return "false" if is_loopback(host) else "true"


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "no output"
    return re.sub(r'^time="[^"]*" level=\w+ msg=', "", line)[:300]


def check(
    index: int, entry: object, target: re.Pattern[str], endpoints: Mapping[str, str]
) -> tuple[Job | None, str | None]:
    """The entry as a Job, or None and the reason it is refused. Its registry is derived from the source host by
    the function's rule (`endpoints`: REGISTRY_ENDPOINTS): Docker Hub's credential, quota and pull count follow
    it, so an entry naming another registry than its source's is refused."""
    if not isinstance(entry, dict) or not FIELDS <= set(entry) <= FIELDS | OPTIONAL:
        return None, (
            "entry must be an object of exactly source, target, digest, registry, pulls (and retag, artifacts, "
            "platforms, single)"
        )
    retag = entry.get("retag", False)
    if retag is not True and "retag" in entry:
        return None, "retag, where given, must be true"
    if not all(isinstance(entry[k], str) and len(entry[k]) <= MAX_LENGTH for k in FIELDS - {"pulls"}):
        return None, "source, target, digest and registry must be strings of at most 512 characters"
    source, wanted, digest, registry, pulls = (entry[k] for k in ("source", "target", "digest", "registry", "pulls"))
    s, t = SOURCE.fullmatch(source), target.fullmatch(wanted)
    if not s:
        return None, "source is not <registry>/<repository>@sha256:<digest> (a source must be pinned by digest)"
    if not t:
        return None, "target is not <this account's registry>/<the mirror's prefix>/<repository>:<tag>"
    if not re.fullmatch(DIGEST, digest) or s.group(3) != digest:
        return None, "digest is not the digest the source is pinned to"
    if not re.fullmatch(HOST, registry):
        return None, "registry is not a registry name"
    host, path = s.group(1), s.group(2)
    derived = registry_of(host, endpoints)
    if registry.lower() != derived:
        return None, f"registry {registry} is not the registry of the source's host {host} ({derived})"
    if type(pulls) is not int or not 0 <= pulls <= MAX_PULLS:
        return None, f"pulls is not a whole number from 0 to {MAX_PULLS}"
    artifacts, why = check_artifacts(entry.get("artifacts", []))
    if why is not None:
        return None, why
    if retag and pulls > REFERRERS_PULLS * len(artifacts):
        return None, "a re-tag fetches nothing upstream but its artifacts: its pulls must be theirs"
    platforms: tuple[Platform, ...] = ()
    if "platforms" in entry:
        try:
            platforms = parse_platforms(entry["platforms"] if isinstance(entry["platforms"], list) else None)
        except PlatformError as e:
            return None, f"platforms: {e}"
    single = entry.get("single", False)
    if (single is not True and "single" in entry) or (single and not platforms):
        return None, "single, where given, must be true, and comes with platforms"
    repository = f"{t.group(1)}/{t.group(2)}"
    job = Job(
        index,
        source,
        host,
        path,
        wanted,
        t.group(1),
        repository,
        t.group(3),
        digest,
        derived,
        pulls,
        retag,
        artifacts,
        platforms,
        single,
    )
    return job, None


def check_artifacts(raw: object) -> tuple[tuple[Artifact, ...], str | None]:
    """An entry's artifacts, or the reason they are refused: at most ARTIFACTS_MAX, each a kind, a digest, the
    digest it refers to and, where it has one, a tag, which can only be derived from that digest (a caller cannot
    move any other tag of the mirror with it)."""
    if not isinstance(raw, list) or len(raw) > ARTIFACTS_MAX:
        return (), f"artifacts must be a list of at most {ARTIFACTS_MAX}"
    found = []
    for a in raw:
        if not isinstance(a, dict) or not ARTIFACT_FIELDS <= set(a) <= ARTIFACT_FIELDS | {"tag"}:
            return (), "an artifact must be an object of kind, digest, subject (and tag)"
        kind, digest, subject, tag = a["kind"], a["digest"], a["subject"], a.get("tag")
        if not all(isinstance(v, str) for v in (kind, digest, subject)) or not re.fullmatch(ARTIFACT_KIND, kind):
            return (), "an artifact's kind, digest and subject must be strings"
        if not re.fullmatch(DIGEST, digest) or not re.fullmatch(DIGEST, subject):
            return (), "an artifact's digest and subject must be sha256 digests"
        if tag is not None and (not isinstance(tag, str) or not is_artifact_tag(tag, subject)):
            return (), "an artifact's tag must be the tag form of its subject (sha256-<hex>, with .sig, .att or .sbom)"
        found.append(Artifact(kind, digest, subject, tag))
    return tuple(found), None


def skopeo(args: list[str], timeout: float, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes] | None:
    """skopeo's result, or None when it ran out of time."""
    return run(["skopeo", *args], timeout, stdin)


def run(command: list[str], timeout: float, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes] | None:
    """A tool's result, or None when it ran out of time (or had none left)."""
    if timeout <= 0:
        return None
    try:
        # An argument list, no shell; every value in it was checked first. The tools come from the build image's PATH.
        return subprocess.run(command, input=stdin, capture_output=True, timeout=timeout, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        return None


def copy(job: Job, deadline: Deadline, workdir: str, environ: Mapping[str, str]) -> tuple[str | None, int]:
    """Push every platform by digest (push()): no tag moves yet. Then write the tag and verify it (tag()), in what
    is left of the entry's time. Returns (None, the manifests copied) on success, else (the reason, 0)."""
    reason = push(job, deadline, workdir)
    return (reason, 0) if reason else tag(job, deadline.at, environ)


def push(job: Job, deadline: Deadline, workdir: str, *, every: bool = True) -> str | None:
    """Copy `job.source` (every platform; `every` False: one manifest, which an index then fails to be) to the
    target repository by its digest, which skopeo's --digestfile must confirm. None, or why not."""
    digest_file = os.path.join(workdir, f"digest-{job.number}-{job.digest[7:19]}")
    tls_flags = [f"--src-tls-verify={tls(job.source_host)}", f"--dest-tls-verify={tls(job.target_host)}"]
    flags = ["copy", *(["--all"] if every else []), "--preserve-digests", "--retry-times", "3", "--quiet"]
    flags += ["--digestfile", digest_file]
    pushed = skopeo(
        [*flags, *tls_flags, f"docker://{job.source}", f"docker://{job.repository}@{job.digest}"], deadline.left()
    )
    if pushed is None:
        return f"timeout after {deadline.seconds}s"
    if pushed.returncode != 0:
        return "copy failed: " + last_line(pushed.stderr.decode(errors="replace"))
    try:
        with open(digest_file) as f:
            written = f.read(100).strip()
    except OSError:
        written = "nothing"
    if written != job.digest:
        return f"digest mismatch: {job.repository}@{job.digest} was written as {written[:80]}"
    return None


def login_header(host: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The Basic login `skopeo login` stored for `host` in REGISTRY_AUTH_FILE (the build's ECR login)."""
    try:
        with open(environ.get("REGISTRY_AUTH_FILE", "")) as f:
            auth = json.load(f)["auths"][host]["auth"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {"Authorization": f"Basic {auth}"} if isinstance(auth, str) and auth else {}


def tag(job: Job, deadline: float, environ: Mapping[str, str]) -> tuple[str | None, int]:
    """Write the tag through the registry API, as crane and regclient do: read back the manifest pushed by digest
    (its sha256 checked), put those very bytes under the tag, and check the digest the registry then serves for the
    tag; all before `deadline`. Returns (None, the manifests the copy fetched: the index and each of its manifests,
    or one), or (reason, 0).
    """
    api, headers = _target(job, environ)
    try:
        held = read_back(job, job.digest, deadline, environ, failed="tag failed: ")
        if isinstance(held, str):
            return held, 0
        body, media_type = held
        put = {**headers, "Content-Type": media_type}
        status, _, _ = _retried(f"{api}/manifests/{job.tag}", "PUT", put, deadline, body=body)
        if status not in (200, 201):
            return f"tag failed: writing {job.target} answered HTTP {status}", 0
        status, answer, _ = _retried(f"{api}/manifests/{job.tag}", "HEAD", headers, deadline)
    except TimeoutError:
        return "tag failed: timeout", 0
    except UntrustedURLError as e:
        return f"tag failed: {e}", 0
    except (OSError, http.client.HTTPException) as e:
        return f"tag failed: {type(e).__name__}", 0
    served = answer.get("Docker-Content-Digest", "").strip()
    if status != 200 or served != job.digest:
        return f"digest mismatch: {job.target} has {served[:80] or 'nothing'}, expected {job.digest}", 0
    try:
        manifests = json.loads(body).get("manifests")
    except (ValueError, AttributeError, RecursionError):
        manifests = None
    return None, 1 + len(manifests) if isinstance(manifests, list) else 1


def artifact_job(job: Job, digest: str, tag: str | None = None) -> Job:
    """The copy of one manifest of `job`'s source repository into its target repository: by digest, or from the
    source's own `tag` (so that a tag moves only to what upstream's tag names, skopeo's digestfile confirming it)."""
    return replace(
        job,
        source=f"{job.source_host}/{job.source_path}" + (f":{tag}" if tag else f"@{digest}"),
        digest=digest,
        tag=tag or job.tag,
        target=f"{job.repository}:{tag}" if tag else f"{job.repository}@{digest}",
        retag=False,
        artifacts=(),
        platforms=(),
        single=False,
    )


def copy_artifacts(
    job: Job, timeout: int, workdir: str, environ: Mapping[str, str], more_pulls: Callable[[int], str | None]
) -> list[tuple[Artifact, str | None, int]]:
    """Each of the entry's artifacts, copied once its image is in place, within one more entry's time: (the
    artifact, why it was not copied or None, the manifests fetched from the source). An artifact must refer to the
    image or to one of its platforms, as the mirror's copy of the image lists them: a caller cannot write the
    artifact tags of another image with it. `more_pulls(n)` admits n pulls beyond an artifact's estimate (None) or
    says why not."""
    if not job.artifacts:
        return []
    deadline = Deadline.start(timeout)
    subjects = image_subjects(job, deadline.at, environ)
    results: list[tuple[Artifact, str | None, int]] = []
    for a in job.artifacts:
        reason: str | None
        try:
            if subjects is None:
                reason, fetched = f"{job.repository}@{job.digest} could not be read back from the mirror", 0
            elif a.subject not in subjects:
                reason, fetched = f"it refers to {a.subject}, neither the image nor one of its platforms", 0
            else:
                reason, fetched = copy_artifact(job, a, deadline, workdir, environ, more_pulls)
        except Exception as e:  # one artifact's surprise is a warning on its image, never the image's failure
            reason, fetched = f"internal error: {type(e).__name__}", 0
        results.append((a, reason, fetched))
    return results


def copy_artifact(
    job: Job,
    a: Artifact,
    deadline: Deadline,
    workdir: str,
    environ: Mapping[str, str],
    more_pulls: Callable[[int], str | None],
) -> tuple[str | None, int]:
    """One artifact, its digest preserved and verified. A cosign tag's manifest is copied from upstream's tag,
    then tagged (copy()). An index under the OCI fallback tag is read from upstream's tag (its sha256 checked), its
    referrers the mirror lacks are pushed first, then the index itself, then its tag. A referrer the source's API
    listed is pushed by digest (unless the mirror holds it) and then added to the mirror's fallback index
    (list_referrer())."""
    if a.tag is None:  # held already (and only not listed), it is not fetched again
        fetched = 0 if in_mirror(job, a.digest, deadline.at, environ) else 1
        reason = push(artifact_job(job, a.digest), deadline, workdir) if fetched else None
        return (reason, 0) if reason else (list_referrer(job, a, deadline.at, environ), fetched)
    if a.tag != digest_tag(a.subject):  # cosign's .sig, .att or .sbom
        return copy(artifact_job(job, a.digest, a.tag), deadline, workdir, environ)
    one = artifact_job(job, a.digest, a.tag)
    body, reason, fetched = upstream_manifest(one, deadline, "the referrers index")  # as upstream's tag serves it
    if reason:
        return reason, fetched
    children = listed_digests(body)
    if children is None:
        return "the fallback tag does not hold an index of referrers", 1
    reason, fetched, waits = push_listed(
        job, children, "referrer", deadline, workdir, environ, REFERRERS_PULLS, more_pulls
    )
    if reason:
        return (f"deferred: {reason}" if waits else reason), fetched
    reason = put_manifest(job, a.digest, body, OCI_INDEX, deadline.at, environ)
    if reason is None:
        reason, _ = tag(one, deadline.at, environ)
    return reason, fetched


@dataclass(frozen=True)
class Kept:
    """What a copy of some platforms did: why it failed (or None), whether it waits for the next run instead, the
    manifests fetched from the source, and the digest of the index the build wrote of them."""

    reason: str | None
    fetched: int
    made: str | None = None
    deferred: bool = False


def copy_platforms(
    job: Job, deadline: Deadline, workdir: str, environ: Mapping[str, str], more_pulls: Callable[[int], str | None]
) -> Kept:
    """The job's platforms of its source index, each platform manifest (and Docker's attestation manifest of it)
    pushed by its digest unless the mirror holds it, then an index of exactly those written (mirror.trust's
    filtered_index: the upstream digest and the platforms it was made from annotated), read back and checked, and
    tagged (tag()). The source index is read once, by its digest (one pull on Docker Hub), its sha256 checked.
    `more_pulls(n)` admits n pulls beyond the job's estimate, or says why not (the copy is then deferred)."""
    if job.single:
        return copy_single(job, deadline, workdir, environ)
    body, reason, fetched = upstream_manifest(job, deadline, "the index")
    if reason:
        return Kept(reason, fetched)
    try:
        index = json.loads(body)
    except (ValueError, RecursionError):
        return Kept(f"{job.source} is not a manifest", 1)
    if isinstance(index, dict) and "manifests" not in index:  # one manifest after all (a pinned digest)
        done = copy_single(job, deadline, workdir, environ)
        return replace(done, fetched=done.fetched + 1)
    try:
        selected = select_platforms(index, job.platforms)
    except PlatformError as e:
        return Kept(f"platforms: {job.source}: {e}", 1)
    if not selected.manifests:
        # Left untagged for the next check, which knows its digest and fails the entry without a build.
        marker = empty_index(job.digest, job.platforms)
        digest = "sha256:" + hashlib.sha256(marker).hexdigest()
        unmarked = put_manifest(job, digest, marker, OCI_INDEX, deadline.at, environ)
        has = describe_platforms(selected.platforms)
        left = f" (the next run cannot know it without this build: {unmarked})" if unmarked else ""
        return Kept(f"platforms: {job.source} has {has}, none of {platform_list(job.platforms)}{left}", 1)
    reason, fetched, waits = push_listed(
        job, selected.digests, "platform manifest", deadline, workdir, environ, job.pulls, more_pulls
    )
    if reason:
        return Kept(reason, fetched, deferred=waits)
    body = filtered_index(selected, job.digest, job.platforms)
    made = "sha256:" + hashlib.sha256(body).hexdigest()
    reason = put_manifest(job, made, body, OCI_INDEX, deadline.at, environ)
    if reason is None:
        reason, _ = tag(replace(job, digest=made), deadline.at, environ)
    return Kept(reason, fetched, None if reason else made)


def copy_single(job: Job, deadline: Deadline, workdir: str, environ: Mapping[str, str]) -> Kept:
    """A source that is one manifest, pushed by its digest (one pull), then tagged only if the platform its config
    names, read back from the mirror (no pull), is one of the job's: a manifest of another platform stays untagged
    (and the next run's check, which reads it from the mirror free, fails its entry without a build). Pushed
    without --all: an index said to be one manifest fails by its digest, having fetched one platform, not all."""
    reason = push(job, deadline, workdir, every=False)
    if reason:
        return Kept(reason, 0)
    try:
        held = read_back(job, job.digest, deadline.at, environ)
        document = json.loads(held[0]) if not isinstance(held, str) else None
    except (OSError, http.client.HTTPException, ValueError, RecursionError):  # TimeoutError, UntrustedURLError too
        held, document = "it could not be read back", None
    if isinstance(held, str) or not isinstance(document, dict) or "manifests" in document:
        why = held if isinstance(held, str) else "an index"
        return Kept(f"platforms: {job.repository}@{job.digest} is not one manifest ({why})", 1)
    config = ["inspect", "--config", "--raw", f"--tls-verify={tls(job.target_host)}"]
    read = skopeo([*config, f"docker://{job.repository}@{job.digest}"], deadline.left())
    if read is None or read.returncode != 0:
        return Kept(f"platforms: the config of {job.repository}@{job.digest} could not be read back", 1)
    try:
        found = config_platform(json.loads(read.stdout))
    except (ValueError, RecursionError):
        found = None
    if found is None or not any(p.matches(found) for p in job.platforms):
        alone = describe_platforms([found]) if found is not None else "of no platform"
        return Kept(f"platforms: {job.source} is {alone} alone, none of {platform_list(job.platforms)}", 1)
    reason, _ = tag(job, deadline.at, environ)
    return Kept(reason, 1)


def push_listed(
    job: Job,
    digests: Sequence[str],
    what: str,
    deadline: Deadline,
    workdir: str,
    environ: Mapping[str, str],
    estimate: int,
    more_pulls: Callable[[int], str | None],
) -> tuple[str | None, int, bool]:
    """Push by digest, each once, the manifests an index read from upstream lists that the mirror lacks (before the
    index itself: a registry refuses an index whose manifests it does not hold), once the pulls they take beyond
    `estimate` (the index's read and theirs) are admitted by `more_pulls`. Returns (None, the manifests fetched,
    index included, False), or (why not, the manifests fetched so far, whether it waits for the quota)."""
    missing = [d for d in dict.fromkeys(digests) if not in_mirror(job, d, deadline.at, environ)]
    if 1 + len(missing) > estimate:
        held_back = more_pulls(1 + len(missing) - estimate)
        if held_back is not None:
            return f"its {len(missing)} {what}s: {held_back}", 1, True
    for pushed, child in enumerate(missing):
        reason = push(artifact_job(job, child), deadline, workdir)
        if reason:
            return f"{what} {child}: {reason}", 1 + pushed, False
    return None, 1 + len(missing), False


def upstream_manifest(job: Job, deadline: Deadline, what: str) -> tuple[bytes, str | None, int]:
    """The bytes of `job.source` as upstream serves them (`skopeo inspect --raw`: one pull on Docker Hub), their
    sha256 checked against `job.digest`: (the bytes, None, 1), or (b"", why not, the manifests fetched)."""
    inspect = ["inspect", "--raw", f"--tls-verify={tls(job.source_host)}", f"docker://{job.source}"]
    raw = skopeo(inspect, deadline.left())
    if raw is None:
        return b"", f"reading {what}: timeout after {deadline.seconds}s", 0
    if raw.returncode != 0:
        return b"", f"reading {what} failed: " + last_line(raw.stderr.decode(errors="replace")), 0
    if "sha256:" + hashlib.sha256(raw.stdout).hexdigest() != job.digest:
        return b"", f"digest mismatch: {job.source} is no longer {job.digest}", 1
    return raw.stdout, None, 1


def listed_digests(body: bytes) -> list[str] | None:
    """The digests an index lists (at most REFERRERS_MAX), or None when it is not an index."""
    try:
        index = json.loads(body)
    except (ValueError, RecursionError):
        return None
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or len(manifests) > REFERRERS_MAX:
        return None
    digests = [m.get("digest") for m in manifests if isinstance(m, dict)]
    if len(digests) != len(manifests) or not all(isinstance(d, str) and re.fullmatch(DIGEST, d) for d in digests):
        return None
    return [str(d) for d in digests]


def _target(job: Job, environ: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The target repository's API base (`<registry>/v2/<path>`) and the headers that log in to it."""
    base = endpoint_url(job.target_host, {})
    path = job.repository.split("/", 1)[1]
    return f"{base}/v2/{path}", {"Accept": MANIFEST_ACCEPT, **login_header(job.target_host, environ)}


def read_back(
    job: Job, digest: str, deadline: float, environ: Mapping[str, str], *, failed: str = ""
) -> tuple[bytes, str] | str:
    """The manifest `digest` of the target repository, its sha256 checked, and its Content-Type; or why not
    (`failed` leads the reason of an answer that is not 200). Transport errors pass up, as `_retried` raises them."""
    api, headers = _target(job, environ)
    status, answer, body = _retried(f"{api}/manifests/{digest}", "GET", headers, deadline, cap=MANIFEST_CAP)
    if status != 200:
        return f"{failed}reading {job.repository}@{digest} answered HTTP {status}"
    if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        return f"digest mismatch: {job.repository}@{digest} serves other bytes"
    return body, answer.get("Content-Type") or ""


def image_subjects(job: Job, deadline: float, environ: Mapping[str, str]) -> set[str] | None:
    """What an artifact of the job may refer to: its image, and each manifest its index lists, as the mirror's
    copy (just verified) lists them. None when it cannot be read."""
    try:
        held = read_back(job, job.digest, deadline, environ)
    except (OSError, http.client.HTTPException, ValueError):  # TimeoutError and UntrustedURLError among them
        return None
    if isinstance(held, str):
        return None
    return {job.digest, *(listed_digests(held[0]) or [])}


def in_mirror(job: Job, digest: str, deadline: float, environ: Mapping[str, str]) -> bool:
    """Whether the target repository holds `digest` (a HEAD; on any doubt, no)."""
    api, headers = _target(job, environ)
    try:
        status, answer, _ = _retried(f"{api}/manifests/{digest}", "HEAD", headers, deadline)
    except (OSError, http.client.HTTPException, ValueError):  # TimeoutError and UntrustedURLError among them
        return False
    return status == 200 and answer.get("Docker-Content-Digest", "").strip() == digest


def put_manifest(
    job: Job, reference: str, body: bytes, media_type: str, deadline: float, environ: Mapping[str, str]
) -> str | None:
    """Write `body` as the manifest `reference` of the target repository; None, or why not."""
    api, headers = _target(job, environ)
    try:
        status, _, _ = _retried(
            f"{api}/manifests/{reference}", "PUT", {**headers, "Content-Type": media_type}, deadline, body=body
        )
    except TimeoutError:
        return "writing a manifest: timeout"
    except (OSError, http.client.HTTPException, ValueError) as e:
        return f"writing a manifest: {type(e).__name__}"
    return None if status in (200, 201) else f"writing {job.repository}@{reference} answered HTTP {status}"


def list_referrer(job: Job, a: Artifact, deadline: float, environ: Mapping[str, str]) -> str | None:
    """Make the referrer `a`, pushed already, findable from its subject by the OCI fallback tag too: read back, it
    must name that subject; its descriptor is then added to the index under `sha256-<hex of the subject>`, read,
    extended and written back (distribution-spec v1.1, "Pushing Manifests with Subject"). A mirror with the
    referrers API (ECR) lists it there as well; the tag is what a client without that API reads, and it holds the
    referrer by a tag, as an index holds its platforms, so that an expiry of untagged images does not take it. An
    index there that cannot be read is never overwritten. None, or why not."""
    api, headers = _target(job, environ)
    fallback = digest_tag(a.subject)
    try:
        held = read_back(job, a.digest, deadline, environ)
        if isinstance(held, str):
            return held
        manifest, media_type = held
        described = json.loads(manifest)
        subject = described.get("subject") if isinstance(described, dict) else None
        if not isinstance(subject, dict) or subject.get("digest") != a.subject:
            return f"it does not refer to {a.subject} (its subject is another, or none)"
        descriptor: dict[str, object] = {
            "mediaType": described.get("mediaType") or media_type.split(";")[0].strip(),
            "digest": a.digest,
            "size": len(manifest),
        }
        config = described.get("config") if isinstance(described.get("config"), dict) else {}
        artifact_type = described.get("artifactType") or config.get("mediaType")
        if isinstance(artifact_type, str):
            descriptor["artifactType"] = artifact_type
        if isinstance(described.get("annotations"), dict):
            descriptor["annotations"] = described["annotations"]
        status, _, index = _retried(f"{api}/manifests/{fallback}", "GET", headers, deadline, cap=MANIFEST_CAP)
        if status not in (200, 404):
            return f"reading {job.repository}:{fallback} answered HTTP {status}: it is left as it is"
        listed = json.loads(index).get("manifests") if status == 200 else []
        if not isinstance(listed, list):
            return f"{job.repository}:{fallback} holds something else than an index of referrers"
        if any(isinstance(m, dict) and m.get("digest") == a.digest for m in listed):
            return None
        extended = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*listed, descriptor]}, separators=(",", ":")
        ).encode()
    except TimeoutError:
        return "listing the referrer: timeout"
    except (OSError, http.client.HTTPException, ValueError, AttributeError, RecursionError) as e:
        return f"listing the referrer: {type(e).__name__}"
    return put_manifest(job, fallback, extended, OCI_INDEX, deadline, environ)


def _exchange(
    url: str, method: str, headers: dict[str, str], deadline: float, *, body: bytes | None = None, cap: int = TOKEN_CAP
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request to where trust.parse_url says `url` goes, no redirect followed, the answer's body capped at `cap`
    bytes; the whole exchange (connect, headers, body) ends by `deadline`. http.client's timeout bounds each socket
    operation only (a server dripping a header byte every 0.3 s held it 50 s against a 10 s limit), so a watchdog
    shuts the socket down at the deadline. Raises TimeoutError when the deadline cut it (or no time was left),
    UntrustedURLError for a URL refused, else OSError or http.client.HTTPException."""
    where = parse_url(url)
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no time left")
    kind = http.client.HTTPSConnection if where.scheme == "https" else http.client.HTTPConnection
    connection = kind(where.host, where.port, timeout=left)
    cut = threading.Event()

    def cut_off() -> None:
        cut.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                # socket.socket's own shutdown, even for a TLS socket: it wakes a read blocked in another thread
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    watchdog = threading.Timer(left, cut_off)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.connect()
        if cut.is_set():  # the deadline fell while connecting, before the socket could be shut
            raise TimeoutError("the deadline passed")
        connection.request(method, where.target, body=body, headers=headers)
        response = connection.getresponse()
        data = b"" if method == "HEAD" else response.read(cap)
        if cut.is_set():
            raise TimeoutError("the deadline passed")
        return response.status, response.msg, data
    except (OSError, http.client.HTTPException) as e:
        if cut.is_set() and not isinstance(e, TimeoutError):
            raise TimeoutError("the deadline passed") from e
        raise
    finally:
        watchdog.cancel()
        connection.close()


def _retried(
    url: str, method: str, headers: dict[str, str], deadline: float, *, body: bytes | None = None, cap: int = TOKEN_CAP
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """_exchange, tried again (after 1 s, then 2 s, never past `deadline`) on a broken connection, 429 or 5xx: the
    requests are idempotent (a GET, a HEAD, a PUT of the same bytes). The third attempt's answer is the answer."""
    for attempt in range(2):
        try:
            answer = _exchange(url, method, headers, deadline, body=body, cap=cap)
            if answer[0] not in (429, 500, 502, 503, 504):
                return answer
        except TimeoutError:
            raise
        except (OSError, http.client.HTTPException):
            if time.monotonic() >= deadline:
                raise
        time.sleep(min(2.0**attempt, max(0.0, deadline - time.monotonic())))
    return _exchange(url, method, headers, deadline, body=body, cap=cap)


# -- Docker Hub's quota, read by the build for its own address or account ------------------------------------------


def _challenge(header: str) -> dict[str, str] | None:
    if not header.lower().startswith("bearer "):
        return None
    return {k.lower(): v for k, v in re.findall(r'([A-Za-z]+)="([^"]*)"', header[:4096])}


def remaining_pulls(
    endpoint: str, job: Job, credential: tuple[str, str] | None, token: str | None, deadline: float
) -> tuple[int | None, str | None]:
    """Docker Hub's `ratelimit-remaining` for this build (its address, or its account with a credential), read at
    Docker Hub's `endpoint` with a HEAD of the job's manifest, which is not a counted pull; and the bearer token that
    HEAD was let in with (to be handed back next time). The credential goes only to a realm the function's rule
    lets take it (trust.realm_takes_credentials). The figure is None when it cannot be read by `deadline` (the copy
    then goes ahead; an exhausted quota fails it with Docker Hub's own error) or when the registry sets no limit."""
    url = f"{endpoint}/v2/{job.source_path}/manifests/{job.digest}"
    headers = {"Accept": MANIFEST_ACCEPT}
    try:
        status, answer, _ = _exchange(url, "HEAD", {**headers, **_bearer(token)}, deadline)
        challenge = _challenge(answer.get("WWW-Authenticate", "")) if status == 401 else None
        token = None if status == 401 else token
        if challenge and challenge.get("realm"):
            trusted = realm_takes_credentials(endpoint, challenge["realm"])  # UntrustedURLError: refused outright
            query: dict[str, str] = {k: challenge[k] for k in ("service", "scope") if k in challenge}
            token_headers = {}
            if trusted and credential:
                token_headers["Authorization"] = "Basic " + b64encode(":".join(credential).encode()).decode()
            realm = challenge["realm"] + ("&" if "?" in challenge["realm"] else "?") + urlencode(query)
            code, _, body = _exchange(realm, "GET", token_headers, deadline)
            reply = json.loads(body) if code == 200 else {}
            found = reply.get("token") or reply.get("access_token") if isinstance(reply, dict) else None
            if not isinstance(found, str) or not found:
                return None, None
            token = found
            status, answer, _ = _exchange(url, "HEAD", {**headers, **_bearer(token)}, deadline)
    except (OSError, http.client.HTTPException, ValueError, RecursionError):  # UntrustedURLError is a ValueError
        return None, None
    match = re.match(r"\s*([0-9]{1,12})", answer.get("ratelimit-remaining") or "")
    return (int(match.group(1)) if match and status == 200 else None), token


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def hub_credential(environ: Mapping[str, str], endpoints: Mapping[str, str]) -> tuple[str, str] | None:
    """The build's Docker Hub login, for the quota check only: DOCKERHUB_USERNAME/_PASSWORD, else the
    REGISTRY_LOGIN_<n> whose host is Docker Hub's (by the function's rule: one of its names, or its endpoint)."""
    if environ.get("DOCKERHUB_USERNAME") and environ.get("DOCKERHUB_PASSWORD"):
        return environ["DOCKERHUB_USERNAME"], environ["DOCKERHUB_PASSWORD"]
    logins = registry_logins(environ)
    return next(((u, p) for _, host, u, p in logins if u and p and registry_of(host, endpoints) == DOCKER_HUB), None)


class Probe:
    """Reads the build's remaining Docker Hub pulls at Docker Hub's own endpoint (trust.endpoint_url, never an
    entry's host): a HEAD of a Docker Hub entry's manifest (the figure is the address's or the account's, whatever
    the repository). The manifest and token of the first check that was let in are kept for as long as the token is
    accepted, so a check costs one request; until one is, each entry's check reads its own manifest (one that never
    answers holds only its own entry)."""

    def __init__(self, environ: Mapping[str, str], endpoints: Mapping[str, str]) -> None:
        self._endpoint = endpoint_url(DOCKER_HUB, endpoints)
        self._credential = hub_credential(environ, endpoints)
        self._lock = threading.Lock()
        self._first: Job | None = None
        self._token: str | None = None

    def __call__(self, job: Job, deadline: float) -> int | None:
        with self._lock:
            first, token = (self._first, self._token) if self._first is not None else (job, None)
        ends = min(deadline, time.monotonic() + PROBE_SECONDS)
        figure, token = remaining_pulls(self._endpoint, first, self._credential, token, ends)
        with self._lock:
            self._first, self._token = (first, token) if token is not None else (None, None)
        return figure


class Quota:
    """Docker Hub's pulls, spent deliberately. A ledger starts from the build's own remaining figure less the
    reserve, and each admitted copy takes its estimate from it; every later check lowers the ledger to a fresh figure
    less the reserve (others sharing the address or account spend too) but never raises it (a fresh figure may not
    yet show what copies under way will spend). A copy whose estimate the ledger cannot cover is deferred."""

    def __init__(self, reserve: int, probe: Callable[[Job, float], int | None]) -> None:
        self.reserve = reserve
        self._probe = probe
        self._lock = threading.Lock()
        self._left: int | None = None  # unknown until a figure is read: then copies go ahead unchecked

    def admit(self, job: Job, deadline: float) -> str | None:
        """None when the copy may go ahead, else why it waits for the next run; the check ends by `deadline`."""
        if job.registry != DOCKER_HUB:
            return None
        remaining = self._probe(job, deadline)  # outside the lock: a figure read late only lowers the ledger
        with self._lock:
            if remaining is not None:
                fresh = remaining - self.reserve
                self._left = fresh if self._left is None else min(self._left, fresh)
            if self._left is None:
                return None
            if job.pulls > self._left:
                return (
                    f"{job.pulls} pulls needed, {max(self._left, 0)} left above the reserve of {self.reserve} "
                    "until the window resets"
                )
            self._left -= job.pulls
            return None


def registry_logins(environ: Mapping[str, str]) -> list[tuple[int, str, str, str]]:
    """(n, host, username, password) of each REGISTRY_LOGIN_<n>_HOST/_USERNAME/_PASSWORD, n from 1 up to the first
    gap (at most 100); CodeBuild resolves the secrets and masks them."""
    found = []
    for number in range(1, 101):
        host = environ.get(f"REGISTRY_LOGIN_{number}_HOST")
        if host is None:
            break
        username = environ.get(f"REGISTRY_LOGIN_{number}_USERNAME", "")
        found.append((number, host, username, environ.get(f"REGISTRY_LOGIN_{number}_PASSWORD", "")))
    return found


def log_in(environ: dict[str, str], timeout: int) -> list[str]:
    """`skopeo login` to each source registry handed over as REGISTRY_LOGIN_<n>_*, each to its own host only; the
    password goes on stdin, never on a command line or in a line printed. Returns one line per failed login (copies
    from that registry then fail on their own)."""
    problems = []
    for number, host, username, password in registry_logins(environ):
        if not re.fullmatch(HOST, host) or not username or not password:
            problems.append(f"FAILED: login {number}: a registry host, a username and a password are needed")
            continue
        problem = _skopeo_login(host, username, password.encode(), timeout)
        if problem:
            problems.append(problem)
    return problems


def log_in_to_ecr(registry: AccountRegistry, timeout: int) -> str | None:
    """In CodeBuild, `skopeo login` to this account's registry with a token from the build's role, done here (not in
    a buildspec phase) so that the token goes only to the host derived from CODEBUILD_BUILD_ARN. None, or why not."""
    if registry.region is None:
        return None
    token = run(["aws", "ecr", "get-login-password", "--region", registry.region], timeout)
    if token is None:
        return f"FAILED: login to {registry.host}: timeout after {timeout}s"
    if token.returncode != 0 or not token.stdout.strip():
        return f"FAILED: login to {registry.host}: " + last_line(token.stderr.decode(errors="replace"))
    return _skopeo_login(registry.host, "AWS", token.stdout.strip(), timeout)


def _skopeo_login(host: str, username: str, password: bytes, timeout: int) -> str | None:
    done = skopeo(
        ["login", f"--tls-verify={tls(host)}", "--username", username, "--password-stdin", host], timeout, password
    )
    if done is None:
        return f"FAILED: login to {host}: timeout after {timeout}s"
    if done.returncode != 0:
        return f"FAILED: login to {host}: " + last_line(done.stderr.decode(errors="replace"))
    return None


def setting(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = environ.get(name) or ""
    if not re.fullmatch(r"[0-9]{1,9}", value):  # ASCII digits only: int() takes "²" and " 1_0 " too
        return default
    return int(value) if low <= int(value) <= high else default


class Ledger:
    """The build's lines, printed as each entry ends (copies run concurrently), and its counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.copied = self.deferred = self.failed = self.pulls = self.artifacts = self.warnings = 0

    def line(self, text: str, *, copied: bool = False, deferred: bool = False, pulls: int = 0) -> None:
        with self._lock:
            self.copied += copied
            self.deferred += deferred
            self.failed += not (copied or deferred)
            self.pulls += pulls
            print(text, flush=True)

    def artifact(self, text: str, *, copied: bool, pulls: int = 0) -> None:
        """An artifact's line: copied, or a warning on its image (which stands)."""
        with self._lock:
            self.artifacts += copied
            self.warnings += not copied
            self.pulls += pulls
            print(text, flush=True)


def copy_all(
    jobs: list[Job],
    *,
    concurrency: int,
    timeout: int,
    quota: Quota,
    ledger: Ledger,
    workdir: str,
    environ: Mapping[str, str],
) -> None:
    """Every job, `concurrency` repositories at a time; the jobs of one repository one after another, in order."""
    by_repository: dict[str, list[Job]] = {}
    for job in jobs:
        by_repository.setdefault(job.repository, []).append(job)

    def one_repository(queue: list[Job]) -> None:
        # The copies, by (upstream digest, platforms kept: "" for all), that did not land in this build, and whether
        # each was deferred (else it failed): their re-tags follow them. `written`: the digest each one that landed
        # tagged (the index written of those platforms, or the manifest as it is).
        deferred_copy: dict[tuple[str, str], bool] = {}
        written: dict[tuple[str, str], str] = {}
        for job in queue:
            deadline = Deadline.start(timeout)  # the quota check, the copy and the tag: one entry's time
            copied = (job.digest, platform_list(job.platforms))  # what a re-tag of this job follows
            try:
                if job.retag and copied in deferred_copy:
                    deferred = deferred_copy[copied]
                    kind, what = ("DEFERRED", "was deferred") if deferred else ("FAILED", "failed")
                    ledger.line(f"{kind} {job.target}: a re-tag of {job.digest}, whose copy {what}", deferred=deferred)
                    continue
                # A re-tag fetches nothing upstream but its artifacts: the quota is read only for those.
                held_back = quota.admit(job, deadline.at) if job.pulls else None
                if held_back is not None:
                    if not job.retag:
                        deferred_copy[copied] = True
                    ledger.line(f"DEFERRED {job.target}: {held_back}", deferred=True)
                    continue
                if job.retag:  # in the repository already (of some platforms: the index written of them): no pull
                    held = written.get(copied) if job.platforms and not job.single else job.digest
                    if held is None:
                        reason: str | None = f"no index of {platform_list(job.platforms)} of {job.digest} written"
                    else:
                        reason, _ = tag(replace(job, digest=held), deadline.at, environ)
                    if reason:
                        ledger.line(f"FAILED {job.target}: {reason}")
                    else:
                        ledger.line(f"COPIED {job.repository}@{held} -> {job.target}", copied=True)
                        artifacts(job)
                    continue
                if job.platforms:
                    kept = copy_platforms(job, deadline, workdir, environ, more_pulls(job))
                    spent = kept.fetched if job.registry == DOCKER_HUB else 0
                    if kept.deferred:
                        deferred_copy[copied] = True
                        ledger.line(f"DEFERRED {job.target}: {kept.reason}", deferred=True, pulls=spent)
                    elif kept.reason:
                        deferred_copy.setdefault(copied, False)
                        ledger.line(f"FAILED {job.target}: {kept.reason}", pulls=spent)
                    else:
                        written[copied] = kept.made or job.digest  # a single manifest is tagged as it is
                        shown = f" ({platform_list(job.platforms)} of its index, as {kept.made})" if kept.made else ""
                        ledger.line(f"COPIED {job.source} -> {job.target}{shown}", copied=True, pulls=spent)
                        artifacts(job)
                    continue
                reason, manifests = copy(job, deadline, workdir, environ)
            except Exception as e:  # one entry's surprise is that entry's line, never the others'
                reason, manifests = f"internal error: {type(e).__name__}", 0
            if reason:
                deferred_copy.setdefault(copied, False)
                ledger.line(f"FAILED {job.target}: {reason}")
            else:
                spent = manifests if job.registry == DOCKER_HUB else 0
                ledger.line(f"COPIED {job.source} -> {job.target}", copied=True, pulls=spent)
                artifacts(job)

    def more_pulls(job: Job) -> Callable[[int], str | None]:
        """Admits `extra` pulls of the job's beyond its estimate through the quota, or says why not."""

        def admit(extra: int) -> str | None:
            return quota.admit(replace(job, pulls=extra), time.monotonic() + PROBE_SECONDS)

        return admit

    def artifacts(job: Job) -> None:
        for a, reason, fetched in copy_artifacts(job, timeout, workdir, environ, more_pulls(job)):
            spent = fetched if job.registry == DOCKER_HUB else 0
            if reason:
                line = f"WARNING {job.target}: {a.kind} {a.digest} not copied: {reason}"
                ledger.artifact(line, copied=False, pulls=spent)
            else:
                where = f"{job.repository}:{a.tag}" if a.tag else f"{job.repository}@{a.digest}"
                ledger.artifact(f"ARTIFACT {where} ({a.kind} of {a.subject})", copied=True, pulls=spent)

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(by_repository)))) as pool:
        list(pool.map(one_repository, by_repository.values()))


def main() -> int:
    environ = dict(os.environ)
    try:
        registry = account_registry(environ)
        endpoints = registry_endpoints(environ.get("REGISTRY_ENDPOINTS", ""))
    except ValueError as e:
        print(f"FAILED: {e}")
        return 1
    target = target_pattern(registry.host, environ.get("TARGET_PREFIX", ""), environ.get("UPSTREAM_PREFIXES", ""))
    if target is None:
        print("FAILED: TARGET_PREFIX (and UPSTREAM_PREFIXES) must name the mirror's prefixes")
        return 1
    timeout = setting(environ, "COPY_TIMEOUT_SECONDS", DEFAULT_TIMEOUT, 1, 86_400)
    concurrency = setting(environ, "COPY_CONCURRENCY", DEFAULT_CONCURRENCY, 1, MAX_CONCURRENCY)
    reserve = setting(environ, "DOCKERHUB_PULL_RESERVE", DEFAULT_RESERVE, 0, MAX_PULLS)
    try:
        entries = json.loads(environ.get("MIRROR_IMAGES", ""))
    except (ValueError, RecursionError):
        print("FAILED: MIRROR_IMAGES is not JSON")
        return 1
    if not isinstance(entries, list):
        print("FAILED: MIRROR_IMAGES is not a JSON array")
        return 1
    problem = log_in_to_ecr(registry, timeout)
    if problem:
        print(problem)
        return 1
    for problem in log_in(environ, timeout):
        print(problem, flush=True)
    ledger = Ledger()
    jobs = []
    for index, entry in enumerate(entries, 1):
        job, reason = check(index, entry, target, endpoints)
        if job is None:
            ledger.line(f"REFUSED entry {index}: {reason}")
        else:
            jobs.append(job)
    quota = Quota(reserve, Probe(environ, endpoints))
    with tempfile.TemporaryDirectory(prefix="mirror-copy-") as workdir:
        copy_all(
            jobs,
            concurrency=concurrency,
            timeout=timeout,
            quota=quota,
            ledger=ledger,
            workdir=workdir,
            environ=environ,
        )
    print(
        f"{ledger.copied} copied, {ledger.deferred} deferred, {ledger.failed} failed; {ledger.artifacts} artifacts "
        f"copied, {ledger.warnings} not; {ledger.pulls} Docker Hub pulls spent"
    )
    pulls_file = environ.get("MIRROR_PULLS_FILE")
    if pulls_file:
        try:
            with open(pulls_file, "w") as out:
                out.write(str(ledger.pulls))
        except OSError as e:
            print(f"FAILED: the pulls spent could not be written to {pulls_file}: {e.strerror}")
    return 1 if ledger.failed else 0


if __name__ == "__main__":
    sys.exit(main())

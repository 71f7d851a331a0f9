"""The copy CodeBuild runs (embedded in template.yaml's buildspec): each MIRROR_IMAGES entry copied with skopeo,
every platform and every digest kept, into this account's mirror only, the tag written only after its digest is
verified. Standard library only: the build image has python3, not this project's packages.

Nothing from the variable reaches a shell: it is parsed as JSON, each string is checked against strict patterns
(the target must be $ECR_REGISTRY/$TARGET_PREFIX/..., the source pinned by digest), and skopeo runs from an
argument list. One line per entry: COPIED, FAILED <target>: <reason>, DEFERRED <target>: <reason> or
REFUSED entry <n>: <reason>.

Copies run COPY_CONCURRENCY at a time, those into one repository one after another (a tag set's tags share
layers). Before each Docker Hub copy the build reads its own `ratelimit-remaining` with a HEAD of the source (not a
counted pull): a copy whose estimated pulls do not fit above DOCKERHUB_PULL_RESERVE is deferred, not failed, and the
next run copies it. The Docker Hub pulls spent (one per manifest copied) go to MIRROR_PULLS_FILE for the buildspec
to export.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from base64 import b64encode
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

HOST = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]{1,5})?"
)
PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
DIGEST = r"sha256:[a-f0-9]{64}"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
SOURCE = re.compile(rf"({HOST})/({PATH})@({DIGEST})")
LOOPBACK = re.compile(r"(?:127(?:\.[0-9]{1,3}){3}|localhost|\[::1\])(?::[0-9]{1,5})?")
MAX_LENGTH = 512
FIELDS = {"source", "target", "digest", "registry", "pulls"}
#: seconds one skopeo run may take before that entry fails with "timeout" (the next entries still run)
DEFAULT_TIMEOUT = 900
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 16
MAX_PULLS = 100_000
DEFAULT_RESERVE = 10
DOCKER_HUB = "docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
DOCKER_HUB_AUTH = "auth.docker.io"
MANIFEST_ACCEPT = (
    "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
)
#: the rate-limit check: seconds for its whole exchange, and the most of a token answer it reads
PROBE_SECONDS = 10.0
TOKEN_CAP = 65536
#: registries refuse manifests over 4 MiB
MANIFEST_CAP = 4 * 2**20


@dataclass(frozen=True)
class Job:
    """One checked entry: the source (its host and repository path), the target (its host and repository), the
    digest, the source's registry as users name it, and the Docker Hub pulls the function estimated."""

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
    return "false" if LOOPBACK.fullmatch(host) else "true"


def base_url(host: str) -> str:
    """The registry API's base for `host` (host[:port]): plain http only on loopback, as tls() decides."""
    return f"{'http' if tls(host) == 'false' else 'https'}://{host}"


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "no output"
    return re.sub(r'^time="[^"]*" level=\w+ msg=', "", line)[:300]


def check(index: int, entry: object, target: re.Pattern[str]) -> tuple[Job | None, str | None]:
    """The entry as a Job, or None and the reason it is refused."""
    if not isinstance(entry, dict) or set(entry) != FIELDS:
        return None, "entry must be an object with exactly source, target, digest, registry and pulls"
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
    if type(pulls) is not int or not 0 <= pulls <= MAX_PULLS:
        return None, f"pulls is not a whole number from 0 to {MAX_PULLS}"
    host, path = s.group(1), s.group(2)
    repository = f"{t.group(1)}/{t.group(2)}"
    return Job(
        index, source, host, path, wanted, t.group(1), repository, t.group(3), digest, registry.lower(), pulls
    ), None


def skopeo(args: list[str], timeout: int, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes] | None:
    """skopeo's result, or None when it ran out of time."""
    try:
        # An argument list, no shell; every value in it was checked first. skopeo comes from the build image's PATH.
        return subprocess.run(  # noqa: S603
            ["skopeo", *args],  # noqa: S607
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None


def copy(job: Job, timeout: int, workdir: str, environ: Mapping[str, str]) -> tuple[str | None, int]:
    """Push every platform by digest (skopeo's --digestfile says what it wrote): no tag moves yet. Then write the
    tag and verify it (tag()). Returns (None, the manifests copied) on success, else (the reason, 0)."""
    digest_file = os.path.join(workdir, f"digest-{job.number}")
    tls_flags = [f"--src-tls-verify={tls(job.source_host)}", f"--dest-tls-verify={tls(job.target_host)}"]
    flags = ["copy", "--all", "--preserve-digests", "--retry-times", "3", "--quiet", "--digestfile", digest_file]
    run = skopeo([*flags, *tls_flags, f"docker://{job.source}", f"docker://{job.repository}@{job.digest}"], timeout)
    if run is None:
        return f"timeout after {timeout}s", 0
    if run.returncode != 0:
        return "copy failed: " + last_line(run.stderr.decode(errors="replace")), 0
    try:
        with open(digest_file) as f:
            pushed = f.read(100).strip()
    except OSError:
        pushed = "nothing"
    if pushed != job.digest:
        return f"digest mismatch: {job.repository}@{job.digest} was written as {pushed[:80]}", 0
    return tag(job, time.monotonic() + timeout, environ)


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
    tag. Returns (None, the manifests the copy fetched: the index and each of its manifests, or one), or (reason, 0).
    """
    base = base_url(job.target_host)
    path = job.repository.split("/", 1)[1]
    headers = {"Accept": MANIFEST_ACCEPT, **login_header(job.target_host, environ)}
    try:
        status, answer, body = _retried(
            f"{base}/v2/{path}/manifests/{job.digest}", "GET", headers, deadline, cap=MANIFEST_CAP
        )
        if status != 200:
            return f"tag failed: reading {job.repository}@{job.digest} answered HTTP {status}", 0
        if "sha256:" + hashlib.sha256(body).hexdigest() != job.digest:
            return f"digest mismatch: {job.repository}@{job.digest} serves other bytes", 0
        media_type = answer.get("Content-Type") or ""
        put = {**headers, "Content-Type": media_type}
        status, _, _ = _retried(f"{base}/v2/{path}/manifests/{job.tag}", "PUT", put, deadline, body=body)
        if status not in (200, 201):
            return f"tag failed: writing {job.target} answered HTTP {status}", 0
        status, answer, _ = _retried(f"{base}/v2/{path}/manifests/{job.tag}", "HEAD", headers, deadline)
    except TimeoutError:
        return "tag failed: timeout", 0
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


# -- Docker Hub's quota, read by the build for its own address or account ------------------------------------------


def _read(response: http.client.HTTPResponse, cap: int, deadline: float) -> bytes:
    """At most `cap` bytes of a body, never past `deadline` (a server dripping bytes does not hold the build)."""
    data = b""
    while len(data) < cap and time.monotonic() < deadline:
        chunk = response.read1(min(4096, cap - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _exchange(
    url: str, method: str, headers: dict[str, str], deadline: float, *, body: bytes | None = None, cap: int = TOKEN_CAP
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, no redirect followed, the answer's body capped at `cap` bytes and read no later than `deadline`;
    raises OSError (TimeoutError when no time is left) or http.client.HTTPException."""
    parts = urlsplit(url)
    left = deadline - time.monotonic()
    if left <= 0 or not parts.hostname:
        raise TimeoutError("no time left")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=min(left, PROBE_SECONDS))
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        data = b"" if method == "HEAD" else _read(response, cap, deadline)
        return response.status, response.msg, data
    finally:
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


def _challenge(header: str) -> dict[str, str] | None:
    if not header.lower().startswith("bearer "):
        return None
    return {k.lower(): v for k, v in re.findall(r'([A-Za-z]+)="([^"]*)"', header[:4096])}


def _loopback_name(name: str) -> bool:
    """LOOPBACK, for a host name as urlsplit gives it (no port, an IPv6 address without its brackets)."""
    return LOOPBACK.fullmatch(f"[{name}]" if ":" in name else name) is not None


def _realm_takes_credentials(endpoint_host: str, realm: str) -> bool | None:
    """As the function's rule: None for a realm refused outright, else whether it may receive the credential."""
    parts = urlsplit(realm)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    loopback, realm_loopback = _loopback_name(endpoint_host), _loopback_name(parts.hostname)
    if (parts.scheme == "http" and not (loopback and realm_loopback)) or (realm_loopback and not loopback):
        return None
    return parts.hostname == endpoint_host or (
        endpoint_host == DOCKER_HUB_REGISTRY and parts.hostname == DOCKER_HUB_AUTH
    )


def remaining_pulls(
    job: Job, credential: tuple[str, str] | None, token: str | None = None
) -> tuple[int | None, str | None]:
    """Docker Hub's `ratelimit-remaining` for this build (its address, or its account with a credential), read with
    a HEAD of the source's manifest, which is not a counted pull; and the bearer token that HEAD was let in with (to
    be handed back next time). The figure is None when it cannot be read (the copy then goes ahead; an exhausted
    quota fails it with Docker Hub's own error) or when the registry sets no limit."""
    base = base_url(DOCKER_HUB_REGISTRY if job.source_host == DOCKER_HUB else job.source_host)
    url = f"{base}/v2/{job.source_path}/manifests/{job.digest}"
    deadline = time.monotonic() + PROBE_SECONDS
    headers = {"Accept": MANIFEST_ACCEPT}
    try:
        status, answer, _ = _exchange(url, "HEAD", {**headers, **_bearer(token)}, deadline)
        challenge = _challenge(answer.get("WWW-Authenticate", "")) if status == 401 else None
        token = None if status == 401 else token
        if challenge and challenge.get("realm"):
            trusted = _realm_takes_credentials(urlsplit(base).hostname or "", challenge["realm"])
            if trusted is None:
                return None, None
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
    except (OSError, http.client.HTTPException, ValueError, RecursionError):
        return None, None
    match = re.match(r"\s*([0-9]{1,12})", answer.get("ratelimit-remaining") or "")
    return (int(match.group(1)) if match and status == 200 else None), token


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class Probe:
    """Reads the build's remaining Docker Hub pulls: a HEAD of one source manifest per registry host (the first
    Docker Hub entry's; the figure is the address's or the account's, whatever the repository), its token kept for
    as long as it is accepted, so a check costs one request."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._lock = threading.Lock()
        self._targets: dict[str, Job] = {}
        self._tokens: dict[str, str | None] = {}

    def __call__(self, job: Job) -> int | None:
        with self._lock:
            target = self._targets.setdefault(job.source_host, job)
            token = self._tokens.get(job.source_host)
        figure, token = remaining_pulls(target, credential_for(target, self._environ), token)
        with self._lock:
            self._tokens[job.source_host] = token
        return figure


class Quota:
    """Docker Hub's pulls, spent deliberately. A ledger starts from the build's own remaining figure less the
    reserve, and each admitted copy takes its estimate from it; every later check lowers the ledger to a fresh figure
    less the reserve (others sharing the address or account spend too) but never raises it (a fresh figure may not
    yet show what copies under way will spend). A copy whose estimate the ledger cannot cover is deferred."""

    def __init__(self, reserve: int, probe: Callable[[Job], int | None]) -> None:
        self.reserve = reserve
        self._probe = probe
        self._lock = threading.Lock()
        self._left: int | None = None  # unknown until a figure is read: then copies go ahead unchecked

    def admit(self, job: Job) -> str | None:
        """None when the copy may go ahead, else why it waits for the next run."""
        if job.registry != DOCKER_HUB:
            return None
        remaining = self._probe(job)  # outside the lock: a figure read late only lowers the ledger
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


def credential_for(job: Job, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The build's login for the source's registry: DOCKERHUB_USERNAME/_PASSWORD for Docker Hub, else the
    REGISTRY_LOGIN_<n> whose host is the source's."""
    if job.registry == DOCKER_HUB and environ.get("DOCKERHUB_USERNAME") and environ.get("DOCKERHUB_PASSWORD"):
        return environ["DOCKERHUB_USERNAME"], environ["DOCKERHUB_PASSWORD"]
    return next(((u, p) for _, host, u, p in registry_logins(environ) if host == job.source_host), None)


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
    """`skopeo login` to each source registry handed over as REGISTRY_LOGIN_<n>_*; the password goes on stdin, never
    on a command line or in a line printed. Returns one line per failed login (copies from that registry then fail
    on their own)."""
    problems = []
    for number, host, username, password in registry_logins(environ):
        if not re.fullmatch(HOST, host) or not username or not password:
            problems.append(f"FAILED: login {number}: a registry host, a username and a password are needed")
            continue
        login = ["login", f"--tls-verify={tls(host)}", "--username", username, "--password-stdin", host]
        run = skopeo(login, timeout, stdin=password.encode())
        if run is None:
            problems.append(f"FAILED: login to {host}: timeout after {timeout}s")
        elif run.returncode != 0:
            problems.append(f"FAILED: login to {host}: " + last_line(run.stderr.decode(errors="replace")))
    return problems


def setting(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(environ.get(name) or default)
    except ValueError:
        return default
    return value if low <= value <= high else default


class Ledger:
    """The build's lines, printed as each entry ends (copies run concurrently), and its counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.copied = self.deferred = self.failed = self.pulls = 0

    def line(self, text: str, *, copied: bool = False, deferred: bool = False, pulls: int = 0) -> None:
        with self._lock:
            self.copied += copied
            self.deferred += deferred
            self.failed += not (copied or deferred)
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
        for job in queue:
            try:
                why = quota.admit(job)
                if why is not None:
                    ledger.line(f"DEFERRED {job.target}: {why}", deferred=True)
                    continue
                reason, manifests = copy(job, timeout, workdir, environ)
            except Exception as e:  # one entry's surprise is that entry's line, never the others'
                reason, manifests = f"internal error: {type(e).__name__}", 0
            if reason:
                ledger.line(f"FAILED {job.target}: {reason}")
            else:
                spent = manifests if job.registry == DOCKER_HUB else 0
                ledger.line(f"COPIED {job.source} -> {job.target}", copied=True, pulls=spent)

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(by_repository)))) as pool:
        list(pool.map(one_repository, by_repository.values()))


def main() -> int:
    environ = dict(os.environ)
    target = target_pattern(
        environ.get("ECR_REGISTRY", ""), environ.get("TARGET_PREFIX", ""), environ.get("UPSTREAM_PREFIXES", "")
    )
    if target is None:
        print(
            "FAILED: ECR_REGISTRY and TARGET_PREFIX (and UPSTREAM_PREFIXES) must name this account's registry and "
            "the mirror's prefixes"
        )
        return 1
    timeout = setting(environ, "COPY_TIMEOUT_SECONDS", DEFAULT_TIMEOUT, 1, 86_400)
    concurrency = setting(environ, "COPY_CONCURRENCY", DEFAULT_CONCURRENCY, 1, MAX_CONCURRENCY)
    reserve = setting(environ, "DOCKERHUB_PULL_RESERVE", DEFAULT_RESERVE, 0, MAX_PULLS)
    try:
        entries = json.loads(environ.get("MIRROR_IMAGES", ""))
    except ValueError:
        print("FAILED: MIRROR_IMAGES is not JSON")
        return 1
    if not isinstance(entries, list):
        print("FAILED: MIRROR_IMAGES is not a JSON array")
        return 1
    for problem in log_in(environ, timeout):
        print(problem, flush=True)
    ledger = Ledger()
    jobs = []
    for index, entry in enumerate(entries, 1):
        job, reason = check(index, entry, target)
        if job is None:
            ledger.line(f"REFUSED entry {index}: {reason}")
        else:
            jobs.append(job)
    quota = Quota(reserve, Probe(environ))
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
        f"{ledger.copied} copied, {ledger.deferred} deferred, {ledger.failed} failed; "
        f"{ledger.pulls} Docker Hub pulls spent"
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

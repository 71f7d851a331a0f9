"""The copy CodeBuild runs (embedded in template.yaml's buildspec): each MIRROR_IMAGES entry copied with skopeo,
every platform and every digest kept, into this account's mirror only, the tag written only after its digest is
verified. Standard library only: the build image has python3, not this project's packages.

Nothing from the variable reaches a shell: it is parsed as JSON, each string is checked against strict patterns
(the target must be $ECR_REGISTRY/$TARGET_PREFIX/..., the source pinned by digest), and skopeo runs from an
argument list. One line per entry: COPIED, FAILED <target>: <reason> or REFUSED entry <n>: <reason>.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

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
#: what check() hands copy(): source, its host, target, its host, the target repository, the digest
Checked = tuple[str, str, str, str, str, str]
#: seconds one skopeo run may take before that entry fails with "timeout" (the next entries still run)
DEFAULT_TIMEOUT = 900


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


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else "no output"
    return re.sub(r'^time="[^"]*" level=\w+ msg=', "", line)[:300]


def check(index: int, entry: object, target: re.Pattern[str]) -> tuple[Checked | None, str | None]:
    """(source, source host, target, target host, target repository, digest), or None and the reason."""
    if not isinstance(entry, dict) or set(entry) != {"source", "target", "digest"}:
        return None, "entry must be an object with exactly source, target and digest"
    if not all(isinstance(entry[k], str) and len(entry[k]) <= MAX_LENGTH for k in entry):
        return None, "source, target and digest must be strings of at most 512 characters"
    source, wanted, digest = entry["source"], entry["target"], entry["digest"]
    s, t = SOURCE.fullmatch(source), target.fullmatch(wanted)
    if not s:
        return None, "source is not <registry>/<repository>@sha256:<digest> (a source must be pinned by digest)"
    if not t:
        return None, "target is not <this account's registry>/<the mirror's prefix>/<repository>:<tag>"
    if not re.fullmatch(DIGEST, digest) or s.group(3) != digest:
        return None, "digest is not the digest the source is pinned to"
    return (source, s.group(1), wanted, t.group(1), f"{t.group(1)}/{t.group(2)}", digest), None


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


def written_digest(reference: str, host: str, timeout: int) -> tuple[str | None, str | None]:
    """The sha256 of the manifest `reference` names, as the registry serves it; or (None, reason)."""
    raw = skopeo(["inspect", "--raw", f"--tls-verify={tls(host)}", f"docker://{reference}"], timeout)
    if raw is None:
        return None, f"timeout after {timeout}s"
    if raw.returncode != 0:
        return None, "verify failed: " + last_line(raw.stderr.decode(errors="replace"))
    return "sha256:" + hashlib.sha256(raw.stdout).hexdigest(), None


def copy(
    source: str, source_host: str, target: str, target_host: str, repository: str, digest: str, timeout: int
) -> str | None:
    """Push by digest, verify the digest written, and only then write the tag; None on success, else the reason."""
    flags = ["copy", "--all", "--preserve-digests", "--retry-times", "3", "--quiet"]
    by_digest = f"{repository}@{digest}"
    steps = (
        (source, source_host, by_digest),  # every platform, untagged: no tag moves yet
        (by_digest, target_host, target),  # the tag, from what was just verified, within this registry
    )
    for number, (origin, origin_host, destination) in enumerate(steps):
        tls_flags = [f"--src-tls-verify={tls(origin_host)}", f"--dest-tls-verify={tls(target_host)}"]
        run = skopeo([*flags, *tls_flags, f"docker://{origin}", f"docker://{destination}"], timeout)
        if run is None:
            return f"timeout after {timeout}s"
        if run.returncode != 0:
            return ("copy failed: " if number == 0 else "tag failed: ") + last_line(run.stderr.decode(errors="replace"))
        written, reason = written_digest(destination, target_host, timeout)
        if reason:
            return reason
        if written != digest:
            return f"digest mismatch: {destination} has {written}, expected {digest}"
    return None


def log_in(environ: dict[str, str], timeout: int) -> list[str]:
    """`skopeo login` to each source registry handed over as REGISTRY_LOGIN_<n>_HOST/_USERNAME/_PASSWORD (CodeBuild
    resolves the secret and masks it); the password goes on stdin, never on a command line or in a line printed.
    Returns one line per failed login (copies from that registry then fail on their own)."""
    problems = []
    for number in range(1, 101):
        host = environ.get(f"REGISTRY_LOGIN_{number}_HOST")
        if host is None:
            break
        username = environ.get(f"REGISTRY_LOGIN_{number}_USERNAME", "")
        password = environ.get(f"REGISTRY_LOGIN_{number}_PASSWORD", "")
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


def main() -> int:
    target = target_pattern(
        os.environ.get("ECR_REGISTRY", ""), os.environ.get("TARGET_PREFIX", ""), os.environ.get("UPSTREAM_PREFIXES", "")
    )
    if target is None:
        print(
            "FAILED: ECR_REGISTRY and TARGET_PREFIX (and UPSTREAM_PREFIXES) must name this account's registry and "
            "the mirror's prefixes"
        )
        return 1
    try:
        timeout = int(os.environ.get("COPY_TIMEOUT_SECONDS") or DEFAULT_TIMEOUT)
    except ValueError:
        timeout = DEFAULT_TIMEOUT
    try:
        entries = json.loads(os.environ.get("MIRROR_IMAGES", ""))
    except ValueError:
        print("FAILED: MIRROR_IMAGES is not JSON")
        return 1
    if not isinstance(entries, list):
        print("FAILED: MIRROR_IMAGES is not a JSON array")
        return 1
    for problem in log_in(dict(os.environ), timeout):
        print(problem, flush=True)
    failed = 0
    for index, entry in enumerate(entries, 1):
        checked, reason = check(index, entry, target)
        if checked is None:
            failed += 1
            print(f"REFUSED entry {index}: {reason}", flush=True)
            continue
        reason = copy(*checked, timeout)
        if reason:
            failed += 1
            print(f"FAILED {checked[2]}: {reason}", flush=True)
        else:
            print(f"COPIED {checked[0]} -> {checked[2]}", flush=True)
    print(f"{len(entries) - failed} copied, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

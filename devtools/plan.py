"""Try a list before deploying it: `make plan LIST=my-images.yaml`.

Runs the function's own stages (`mirror.stages`) on this machine: the list is read and validated, tag sets are
listed on the real registries and their rules applied, every image is checked (HEADs: no Docker Hub pull), and the
plan and its admission are decided as the function decides them. Registry credentials come from the Docker config
(`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`: its `auths`; credential helpers are not run). With AWS
credentials the targets are checked in this account's ECR (and, as a dry run does, which upstream each target
repository belongs to: reads only); without them only the sources are, and every target reads as missing.

It prints the table `make sandbox` prints, what each tag set selected and why the rest was left out, what would be
copied, and why anything failed. It starts no build and writes nothing: no repository is created or tagged.

    python -m devtools.plan LIST [--region R] [--prefix mirror] [--sources docker.io,ghcr.io,...]

LIST is a file (or `s3://bucket/key`, `ssm:/name`, read with the AWS credentials). Settings are the function's
(`Settings.from_env`): from the environment (REGISTRY_ENDPOINTS, UPSTREAM_PREFIXES, MAX_CONCURRENCY, ...), which
the flags override. Exit status: 0 when the plan was made (images that failed show as failed), 2 when the list or
a setting cannot be used.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, NoRegionError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lambda"))

from devtools.sandbox import table  # noqa: E402
from mirror import report as reports  # noqa: E402
from mirror.budget import FUNCTION_TIMEOUT_MAX_SECONDS, Budget  # noqa: E402
from mirror.ecr import EcrError, aws_error, registry_auth  # noqa: E402
from mirror.imagelist import Entry, ImageListError  # noqa: E402
from mirror.planning import Outcome, Plan, Status, admit  # noqa: E402
from mirror.references import DOCKER_HUB  # noqa: E402
from mirror.registry import Credential, ManifestHead, NotFoundError, RegistryClient  # noqa: E402
from mirror.settings import ConfigurationError, Settings  # noqa: E402
from mirror.stages import Aws, check_list, claim_repositories, load_entries, registry_client  # noqa: E402
from mirror.tagsets import Selection  # noqa: E402
from mirror.trust import DOCKER_HUB_HOSTS  # noqa: E402

#: what the function's settings need that a laptop has no use for (the plan starts no build)
DEFAULTS = {"CODEBUILD_PROJECT": "ecr-mirror-plan", "TARGET_PREFIX": "mirror"}
#: the ECR host named when no ECR is asked: no request goes to it, every target reads as missing
NO_ECR = "<ecr>"
#: Docker config hosts that mean Docker Hub (`docker login` writes `https://index.docker.io/v1/`)
DOCKER_HUB_KEYS = DOCKER_HUB_HOSTS | {"registry.hub.docker.com"}
#: selected tags named per tag set; the table lists every one
SHOWN_TAGS = 30
#: left-out tags named per reason
SHOWN_LEFT_OUT = 3

log = logging.getLogger("devtools.plan")


def _session(region: str | None) -> Any:
    return boto3.session.Session(region_name=region)


#: where AWS clients come from (region -> session); tests swap in moto's
session_factory: Callable[[str | None], Any] = _session


@dataclass(frozen=True)
class DockerLogins:
    """The registry credentials of a Docker config, by the host it names them under (docker.io for Docker Hub)."""

    path: Path | None
    credentials: Mapping[str, Credential]
    notes: tuple[str, ...] = ()


def _config_host(key: str) -> str:
    """`https://index.docker.io/v1/` -> docker.io; `https://ghcr.io` -> ghcr.io; `127.0.0.1:5000` as it is."""
    host = key.strip().lower()
    host = urlsplit(host).netloc if "://" in host else host.split("/", 1)[0]
    return DOCKER_HUB if host in DOCKER_HUB_KEYS else host


def _login(value: object) -> Credential | None:
    """An `auths` value's credential: `auth` (base64 of user:password), else `username` and `password`."""
    if not isinstance(value, dict):
        return None
    auth = value.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return Credential(user, password) if sep and user and password else None
    name, secret = value.get("username"), value.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name and secret:
        return Credential(name, secret)
    return None


def docker_logins(env: Mapping[str, str]) -> DockerLogins:
    """The `auths` of `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; nothing when there is none.
    Credential stores and helpers are not run (one note says so); no secret is ever part of a note."""
    directory = env.get("DOCKER_CONFIG", "").strip()
    path = Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"
    if not path.is_file():
        return DockerLogins(None, {})
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return DockerLogins(path, {}, (f"{path} is not readable JSON: every registry is asked anonymously",))
    if not isinstance(config, dict):
        return DockerLogins(path, {}, (f"{path} is not a JSON object: every registry is asked anonymously",))
    auths = config.get("auths")
    found: dict[str, Credential] = {}
    for key, value in (auths if isinstance(auths, dict) else {}).items():
        credential = _login(value)
        if isinstance(key, str) and credential is not None:
            found.setdefault(_config_host(key), credential)
    notes = []
    if config.get("credsStore") or config.get("credHelpers"):
        notes.append(
            f"{path}: credsStore/credHelpers are not read (no credential helper is run); the registries whose "
            "logins they keep are asked anonymously"
        )
    return DockerLogins(path, found, tuple(notes))


def registry_logins(logins: DockerLogins, settings: Settings) -> dict[str, Credential]:
    """Each source registry's credential: the login for the endpoint it is reached at (REGISTRY_ENDPOINTS), else
    the login for its name."""
    found: dict[str, Credential] = {}
    for registry in sorted(settings.source_registries):
        endpoint = settings.registry_endpoints.get(registry)
        netloc = urlsplit(endpoint).netloc.lower() if endpoint else None
        credential = (logins.credentials.get(netloc) if netloc else None) or logins.credentials.get(registry)
        if credential is not None:
            found[registry] = credential
    return found


class SourcesOnly(RegistryClient):
    """The registry client when no ECR is asked: a target's HEAD answers "not found" without a request, so every
    target reads as missing and every check is the function's own."""

    def manifest_head(self, host: str, repository: str, reference: str) -> ManifestHead:
        if host == NO_ECR:
            raise NotFoundError(f"{host}/{repository}:{reference}: targets not checked")
        return super().manifest_head(host, repository, reference)


@dataclass(frozen=True)
class Ecr:
    """This account's ECR as the plan reaches it: its host and credential, or why targets are not checked."""

    host: str
    credential: Credential | None
    client: Any
    why_not: str | None = None


def connect_ecr(session: Any) -> Ecr:
    """ECR's registry host and credential (GetAuthorizationToken: a read) with AWS credentials; else no ECR."""
    try:
        if session.get_credentials() is None:
            return Ecr(NO_ECR, None, None, "no AWS credentials: targets not checked")
        client = session.client(
            "ecr", config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)
        )
        host, credential = registry_auth(client)
    except NoRegionError:
        return Ecr(NO_ECR, None, None, "no AWS region (--region or AWS_DEFAULT_REGION): targets not checked")
    except BotoCoreError as e:
        return Ecr(NO_ECR, None, None, f"ECR not reachable ({aws_error(e)}): targets not checked")
    except EcrError as e:
        return Ecr(NO_ECR, None, None, f"{e}: targets not checked")
    return Ecr(host, credential, client)


@dataclass(frozen=True)
class Planned:
    """A plan: the list's entries (tag sets unexpanded), each tag set's selection (or why it has none), the
    expanded entries, the plan and what admission made of its copies, and the report records."""

    source: str
    ecr: Ecr
    logins: DockerLogins
    credentialed: tuple[str, ...]
    entries: Sequence[Entry]
    selections: Mapping[int, Selection | str]
    expanded: Sequence[Entry]
    result: Plan
    outcomes: Mapping[int, Outcome]
    report: dict[str, Any]
    requests: int


def environment(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The function's settings as the plan reads them: laptop defaults, the environment, then the flags."""
    merged = {**DEFAULTS, **(os.environ if env is None else env)}
    spec = args.list if "://" in args.list or args.list.startswith("ssm:") else str(Path(args.list).resolve())
    merged["IMAGE_LIST"] = spec
    if args.prefix is not None:
        merged["TARGET_PREFIX"] = args.prefix
    if args.sources is not None:
        merged["SOURCE_REGISTRIES"] = args.sources
    return merged


def make(env: Mapping[str, str], session: Any) -> Planned:
    """The plan of the list IMAGE_LIST names, with the settings `env` holds; raises ConfigurationError or
    ImageListError when they cannot be used. Reads only: no build is started, no repository created or tagged."""
    settings = Settings.from_env(env)
    ecr = connect_ecr(session)
    # No CodeBuild client at all: nothing here can start a build. S3 only to read a list kept there.
    aws = Aws(
        ecr=ecr.client, codebuild=None, s3=session.client("s3") if settings.image_list.startswith("s3://") else None
    )
    started, started_at = time.monotonic(), datetime.now(UTC)
    loaded = load_entries(None, settings, aws, Path.cwd(), ecr.host if ecr.client is not None else None)
    logins = docker_logins(env)
    credentials = registry_logins(logins, settings)
    credentialed = tuple(sorted(credentials))
    if ecr.credential is not None:
        credentials[ecr.host] = ecr.credential

    # As long as the longest function run: the budget then gives the listings and the checks their shares of it.
    def remaining() -> float:
        return FUNCTION_TIMEOUT_MAX_SECONDS - (time.monotonic() - started)

    budget = Budget(remaining, len(loaded.entries), settings.images_per_build, dry_run=True)
    client = registry_client(settings, credentials, budget, RegistryClient if ecr.client is not None else SourcesOnly)
    try:
        checked = check_list(loaded, client, ecr.host, settings, budget, log)  # the function's own stages
        rate_limits = client.rate_limits()
        requests = client.requests_sent
    finally:
        client.close()
    entries, result = checked.entries, checked.plan
    outcomes: dict[int, Outcome] = {}
    if result.copies:
        # Which upstream each target repository belongs to, as a dry run reads it; nothing is created or tagged.
        refused: dict[str, Outcome] = {}
        if ecr.client is not None:
            refused = claim_repositories(result.copies, aws, ecr.host, budget, log, dry_run=True)
        outcomes, _ = admit(
            result.copies,
            {},  # no build in flight: the plan starts none
            pulls_left=None,
            reserve=settings.dockerhub_pull_reserve,
            refused=refused,
        )
    images = reports.records(entries, result, outcomes, ecr.host)
    # The function's report, as its dry run assembles it (no build started, no previous run read).
    report = reports.assemble(
        "plan",
        True,
        started_at,
        images,
        builds=0,
        tag_sets=checked.tag_sets,
        rate_limits=rate_limits,
        previous=None,
    )
    return Planned(
        settings.image_list,
        ecr,
        logins,
        credentialed,
        loaded.entries,
        checked.selections,
        entries,
        result,
        outcomes,
        report,
        requests,
    )


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _named(tags: Sequence[str], limit: int) -> str:
    shown = ", ".join(tags[:limit])
    return shown if len(tags) <= limit else f"{shown}, ... ({len(tags) - limit} more)"


def tag_set_lines(planned: Planned) -> list[str]:
    """Per tag set: its rule, what it selected, and each reason the rest was left out (a count and examples)."""
    lines: list[str] = []
    for entry in planned.entries:
        if entry.tag_set is None:
            continue
        lines.append(entry.tag_set.description)
        selection = planned.selections.get(entry.index, "tags not listed")
        if isinstance(selection, str):
            lines.append(f"  not listed: {selection}")
            continue
        lines.append(f"  selected: {_named(selection.tags, SHOWN_TAGS) if selection.tags else 'none'}")
        for reason, tags in selection.left_out.items():
            examples = ", ".join(tags[:SHOWN_LEFT_OUT])
            lines.append(
                f"  left out: {reason}: {len(tags)} ({'e.g. ' if len(tags) > SHOWN_LEFT_OUT else ''}{examples})"
            )
    return lines


def copy_lines(planned: Planned) -> list[str]:
    """What a run would copy now: each copy's target and what it costs (a re-tag from ECR costs no pull)."""
    lines = []
    for decision, image in zip(planned.result.decisions, planned.report["images"], strict=True):
        if image["status"] not in (Status.MISSING, Status.CHANGED):
            continue
        after = decision.copy.after if decision.copy is not None else None
        if after is not None:  # entries are numbered by their place in the expanded list
            cost = f"a re-tag after the copy to {planned.expanded[after].target} (the same digest: no pull)"
        elif image.get("retag"):
            cost = "a re-tag from the digest the repository holds (no pull)"
        elif "pulls" in image:
            cost = f"about {_count(image['pulls'], 'Docker Hub pull', 'Docker Hub pulls')}"
        else:
            cost = "a copy"
        if image.get("platforms"):
            cost += f", {', '.join(image['platforms'])} only"
        lines.append(f"  {image['source']} -> {image['target'].split('/', 1)[1]}: {cost}")  # the header names ECR
    return lines


def problem_lines(planned: Planned) -> list[str]:
    return [
        f"  {image['status']}: {image['source']}: {image['error']}"
        for image in planned.report["images"]
        if image["error"] and image["status"] in (Status.FAILED, Status.INVALID)
    ]


def render(planned: Planned) -> str:
    ecr = planned.ecr
    lines = [
        f"plan of {planned.source}: {_count(len(planned.entries), 'entry', 'entries')}, "
        f"{_count(planned.report['summary']['tagSets'], 'tag set', 'tag sets')}; nothing is started or written",
        f"targets checked in ECR {ecr.host}" if ecr.why_not is None else f"{ecr.why_not} (each reads as missing)",
        f"{planned.requests} registry requests (HEADs and tag lists on the sources: no Docker Hub pull)",
    ]
    if planned.logins.path is not None:
        used = ", ".join(planned.credentialed) or "none of the list's registries"
        lines.append(f"registry credentials from {planned.logins.path}: {used}")
    lines += [f"note: {n}" for n in planned.logins.notes]
    lines += ["", table("what a run would find now", planned.report, None)]
    sections = (
        ("tag sets", tag_set_lines(planned)),
        ("would copy", copy_lines(planned)),
        ("failed and invalid", problem_lines(planned)),
    )
    for title, body in sections:
        if body:
            lines += ["", title, *body]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("list", help="the image list: a YAML file (or s3://bucket/key, ssm:/name)")
    parser.add_argument("--region", help="the AWS region of the ECR to check (default: the AWS configuration's)")
    parser.add_argument("--prefix", help="TARGET_PREFIX: where the mirror writes (default: mirror)")
    parser.add_argument("--sources", help="SOURCE_REGISTRIES, comma-separated (default: the product's list)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The stages' warnings (an internal error's traceback, a repository's malformed record) go to stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    try:
        planned = make(environment(args), session_factory(args.region))
    except (ImageListError, ConfigurationError) as e:
        print(f"plan: {e}", file=sys.stderr)
        return 2
    finally:
        log.removeHandler(handler)
    print(render(planned))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Docker Hub's pulls spent deliberately: the function defers what does not fit above the reserve (with credentials,
the quota is the account's), the build checks its own figure before each Docker Hub copy, and what the copies spent
comes back to the next run. The Docker-Hub-like proxy counts a pull per manifest GET, and answers every manifest
request, HEAD too, with `ratelimit-remaining` (a HEAD never counts)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from copier import copy_images
from devtools.buildspec import exported_variables, run_build_phase
from devtools.localaws import PROJECT, answering
from devtools.registries import ECR_PASSWORD, ECR_USER, Fault, auth_file, drip
from mirror.planning import ASSUMED_PULLS
from tests.integration.conftest import Mirror, ecr_digest
from tests.integration.test_buildspec import endpoints, entry
from tests.integration.test_in_flight import finished_build

HUB_SECRET = json.dumps({"username": "hubuser", "password": "hub-access-token-s3cret"})


@pytest.fixture
def auth(mirror: Mirror, tmp_path: Path) -> Path:
    return auth_file(tmp_path / "auth.json", {mirror.registries.ecr.location: (ECR_USER, ECR_PASSWORD)})


def by_source(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {image["source"]: image for image in report["images"]}


# -- the function --------------------------------------------------------------------------------------------------


def test_with_credentials_copies_that_do_not_fit_above_the_reserve_are_deferred(mirror: Mirror) -> None:
    for name in ("first", "second", "third"):
        mirror.seed(name, name)
    mirror.seed_plain("quayed", "q")
    mirror.dockerhub_secret(HUB_SECRET)
    # the reserve (10), one assumed copy (9) and 5 more: the first copy fits, the next two do not
    mirror.registries.hub.remaining = 10 + ASSUMED_PULLS + 5
    images = [mirror.image(n) for n in ("first", "second", "third")] + [f"quay.io/{mirror.image('quayed')}"]

    report = mirror.invoke({"images": images})

    first, second, third, quayed = report["images"]
    assert first["status"] == "missing"
    assert first["build"]
    for deferred in (second, third):
        assert deferred["status"] == "deferred"
        assert deferred["build"] is None
        assert deferred["error"] == (
            f"deferred: {ASSUMED_PULLS} pulls needed, 5 left above the reserve of 10 until the window resets"
        )
    assert quayed["status"] == "missing"  # other registries are not Docker Hub's quota
    assert quayed["build"] == first["build"]
    (batch,) = mirror.mirror_images()
    assert [(e["registry"], e["pulls"]) for e in batch] == [("docker.io", ASSUMED_PULLS), ("quay.io", ASSUMED_PULLS)]
    assert report["summary"]["deferred"] == 2
    assert mirror.registries.hub.remaining == 10 + ASSUMED_PULLS + 5  # deciding cost no pull


def test_the_estimate_comes_from_the_copy_in_ecr_and_decides_what_fits(mirror: Mirror) -> None:
    mirror.seed("small", "new", kind="oci-manifest")  # one manifest...
    mirror.seed_ecr(f"mirror/{mirror.image('small')}", "old", kind="oci-manifest")  # ...as its copy in ECR shows
    mirror.seed("wide", "new", kind="oci-index")
    wide_copy = mirror.seed_ecr(f"mirror/{mirror.image('wide')}", "old", kind="oci-index")
    mirror.dockerhub_secret(HUB_SECRET)
    mirror.registries.hub.remaining = 10 + 2  # room for the single manifest, not for an index and two platforms
    mirror.env["DOCKERHUB_PULL_RESERVE"] = "10"

    report = mirror.invoke({"images": [mirror.image("wide"), mirror.image("small")]})

    wide, small = report["images"]
    needed = 1 + len(wide_copy.manifests())
    assert wide["status"] == "deferred"
    assert wide["pulls"] == needed
    assert wide["error"].startswith(f"deferred: {needed} pulls needed, 2 left above the reserve of 10")
    assert small["status"] == "changed"  # list order, yet what fits still goes
    assert small["pulls"] == 1
    assert [e["pulls"] for e in mirror.mirror_images()[0]] == [1]


def test_a_single_platform_image_costs_one_pull_with_nothing_in_ecr(mirror: Mirror) -> None:
    """The check's HEAD names the manifest's type: a single manifest is one pull, an index is assumed at 9."""
    mirror.seed("single", "s", kind="docker-manifest")
    mirror.seed("listed", "l", kind="docker-list")

    report = mirror.invoke({"images": [mirror.image("single"), mirror.image("listed")], "dryRun": True})

    assert [(i["status"], i["pulls"]) for i in report["images"]] == [("missing", 1), ("missing", ASSUMED_PULLS)]


def test_without_credentials_the_function_leaves_the_quota_to_the_build(mirror: Mirror) -> None:
    """Anonymous, the function's address is not the build's: its figure says nothing of the build's quota."""
    mirror.seed("anon", "a")
    mirror.registries.hub.remaining = 3

    report = mirror.invoke({"images": [mirror.image("anon")]})

    (image,) = report["images"]
    assert image["status"] == "missing"
    assert image["build"]
    assert [e["pulls"] for e in mirror.mirror_images()[0]] == [ASSUMED_PULLS]  # the build checks it


def test_a_dry_run_reports_the_same_deferrals_and_starts_nothing(mirror: Mirror) -> None:
    mirror.seed("dry", "d")
    mirror.dockerhub_secret(HUB_SECRET)
    mirror.registries.hub.remaining = 12
    mirror.env["DOCKERHUB_PULL_RESERVE"] = "5"

    report = mirror.invoke({"images": [mirror.image("dry")], "dryRun": True})

    (image,) = report["images"]
    assert image["status"] == "deferred"
    assert (
        image["error"]
        == f"deferred: {ASSUMED_PULLS} pulls needed, 7 left above the reserve of 5 until the window resets"
    )
    assert mirror.builds == []


def test_deferred_images_are_counted_in_the_metrics(mirror: Mirror, capsys: pytest.CaptureFixture[str]) -> None:
    mirror.seed("metered", "m")
    mirror.dockerhub_secret(HUB_SECRET)
    mirror.registries.hub.remaining = 1

    report = mirror.invoke({"images": [mirror.image("metered")]})

    assert report["images"][0]["status"] == "deferred"
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf["ImagesDeferred"] == [1.0]
    assert emf["ImagesInflight"] == [0.0]
    assert emf["BuildsStarted"] == [0.0]


def test_the_next_run_reports_what_the_previous_runs_builds_spent(mirror: Mirror) -> None:
    """Real CodeBuild keeps StartBuild's overrides and, once a build ends, the buildspec's exported variables
    (BatchGetBuilds: `exportedEnvironmentVariables`, name and value)."""
    mirror.seed("again", "g")
    first = mirror.invoke({"images": [mirror.image("again")]})
    (started,) = mirror.builds
    variables = {v["name"]: v["value"] for v in started["environmentVariablesOverride"]}
    assert variables["MIRROR_RUN_ID"] == first["runId"]

    builds = [
        finished_build(f"{PROJECT}:b2", first["runId"], "3"),
        finished_build(f"{PROJECT}:b1", first["runId"], "4"),
        finished_build(f"{PROJECT}:b0", "an-older-run", "50"),
    ]
    mirror.session.events.register(
        "before-call.codebuild.ListBuildsForProject", answering({"ids": [b["id"] for b in builds]})
    )
    mirror.session.events.register("before-call.codebuild.BatchGetBuilds", answering({"builds": builds[::-1]}))

    second = mirror.invoke({"images": [mirror.image("again")]})

    assert second["previousRun"] == {"runId": first["runId"], "builds": 2, "dockerHubPulls": 7}


# -- the build -----------------------------------------------------------------------------------------------------


def test_the_build_defers_a_docker_hub_copy_its_own_quota_cannot_cover(
    mirror: Mirror, auth: Path, tmp_path: Path
) -> None:
    hub = mirror.seed("hubbed", "h", tag="1")
    other = mirror.seed_plain("elsewhere", "e", tag="1")
    elsewhere = entry(mirror, "elsewhere", other.digest, "1", pulls=3, registry="quay.io")
    elsewhere["source"] = f"{mirror.registries.plain.location}/{mirror.image('elsewhere')}@{other.digest}"
    mirror.registries.hub.remaining = 12  # above the reserve of 10: 2, for a copy of 3

    run = run_build_phase(
        [entry(mirror, "hubbed", hub.digest, "1", pulls=3), elsewhere],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
        extra_env={"DOCKERHUB_PULL_RESERVE": "10", "MIRROR_PULLS_FILE": str(tmp_path / "pulls")},
    )

    assert run.returncode == 0, run.output  # a deferral is not a failure
    (deferred,) = run.lines("DEFERRED")
    assert deferred == (
        f"DEFERRED {entry(mirror, 'hubbed', hub.digest, '1')['target']}: 3 pulls needed, 2 left above the reserve "
        "of 10 until the window resets"
    )
    assert ecr_digest(mirror, f"mirror/{mirror.image('hubbed')}", "1") is None
    assert ecr_digest(mirror, f"mirror/{mirror.image('elsewhere')}", "1") == other.digest
    assert "1 copied, 1 deferred, 0 failed; 0 artifacts copied, 0 not; 0 Docker Hub pulls spent" in run.output
    assert (tmp_path / "pulls").read_text() == "0"
    hubbed = [(m, p) for m, p in mirror.hub_requests() if f"/{mirror.image('hubbed')}/manifests/" in p]
    assert hubbed
    assert {m for m, _ in hubbed} == {"HEAD"}


def test_the_build_spends_what_fits_and_counts_the_pulls_it_spent(mirror: Mirror, auth: Path, tmp_path: Path) -> None:
    a = mirror.seed("a", "a", tag="1")
    b = mirror.seed("b", "b", tag="1")
    c = mirror.seed("c", "c", tag="1")
    per_copy = 1 + len(a.manifests())
    mirror.registries.hub.remaining = 10 + 2 * per_copy  # two copies fit, the third waits
    env = {"DOCKERHUB_PULL_RESERVE": "10", "MIRROR_PULLS_FILE": str(tmp_path / "pulls"), "COPY_CONCURRENCY": "3"}

    run = run_build_phase(
        [entry(mirror, n, layout.digest, "1", pulls=per_copy) for n, layout in (("a", a), ("b", b), ("c", c))],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
        extra_env=env,
    )

    assert run.returncode == 0, run.output
    assert len(run.lines("COPIED")) == 2  # concurrent, yet the pending copies' pulls are counted before the third
    assert len(run.lines("DEFERRED")) == 1
    assert mirror.registries.hub.remaining == 10  # as Docker Hub counts, the index and each platform: all estimated
    summary = f"2 copied, 1 deferred, 0 failed; 0 artifacts copied, 0 not; {2 * per_copy} Docker Hub pulls spent"
    assert summary in run.output
    assert (tmp_path / "pulls").read_text() == str(2 * per_copy)
    # what CodeBuild exports once the build ends (post_build runs after a failed build phase too)
    exported = exported_variables({"MIRROR_PULLS_FILE": str(tmp_path / "pulls")}, cwd=tmp_path)
    assert exported == {"MIRROR_PULLS_USED": str(2 * per_copy)}
    assert exported_variables({"MIRROR_PULLS_FILE": str(tmp_path / "none")}, cwd=tmp_path) == {"MIRROR_PULLS_USED": ""}


def test_the_builds_quota_check_logs_in_as_its_docker_hub_account(mirror: Mirror, auth: Path, tmp_path: Path) -> None:
    """With DOCKERHUB_USERNAME/_PASSWORD (the stack's Docker Hub secret) the figure read is the account's."""
    layout = mirror.seed("account", "x", tag="1")
    tokens = mirror.registries.tokens
    before = len(tokens.requests)
    mirror.registries.hub.remaining = 11

    run = run_build_phase(
        [entry(mirror, "account", layout.digest, "1", pulls=3)],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
        extra_env={"DOCKERHUB_USERNAME": tokens.username, "DOCKERHUB_PASSWORD": tokens.password},
    )

    assert run.lines("DEFERRED"), run.output
    assert tokens.password not in run.output
    probes = [r for r in tokens.requests[before:] if any(mirror.image("account") in s for s in r.scopes)]
    assert probes
    assert all(r.username == tokens.username for r in probes)


class _Watched:
    """A handler's wfile that notes when a write fails: the client hung up before the answer was all sent."""

    def __init__(self, raw: Any, cut: threading.Event) -> None:
        self._raw, self._cut = raw, cut

    def write(self, data: bytes) -> int:
        try:
            return int(self._raw.write(data))
        except OSError:
            self._cut.set()
            raise

    def flush(self) -> None:
        try:
            self._raw.flush()
        except OSError:
            self._cut.set()
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def dripping_heads(cut: threading.Event) -> Fault:
    """A manifest HEAD from anything but skopeo (the build's quota check) is answered with headers dripped a byte
    every 0.3 s (devtools.registries.drip): about 50 s for the whole answer, each read in time; `cut` is set when
    the client closes the connection before the last byte."""
    dripping = drip(every=0.3, headers_too=True)

    def fault(h: BaseHTTPRequestHandler) -> bool:
        if h.command != "HEAD" or "skopeo" in (h.headers.get("User-Agent") or ""):
            return False
        h.wfile = _Watched(h.wfile, cut)  # type: ignore[assignment]
        return dripping(h)

    return fault


def test_the_builds_quota_check_is_bounded_over_the_whole_exchange(mirror: Mirror) -> None:
    """http.client's timeout is per socket operation: headers dripped a byte every 0.3 s held the check 50 s
    against its 10 s. Now the exchange is cut at its deadline: no figure, and the server saw the client hang up."""
    layout = mirror.seed("dripped", "d", tag="1")
    cut = threading.Event()
    mirror.registries.hub.faults[f"/{mirror.image('dripped')}/manifests/"] = dripping_heads(cut)
    checked = copy_images.Job(
        1,
        f"{mirror.registries.hub.location}/{mirror.image('dripped')}@{layout.digest}",
        mirror.registries.hub.location,
        mirror.image("dripped"),
        f"{mirror.registries.ecr.location}/mirror/{mirror.image('dripped')}:1",
        mirror.registries.ecr.location,
        f"{mirror.registries.ecr.location}/mirror/{mirror.image('dripped')}",
        "1",
        layout.digest,
        "docker.io",
        3,
    )

    figure = copy_images.remaining_pulls(mirror.registries.hub.url, checked, None, None, time.monotonic() + 2)

    assert figure == (None, None)
    assert cut.wait(30)  # the answer (about 50 s of it) was cut off, not waited out


def test_the_builds_quota_check_runs_inside_the_copys_timeout(mirror: Mirror, auth: Path, tmp_path: Path) -> None:
    """One deadline per entry: a quota check that takes all of COPY_TIMEOUT_SECONDS leaves the copy no time, and
    skopeo is not started with a fresh one; the next entry's check reads its own manifest and goes ahead."""
    slow = mirror.seed("slowcheck", "s", tag="1")
    fine = mirror.seed("quick", "q", tag="1")
    cut = threading.Event()
    mirror.registries.hub.faults[f"/{mirror.image('slowcheck')}/manifests/"] = dripping_heads(cut)

    run = run_build_phase(
        [entry(mirror, "slowcheck", slow.digest, "1"), entry(mirror, "quick", fine.digest, "1")],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
        extra_env={"COPY_TIMEOUT_SECONDS": "3"},
    )

    (failed,) = run.lines("FAILED")
    assert failed == f"FAILED {entry(mirror, 'slowcheck', slow.digest, '1')['target']}: timeout after 3s"
    assert cut.wait(30)
    assert {m for m, p in mirror.hub_requests() if f"/{mirror.image('slowcheck')}/" in p} == {"HEAD"}  # no copy
    assert len(run.lines("COPIED")) == 1
    assert ecr_digest(mirror, f"mirror/{mirror.image('quick')}", "1") == fine.digest

"""The copy CodeBuild runs: the build phase of template.yaml's buildspec, with real skopeo and two real registries."""

from __future__ import annotations

import json
import os
import shutil
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from copier import copy_images
from devtools.buildspec import BuildRun, run_build_phase
from devtools.registries import ECR_PASSWORD, ECR_USER, HubProxy, answer, auth_file, hang
from tests.integration.conftest import Mirror, ecr_digest


@pytest.fixture
def auth(mirror: Mirror, tmp_path: Path) -> Path:
    return auth_file(tmp_path / "auth.json", {mirror.registries.ecr.location: (ECR_USER, ECR_PASSWORD)})


def endpoints(mirror: Mirror) -> str:
    """REGISTRY_ENDPOINTS as the stack hands it to the function and to the copy project alike."""
    return mirror.env["REGISTRY_ENDPOINTS"]


def mapped(mirror: Mirror) -> dict[str, str]:
    return copy_images.registry_endpoints(endpoints(mirror))


def entry(
    mirror: Mirror,
    name: str,
    digest: str,
    tag: str,
    *,
    pinned: str | None = None,
    prefix: str = "mirror",
    pulls: int = 3,
    registry: str = "docker.io",
) -> dict[str, object]:
    """A MIRROR_IMAGES entry as the function writes it (the Docker-Hub-like registry is docker.io, mapped)."""
    hub, ecr = mirror.registries.hub.location, mirror.registries.ecr.location
    return {
        "source": f"{hub}/{mirror.image(name)}@{pinned or digest}",
        "target": f"{ecr}/{prefix}/{mirror.image(name)}:{tag}",
        "digest": digest,
        "registry": registry,
        "pulls": pulls,
    }


def test_multi_arch_index_is_copied_with_every_digest_intact(mirror: Mirror, auth: Path, tmp_path: Path) -> None:
    index = mirror.seed("multi", "m1", kind="oci-index", tag="1")
    docker_list = mirror.seed("dlist", "d1", kind="docker-list", tag="1")
    children = [str(c["digest"]) for c in index.manifests()]

    run = run_build_phase(
        [entry(mirror, "multi", index.digest, "1"), entry(mirror, "dlist", docker_list.digest, "1")],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
    )

    assert run.returncode == 0, run.output
    assert ecr_digest(mirror, f"mirror/{mirror.image('multi')}", "1") == index.digest
    assert ecr_digest(mirror, f"mirror/{mirror.image('dlist')}", "1") == docker_list.digest
    for child in children:  # every platform, not only the build machine's
        assert ecr_digest(mirror, f"mirror/{mirror.image('multi')}", child) == child
    assert len(run.lines("COPIED")) == 2
    assert "2 copied, 0 deferred, 0 failed" in run.output


def test_entry_whose_digest_does_not_match_fails_and_the_others_are_copied(
    mirror: Mirror, auth: Path, tmp_path: Path
) -> None:
    good = mirror.seed("good", "g", tag="1")
    other = mirror.seed("other", "o", tag="1")
    absent = "sha256:" + "0" * 64

    run = run_build_phase(
        [
            entry(mirror, "other", absent, "1", pinned=other.digest),  # digest is not the pinned one
            entry(mirror, "gone", absent, "1"),  # pinned to a manifest that does not exist
            entry(mirror, "good", good.digest, "1"),
        ],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
    )

    assert run.returncode != 0
    assert run.lines("REFUSED entry 1: digest is not the digest the source is pinned to")
    (failed,) = run.lines("FAILED")
    assert f"mirror/{mirror.image('gone')}:1: copy failed" in failed
    assert ecr_digest(mirror, f"mirror/{mirror.image('good')}", "1") == good.digest
    assert ecr_digest(mirror, f"mirror/{mirror.image('other')}", "1") is None
    assert "1 copied, 0 deferred, 2 failed" in run.output


@pytest.mark.parametrize(
    "hostile",
    [
        {"source": "SRC; touch MARKER", "target": "TGT", "digest": "DIGEST"},
        {"source": "SRC", "target": "TGT$(touch MARKER)", "digest": "DIGEST"},
        {"source": "SRC", "target": "TGT`touch MARKER`", "digest": "DIGEST"},
        {"source": "SRC\ntouch MARKER", "target": "TGT", "digest": "DIGEST"},
        {"source": "SRC", "target": "TGT", "digest": "DIGEST && touch MARKER"},
        {"source": "--src-creds=x:y SRC", "target": "TGT", "digest": "DIGEST"},
        {"source": "SRC", "target": "TGT", "digest": "DIGEST", "registry": "docker.io", "pulls": 3, "x": "MARKER"},
        {"source": "SRC", "target": "TGT", "digest": "DIGEST", "registry": "docker.io; touch MARKER", "pulls": 3},
        {"source": "SRC", "target": "TGT", "digest": "DIGEST", "registry": "docker.io", "pulls": "3; touch MARKER"},
        {"source": "SRC", "target": "TGT", "digest": "DIGEST", "registry": "docker.io", "pulls": -1},
        {"source": "SRC", "target": "TGT", "digest": "DIGEST", "registry": "docker.io", "pulls": True},
        {"source": ["SRC"], "target": "TGT", "digest": "DIGEST"},
        "touch MARKER",
    ],
)
def test_hostile_entries_are_refused_without_being_executed(
    mirror: Mirror, auth: Path, tmp_path: Path, hostile: object
) -> None:
    good = mirror.seed("safe", "s", tag="1")
    valid = entry(mirror, "safe", good.digest, "1")
    if isinstance(hostile, dict) and set(hostile) == {"source", "target", "digest"}:
        hostile = {**hostile, "registry": "docker.io", "pulls": 3}  # so that the pattern itself must refuse it
    marker = tmp_path / "pwned"
    text = (
        json.dumps(hostile)
        .replace("SRC", str(valid["source"]))
        .replace("TGT", str(valid["target"]))
        .replace("DIGEST", good.digest)
        .replace("MARKER", str(marker))
    )

    run = run_build_phase(
        f"[{text}, {json.dumps(valid)}]",
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
    )

    assert not marker.exists()
    assert run.returncode != 0
    assert len(run.lines("REFUSED entry 1")) == 1
    assert run.lines("COPIED")  # the valid entry after it still ran
    assert ecr_digest(mirror, f"mirror/{mirror.image('safe')}", "1") == good.digest


def test_a_re_tag_is_written_from_the_repositorys_own_manifest_and_asks_the_source_nothing(
    mirror: Mirror, auth: Path, tmp_path: Path
) -> None:
    held = mirror.seed_ecr(f"mirror/{mirror.image('kept')}", "k", tag="1.2.3")  # mirrored under its precise tag
    absent = "sha256:" + "0" * 64
    before = len(mirror.hub_requests())

    run = run_build_phase(
        [
            {**entry(mirror, "kept", held.digest, "1.2", pulls=0), "retag": True},
            {**entry(mirror, "kept", absent, "latest", pulls=0), "retag": True},  # not in the repository
            {**entry(mirror, "kept", held.digest, "1", pulls=3), "retag": True},  # a re-tag costs no pull
            {**entry(mirror, "kept", held.digest, "2", pulls=0), "retag": "yes"},
        ],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
    )

    repository = f"mirror/{mirror.image('kept')}"
    (copied,) = run.lines("COPIED")
    assert copied.endswith(f"{mirror.registries.ecr.location}/{repository}:1.2")
    assert ecr_digest(mirror, repository, "1.2") == held.digest
    (failed,) = run.lines("FAILED")
    assert f"{repository}:latest: tag failed: reading" in failed
    assert "HTTP 404" in failed
    assert run.lines("REFUSED entry 3: a re-tag fetches nothing upstream but its artifacts: its pulls must be theirs")
    assert run.lines("REFUSED entry 4: retag, where given, must be true")
    assert ecr_digest(mirror, repository, "1") is None
    assert mirror.hub_requests()[before:] == []  # neither a pull nor a quota check: the source is not asked
    assert "0 Docker Hub pulls spent" in run.output


def test_a_re_tag_follows_its_copy_deferred_or_failed_without_asking_ecr(
    mirror: Mirror, auth: Path, tmp_path: Path
) -> None:
    image = mirror.seed("held", "h", tag="1")
    absent = "sha256:" + "0" * 64
    mirror.registries.hub.remaining = 12  # 2 above the reserve of 10: the Docker Hub copy of 3 pulls is deferred
    gone, gone_retag = (
        {**entry(mirror, "gone", absent, tag, pulls=0, registry="quay.io"), **extra}  # a registry without a quota
        for tag, extra in (("1", {}), ("latest", {"retag": True}))
    )
    for e in (gone, gone_retag):
        e["source"] = f"{mirror.registries.plain.location}/{mirror.image('gone')}@{absent}"  # never pushed: fails

    run = run_build_phase(
        [
            entry(mirror, "held", image.digest, "1", pulls=3),
            {**entry(mirror, "held", image.digest, "latest", pulls=0), "retag": True},
            gone,
            gone_retag,
        ],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
        extra_env={"DOCKERHUB_PULL_RESERVE": "10"},
    )

    held, lost = (f"{mirror.registries.ecr.location}/mirror/{mirror.image(n)}" for n in ("held", "gone"))
    assert run.lines("DEFERRED")[1] == f"DEFERRED {held}:latest: a re-tag of {image.digest}, whose copy was deferred"
    assert run.lines("FAILED")[-1] == f"FAILED {lost}:latest: a re-tag of {absent}, whose copy failed"
    assert "0 copied, 2 deferred, 2 failed" in run.output
    assert ecr_digest(mirror, f"mirror/{mirror.image('held')}", "latest") is None


@pytest.mark.parametrize("value", ["", "not json", '{"source": "x"}', "$(touch /tmp/x)"])
def test_unreadable_mirror_images_fails_the_build(auth: Path, tmp_path: Path, value: str) -> None:
    run = run_build_phase(value, auth, cwd=tmp_path, ecr_registry="127.0.0.1:5000")
    assert run.returncode != 0
    assert run.lines("FAILED: MIRROR_IMAGES")


@pytest.mark.parametrize(
    "target",
    [
        "docker.io/someuser/x:1",  # the build is logged in to Docker Hub: it must never push there
        "evil.example.net:5000/mirror/x:1",
        "{ecr}/other/x:1",  # this registry, outside the mirror's prefix
        "{ecr}/mirrorx/x:1",  # a prefix is a whole path component
        "{ecr}:444/mirror/x:1",
    ],
)
def test_targets_outside_this_accounts_mirror_are_refused(
    mirror: Mirror, auth: Path, tmp_path: Path, target: str
) -> None:
    good = mirror.seed("fine", "f", tag="1")
    valid = entry(mirror, "fine", good.digest, "1")
    hostile = dict(valid, target=target.format(ecr=mirror.registries.ecr.location))

    run = run_build_phase(
        [hostile, valid],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
    )

    assert run.lines("REFUSED entry 1: target is not <this account's registry>/<the mirror's prefix>/")
    assert len(run.lines("COPIED")) == 1
    assert run.returncode != 0


def test_a_source_not_pinned_by_digest_is_refused(mirror: Mirror, auth: Path, tmp_path: Path) -> None:
    good = mirror.seed("tagged", "t", tag="1")
    unpinned = dict(entry(mirror, "tagged", good.digest, "1"), source=f"{mirror.registries.hub.location}/x/y:1")

    run = run_build_phase(
        [unpinned],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
    )

    assert run.lines("REFUSED entry 1: source is not <registry>/<repository>@sha256:<digest> (a source must be pinned")


def test_without_its_registry_and_prefix_the_build_copies_nothing(mirror: Mirror, auth: Path, tmp_path: Path) -> None:
    good = mirror.seed("any", "a", tag="1")

    run = run_build_phase(
        [entry(mirror, "any", good.digest, "1")],
        auth,
        cwd=tmp_path,
        ecr_registry="",
        registry_endpoints=endpoints(mirror),
    )

    assert run.lines("FAILED: ECR_REGISTRY '': outside CodeBuild (no CODEBUILD_BUILD_ARN) the build writes only to")
    assert run.returncode != 0
    assert ecr_digest(mirror, f"mirror/{mirror.image('any')}", "1") is None


def test_the_tag_moves_only_after_the_digest_is_pushed_and_verified(mirror: Mirror, auth: Path, tmp_path: Path) -> None:
    old = mirror.seed_ecr(f"mirror/{mirror.image('app')}", "old", tag="1")
    new = mirror.seed("app", "new", tag="1")
    shim = tmp_path / "bin"
    shim.mkdir()
    log = tmp_path / "skopeo.log"
    real = shutil.which("skopeo")
    (shim / "skopeo").write_text(f'#!/bin/bash\nprintf "%s\\n" "$*" >> {log}\nexec {real} "$@"\n')
    (shim / "skopeo").chmod(0o755)
    path = {"PATH": f"{shim}:{os.environ['PATH']}"}
    ecr = mirror.registries.ecr.location
    repository = f"{ecr}/mirror/{mirror.image('app')}"

    failed = run_build_phase(
        [entry(mirror, "app", "sha256:" + "0" * 64, "1")],
        auth,
        cwd=tmp_path,
        ecr_registry=ecr,
        registry_endpoints=endpoints(mirror),
        extra_env=path,
    )
    assert failed.lines("FAILED")
    assert ecr_digest(mirror, f"mirror/{mirror.image('app')}", "1") == old.digest  # a failed copy moves no tag
    log.unlink()

    run = run_build_phase(
        [entry(mirror, "app", new.digest, "1")],
        auth,
        cwd=tmp_path,
        ecr_registry=ecr,
        registry_endpoints=endpoints(mirror),
        extra_env=path,
    )

    assert run.lines("COPIED"), run.output
    calls = [line.split() for line in log.read_text().splitlines()]
    # skopeo copies every platform by digest alone (it says what it wrote in --digestfile); the tag is then written
    # through the registry API from those very bytes, read back and checked, and its digest checked once more
    assert [(c[0], c[-1]) for c in calls] == [("copy", f"docker://{repository}@{new.digest}")]
    assert "--digestfile" in calls[0]
    assert ecr_digest(mirror, f"mirror/{mirror.image('app')}", "1") == new.digest


def test_a_copy_that_times_out_fails_and_the_next_entries_still_run(mirror: Mirror, auth: Path, tmp_path: Path) -> None:
    stuck = mirror.seed("stuck", "s", tag="1")
    fine = mirror.seed("fine", "f", tag="1")
    mirror.registries.hub.faults[f"/{mirror.image('stuck')}/manifests/"] = hang(30)

    run = run_build_phase(
        [entry(mirror, "stuck", stuck.digest, "1"), entry(mirror, "fine", fine.digest, "1")],
        auth,
        cwd=tmp_path,
        ecr_registry=mirror.registries.ecr.location,
        registry_endpoints=endpoints(mirror),
        extra_env={"COPY_TIMEOUT_SECONDS": "3"},
    )

    (failed,) = run.lines("FAILED")
    assert failed.endswith(f"mirror/{mirror.image('stuck')}:1: timeout after 3s")
    assert len(run.lines("COPIED")) == 1
    assert ecr_digest(mirror, f"mirror/{mirror.image('fine')}", "1") == fine.digest
    assert "1 copied, 0 deferred, 1 failed" in run.output


def test_targets_under_the_upstream_prefixes_are_written_and_no_others(
    mirror: Mirror, auth: Path, tmp_path: Path
) -> None:
    good = mirror.seed("pulled", "p", tag="1")
    ecr = mirror.registries.ecr.location
    under_quay = dict(entry(mirror, "pulled", good.digest, "1"), target=f"{ecr}/quay/{mirror.image('pulled')}:1")

    refused = run_build_phase([under_quay], auth, cwd=tmp_path, ecr_registry=ecr, registry_endpoints=endpoints(mirror))
    copied = run_build_phase(
        [under_quay],
        auth,
        cwd=tmp_path,
        ecr_registry=ecr,
        registry_endpoints=endpoints(mirror),
        extra_env={"UPSTREAM_PREFIXES": '{"quay.io": "quay"}'},
    )

    assert refused.lines("REFUSED entry 1: target is not")
    assert copied.lines("COPIED"), copied.output
    assert ecr_digest(mirror, f"quay/{mirror.image('pulled')}", "1") == good.digest


def test_concurrent_copies_match_sequential_ones_and_one_repository_copies_in_order(
    mirror: Mirror, auth: Path, tmp_path: Path
) -> None:
    """COPY_CONCURRENCY copies repositories side by side (a skopeo shim holds each repository's first copy until
    three are under way at once: it passes only if they truly run together), the tags of one repository one after
    another; the lines and digests are the same as a sequential build's, and a failing copy fails only itself."""
    a = mirror.seed("a", "a", tag="1")
    a2 = mirror.seed("a", "a2", tag="2")
    b = mirror.seed("b", "b", kind="docker-list", tag="1")
    c = mirror.seed("c", "c", kind="oci-manifest", tag="1")
    absent = "sha256:" + "0" * 64
    ecr = mirror.registries.ecr.location

    def entries(prefix: str) -> list[dict[str, object]]:
        return [
            entry(mirror, "a", a.digest, "1", prefix=prefix),
            entry(mirror, "a", a2.digest, "2", prefix=prefix),
            entry(mirror, "b", b.digest, "1", prefix=prefix),
            entry(mirror, "gone", absent, "1", prefix=prefix),  # fails, alone
            entry(mirror, "c", c.digest, "1", prefix=prefix),
        ]

    shim, log, barrier = tmp_path / "bin", tmp_path / "skopeo.log", tmp_path / "barrier"
    shim.mkdir()
    barrier.mkdir()
    real = shutil.which("skopeo")
    (shim / "skopeo").write_text(
        "#!/bin/bash\n"
        'last="${*: -1}"\n'
        f'echo "begin $last" >> {log}\n'
        'if [ "$1" = copy ] && [ "${PAR:-}" = 1 ]; then\n'
        '  if [[ "$last" == *@* ]]; then repo="${last%@*}"; else repo="${last%:*}"; fi\n'
        '  touch "' + str(barrier) + '/$(echo "$repo" | md5sum | cut -c1-8)"\n'
        '  for _ in $(seq 1200); do [ "$(ls ' + str(barrier) + ' | wc -l)" -ge 3 ] && break; sleep 0.05; done\n'
        '  [ "$(ls ' + str(barrier) + f' | wc -l)" -ge 3 ] || echo "alone $last" >> {log}\n'
        "fi\n"
        f'{real} "$@"; code=$?\n'
        f'echo "end $last" >> {log}\n'
        "exit $code\n"
    )
    (shim / "skopeo").chmod(0o755)
    path = os.environ["PATH"]

    sequential = run_build_phase(
        entries("seq"),
        auth,
        cwd=tmp_path,
        ecr_registry=ecr,
        registry_endpoints=endpoints(mirror),
        prefix="seq",
        extra_env={"COPY_CONCURRENCY": "1"},
    )
    concurrent = run_build_phase(
        entries("par"),
        auth,
        cwd=tmp_path,
        ecr_registry=ecr,
        registry_endpoints=endpoints(mirror),
        prefix="par",
        extra_env={"COPY_CONCURRENCY": "4", "PATH": f"{shim}:{path}", "PAR": "1"},
    )

    def outcome(run: BuildRun, prefix: str) -> set[str]:
        return {line.replace(f"/{prefix}/", "/P/") for line in run.output.splitlines() if line.split()[0].isupper()}

    assert outcome(concurrent, "par") == outcome(sequential, "seq")
    assert concurrent.returncode == sequential.returncode == 1
    assert len(concurrent.lines("COPIED")) == 4
    (failed,) = concurrent.lines("FAILED")
    assert f"/par/{mirror.image('gone')}:1: copy failed" in failed
    for name, tag in (("a", "1"), ("a", "2"), ("b", "1"), ("c", "1")):
        copied = ecr_digest(mirror, f"par/{mirror.image(name)}", tag)
        assert copied is not None
        assert copied == ecr_digest(mirror, f"seq/{mirror.image(name)}", tag)
    events = log.read_text().splitlines()
    assert not [e for e in events if e.startswith("alone")], events  # three repositories were copied at once
    repo_a = f"{ecr}/par/{mirror.image('a')}"
    mine = [e for e in events if e.split()[1].startswith((f"docker://{repo_a}@", f"docker://{repo_a}:"))]
    first_end = max(n for n, e in enumerate(mine) if e.startswith("end") and (a.digest in e or e.endswith(":1")))
    second_begin = min(n for n, e in enumerate(mine) if e.startswith("begin") and (a2.digest in e or e.endswith(":2")))
    assert first_end < second_begin, mine  # one repository: tag 1 done before tag 2 starts


def test_the_tag_step_writes_only_a_verified_digest_and_says_why_it_did_not(
    mirror: Mirror, auth: Path, tmp_path: Path
) -> None:
    """The build's tag step against the real ECR-side registry: the manifest pushed by digest is read back, put
    under the tag and checked; without the registry's login, or without that manifest, no tag is written."""
    ecr = mirror.registries.ecr.location
    repository = f"mirror/{mirror.image('tagged')}"
    layout = mirror.seed_ecr(repository, "t", tag="by-digest-only")  # as the by-digest push leaves it
    target = copy_images.target_pattern(ecr, "mirror")
    assert target is not None

    def job(digest: str) -> copy_images.Job:
        checked, reason = copy_images.check(1, entry(mirror, "tagged", digest, "1"), target, mapped(mirror))
        assert checked is not None, reason
        return checked

    deadline = time.monotonic() + 30
    no_login = copy_images.tag(job(layout.digest), deadline, {"REGISTRY_AUTH_FILE": str(tmp_path / "none.json")})
    absent = copy_images.tag(job("sha256:" + "0" * 64), deadline, {"REGISTRY_AUTH_FILE": str(auth)})
    assert no_login == (f"tag failed: reading {ecr}/{repository}@{layout.digest} answered HTTP 401", 0)
    assert absent[0] is not None
    assert absent[0].startswith("tag failed: reading")
    assert absent[0].endswith("answered HTTP 404")
    assert ecr_digest(mirror, repository, "1") is None  # nothing tagged

    written = copy_images.tag(job(layout.digest), deadline, {"REGISTRY_AUTH_FILE": str(auth)})

    assert written == (None, 1 + len(layout.manifests()))  # the manifests a copy of it fetched
    assert ecr_digest(mirror, repository, "1") == layout.digest


def test_the_tag_step_rides_out_a_transient_registry_error(mirror: Mirror, tmp_path: Path) -> None:
    """A fault proxy in front of the ECR-side registry: two 503s are retried; an error that stays is the reason."""
    ecr = mirror.registries.ecr
    front = HubProxy(ecr)
    try:
        repository = f"mirror/{mirror.image('flaky')}"
        layout = mirror.seed_ecr(repository, "f", tag="by-digest-only")
        login = auth_file(tmp_path / "front.json", {front.location: (ECR_USER, ECR_PASSWORD)})
        target = copy_images.target_pattern(front.location, "mirror")
        assert target is not None
        pinned = dict(entry(mirror, "flaky", layout.digest, "1"), target=f"{front.location}/{repository}:1")
        job, reason = copy_images.check(1, pinned, target, mapped(mirror))
        assert job is not None, reason
        environ = {"REGISTRY_AUTH_FILE": str(login)}

        front.faults["/manifests/"] = answer(503, times=2)
        assert copy_images.tag(job, time.monotonic() + 60, environ) == (None, 1 + len(layout.manifests()))
        assert ecr_digest(mirror, repository, "1") == layout.digest

        front.faults["/manifests/"] = answer(503)
        stuck = dict(pinned, target=f"{front.location}/{repository}:2")
        job, _ = copy_images.check(1, stuck, target, mapped(mirror))
        assert job is not None
        assert copy_images.tag(job, time.monotonic() + 60, environ) == (
            f"tag failed: reading {front.location}/{repository}@{layout.digest} answered HTTP 503",
            0,
        )
        assert ecr_digest(mirror, repository, "2") is None
    finally:
        front.close()


def test_the_tag_step_gets_what_is_left_of_the_entrys_time_not_a_fresh_timeout(mirror: Mirror, tmp_path: Path) -> None:
    """One deadline per entry covers the copy and the tag. skopeo (a stand-in that waits 3 s, then runs the real
    one) takes half of COPY_TIMEOUT_SECONDS=6; the ECR side then holds the tag step's first request 4 s: with 3 s
    left, the tag step fails for lack of time. (With a fresh 6 s, as before, the 4 s wait fit and it was tagged.)"""
    layout = mirror.seed_plain("late", "l", tag="1")
    front = HubProxy(mirror.registries.ecr)  # in front of the ECR side, to slow the tag step's requests only

    def slow_tag_step(h: BaseHTTPRequestHandler) -> bool:
        if h.command == "GET" and not h.headers.get("User-Agent"):  # skopeo names itself; the tag step does not
            time.sleep(4)
        return False  # then pass it through

    front.faults["/manifests/sha256:"] = slow_tag_step
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "skopeo").write_text(f'#!/bin/bash\nsleep 3\nexec {shutil.which("skopeo")} "$@"\n')
    (shim / "skopeo").chmod(0o755)
    login = auth_file(tmp_path / "front.json", {front.location: (ECR_USER, ECR_PASSWORD)})
    repository = f"mirror/{mirror.image('late')}"
    late = dict(
        entry(mirror, "late", layout.digest, "1", registry="quay.io"),
        source=f"{mirror.registries.plain.location}/{mirror.image('late')}@{layout.digest}",
        target=f"{front.location}/{repository}:1",
    )
    try:
        run = run_build_phase(
            [late],
            login,
            cwd=tmp_path,
            ecr_registry=front.location,
            registry_endpoints=endpoints(mirror),
            extra_env={"COPY_TIMEOUT_SECONDS": "6", "PATH": f"{shim}:{os.environ['PATH']}"},
        )
    finally:
        front.close()

    assert run.lines(f"FAILED {front.location}/{repository}:1: tag failed: timeout"), run.output
    assert ecr_digest(mirror, repository, layout.digest) == layout.digest  # the copy itself was done in time
    assert ecr_digest(mirror, repository, "1") is None  # the tag never moved

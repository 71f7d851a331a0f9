"""Figures for a sync run at scale, against the local registries and moto: `make benchmark`.

Prints, for each scenario: wall time, images per second, requests sent to the Docker Hub side, Docker Hub pulls
used, the process's peak RSS and (without --no-trace) peak Python memory (tracemalloc, which slows the run).
Scenarios: 900 images already mirrored (the nightly steady state), 1,000 images of which 100 changed (builds
started), and a 10,000-entry list pinned by digest (dry run). The copy scenario (`--copies N`, 0 to skip) copies N
new multi-arch images from the Docker-Hub-like registry, behind a proxy that adds latency to every answer, into a
fresh ECR-side registry three ways: the real build phase (COPY_CONCURRENCY 4), the same at concurrency 1, and a plain
parallel `skopeo copy --all` loop (4 at a time) as the reference; it prints their wall times, the build's ratio to
the loop, and the Docker Hub pulls spent per image; then the build once more, keeping two of the platforms
(`platforms: [linux/amd64, linux/arm64]`: each platform manifest by digest, and an index of the mirror's own), with
its wall time and pulls per image. The platform-check scenario (`--platforms N`, timing pass; `--only-platforms`
alone) checks N unchanged indexes (each its own digest) as whole copies and as `PLATFORMS=linux/amd64` copies (the
mirror's own index, read from ECR by the check), alternated, and compares their medians.

The floor comparison (`--floor-sizes`, timing pass only) checks N unchanged tagged images (1,000 and 10,000) with the
real handler and with a bare-HTTP floor over the same registries and proxy: MAX_CONCURRENCY workers, each image one
HEAD of the source manifest (a Bearer token fetched once per repository scope, then cached) and one HEAD of the
ECR-side manifest (Basic), on a plain pooled `requests.Session`, nothing else. Floor and handler runs alternate
(`--repeats` pairs, after one warm-up of each) and the medians are compared: what containment (whole-exchange
limits, capped reads, typed errors, the budget, the report) costs per image shows as `handlerToFloorRatio`. Both
meet the world as deployed: the Docker Hub side keeps connections alive (HTTP/1.1, as Docker Hub does) and runs in
a process of its own (in this one its threads would take the GIL from what is measured), moto's patch of `requests`
is off (it would match every registry request against its URL table first; boto3 is still answered by moto), and
the handler logs at INFO, a line per image, as the template sets it (to /dev/null). No delay is added: the figures
are CPU, on two cores shared with both registries, the harshest case for the handler.

The maximum (`--maximum`, timing pass only) runs in a fresh process, so that its peak RSS is its own: 60 tag sets
over one 2,000-tag repository select 120,000 records, and the run keeps the 20,000 the list allows (a dry run that
checks every one). Target: under 256 MiB.

The re-tag scenarios (`--retags`, timing pass only; `--only-retags` alone) run the real handler and then the real
build phase on each MIRROR_IMAGES it started, and count Docker Hub's pulls where Docker Hub counts them: GETs of
manifests at the Docker-Hub-like stand-in, during the run and the build. In the first, a tag set's alias tags
(`latest`, `1`, `1.2`) move upstream to the release the mirror already holds as `1.2.3`: re-tags written from ECR's
own manifest, 0 pulls. In the second, two new tags name one new image: one copy (its index and each platform) and
one re-tag after it, in the same build.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRACE = "--no-trace" not in sys.argv
sys.path.insert(0, str(ROOT / "lambda"))

from devtools.context import FakeLambdaContext  # noqa: E402
from devtools.images import Layout, push, write_image  # noqa: E402
from devtools.localaws import LAMBDA_ENVIRONMENT, PROJECT, create_copy_project  # noqa: E402
from devtools.proxyprocess import ProxyProcess  # noqa: E402
from devtools.registries import (  # noqa: E402
    ECR_ACCOUNT_HOST,
    ECR_PASSWORD,
    ECR_USER,
    HubProxy,
    Registry,
    TokenServer,
    push_token,
    put_tags,
)


def manifest_of(layout: Layout) -> bytes:
    hex_ = layout.digest.split(":", 1)[1]
    return (layout.path / "blobs" / "sha256" / hex_).read_bytes()


def measure(
    label: str, images: int, run: Callable[[], dict[str, Any]], hub: HubProxy, *, quiet: bool = False
) -> dict[str, Any]:
    pulls_before, requests_before = hub.pulls(), len(hub.requests)
    if TRACE:
        tracemalloc.start()
    started = time.perf_counter()
    report = run()
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory() if TRACE else (0, 0)
    if TRACE:
        tracemalloc.stop()
    summary = report["summary"]
    figures = {
        "scenario": label,
        "images": images,
        "seconds": round(elapsed, 2),
        "imagesPerSecond": round(images / elapsed, 1),
        "peakPythonMiB": round(peak / 2**20, 1),
        "peakRssMiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "dockerHubRequests": len(hub.requests) - requests_before,
        "dockerHubPullsUsed": hub.pulls() - pulls_before,
        "summary": summary,
    }
    reasons: dict[str, int] = {}
    for image in report["images"]:
        if image["error"]:
            reason = image["error"].split(":", 1)[0] + ": " + image["error"].rsplit(":", 1)[-1].strip()[:80]
            reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        figures["failureReasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5])
    if not quiet:
        print(json.dumps(figures))
    return figures


BUILD_DIR = ROOT / ".aws-sam" / "build" / "MirrorFunction"


def package_figures(build_dir: Path = BUILD_DIR, runs: int = 5) -> dict[str, Any] | None:
    """Size of the package `sam build` made (unzipped, zipped as Lambda stores it) and the handler's import time in
    a fresh interpreter that sees only the package (as on Lambda, where the package comes first on the path)."""
    import os
    import statistics
    import subprocess
    import zipfile

    if not (build_dir / "app.py").exists():
        return None
    files = [p for p in build_dir.rglob("*") if p.is_file()]
    unzipped = sum(p.stat().st_size for p in files)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "function.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for p in files:
                z.write(p, p.relative_to(build_dir))
        zipped = archive.stat().st_size
    probe = "import time; t = time.perf_counter(); import app; print(time.perf_counter() - t)"
    env = {**os.environ, **LAMBDA_ENVIRONMENT, "PYTHONPATH": str(build_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    times = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-S", "-c", probe], env=env, capture_output=True, text=True, check=True, cwd=build_dir
        )
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return {
        "scenario": "function package (sam build)",
        "unzippedMiB": round(unzipped / 2**20, 1),
        "zippedMiB": round(zipped / 2**20, 1),
        "files": len(files),
        "handlerImportSeconds": round(statistics.median(times), 3),
        "importRuns": runs,
    }


def copy_figures(workdir: Path, copies: int, platforms: int = 4, layer_mib: float = 1.0, delay: float = 0.02) -> None:
    """The copy scenario: each way into a registry of its own (no blob already there, none mounted across)."""
    import os
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    from devtools.buildspec import run_build_phase
    from devtools.registries import auth_file

    tokens = TokenServer(workdir / "copy-tokens")
    upstream = Registry(workdir / "copy-upstream", token=tokens)
    hub = HubProxy(upstream, limit=1_000_000, keep_alive=True)
    targets: list[Registry] = []
    arches = ("amd64", "arm64", "ppc64le", "s390x", "riscv64", "386", "arm", "mips64le")[:platforms]
    try:
        started = time.perf_counter()
        layouts = []
        for n in range(copies):
            layout = write_image(
                workdir / f"copy-{n}", f"copy {n}", arches=arches, padding=int(layer_mib * 2**20), tag="1"
            )
            push(layout, f"{upstream.location}/bench/copy{n}:1", creds=f"{tokens.username}:{tokens.password}")
            layouts.append(layout)
        print(f"seeded {copies} images in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        hub.delay = delay

        def target(name: str) -> Registry:
            registry = Registry(workdir / f"copy-ecr-{name}", basic=(ECR_USER, ECR_PASSWORD))
            targets.append(registry)
            return registry

        def build(concurrency: int, keep: tuple[str, ...] = ()) -> tuple[float, int, str]:
            name = f"build{concurrency}" + ("-filtered" if keep else "")
            ecr = target(name)
            auth = auth_file(workdir / f"auth-{name}.json", {ecr.location: (ECR_USER, ECR_PASSWORD)})
            entries = [
                {
                    "source": f"{hub.location}/bench/copy{n}@{layout.digest}",
                    "target": f"{ecr.location}/mirror/bench/copy{n}:1",
                    "digest": layout.digest,
                    "registry": "docker.io",
                    "pulls": 1 + (len(keep) if keep else platforms),
                    **({"platforms": list(keep)} if keep else {}),
                }
                for n, layout in enumerate(layouts)
            ]
            before = hub.remaining
            began = time.perf_counter()
            run = run_build_phase(
                entries,
                auth,
                cwd=workdir,
                ecr_registry=ecr.location,
                registry_endpoints=json.dumps({"docker.io": hub.url}),
                extra_env={"COPY_CONCURRENCY": str(concurrency)},
            )
            seconds = time.perf_counter() - began
            if run.returncode != 0 or len(run.lines("COPIED")) != copies:
                raise RuntimeError(f"the build phase did not copy every image:\n{run.output}")
            return seconds, before - hub.remaining, run.lines(f"{copies} copied")[0]

        def plain_loop() -> float:
            ecr = target("loop")
            auth = auth_file(workdir / "auth-loop.json", {ecr.location: (ECR_USER, ECR_PASSWORD)})
            env = {**os.environ, "REGISTRY_AUTH_FILE": str(auth)}

            def one(n: int) -> None:
                subprocess.run(
                    [
                        "skopeo", "copy", "--all", "--preserve-digests", "--quiet",
                        "--src-tls-verify=false", "--dest-tls-verify=false",
                        f"docker://{hub.location}/bench/copy{n}@{layouts[n].digest}",
                        f"docker://{ecr.location}/mirror/bench/copy{n}:1",
                    ],
                    env=env, check=True, capture_output=True, timeout=600,
                )  # fmt: skip

            began = time.perf_counter()
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(one, range(copies)))
            return time.perf_counter() - began

        loop = plain_loop()
        concurrent, pulls, summary = build(4)
        sequential, _, _ = build(1)
        kept = ("linux/amd64", "linux/arm64")
        filtered, filtered_pulls, _ = build(4, kept)
        print(
            json.dumps(
                {
                    "scenario": f"copy {copies} new images ({platforms} platforms, {layer_mib:g} MiB a layer), "
                    f"{int(delay * 1000)} ms a request",
                    "buildSeconds": round(concurrent, 2),
                    "sequentialBuildSeconds": round(sequential, 2),
                    "plainParallelLoopSeconds": round(loop, 2),
                    "buildToLoopRatio": round(concurrent / loop, 2),
                    "sequentialToLoopRatio": round(sequential / loop, 2),
                    "dockerHubPullsPerImage": round(pulls / copies, 2),
                    "buildSummary": summary,
                    "filteredPlatforms": ",".join(kept),
                    "filteredBuildSeconds": round(filtered, 2),
                    "filteredToLoopRatio": round(filtered / loop, 2),
                    "filteredDockerHubPullsPerImage": round(filtered_pulls / copies, 2),
                }
            )
        )
    finally:
        for registry in targets:
            registry.close()
        hub.close()
        upstream.close()
        tokens.close()


#: the re-tag scenarios' images: multi-arch, so that a copy's pulls (the index and each platform) show
RETAG_ARCHES = ("amd64", "arm64", "ppc64le", "s390x")


def retag_figures(workdir: Path, hub: HubProxy, upstream: Registry, ecr: Registry, tokens: TokenServer) -> None:
    """The re-tag scenarios, each the real handler (in moto) and then the real build phase on each MIRROR_IMAGES it
    started. Docker Hub's pulls are counted where Docker Hub counts them: GETs of manifests at the stand-in, during
    the run and the build. (1) The alias tags (`latest`, `1`, `1.2`) move upstream to the release the mirror holds
    under its precise tag (`1.2.3`): three re-tags, no pull. (2) Two new tags of one new image: one copy (the index
    and each platform: its pulls) and one re-tag after it, in one build."""
    import os

    import boto3
    import requests

    import app
    from devtools.buildspec import run_build_phase
    from devtools.localaws import build_environment, record_builds
    from devtools.registries import auth_file
    from mirror.registry.client import MANIFEST_ACCEPT

    hub_creds, ecr_creds = f"{tokens.username}:{tokens.password}", f"{ECR_USER}:{ECR_PASSWORD}"
    basic = {"Authorization": "Basic " + base64.b64encode(ecr_creds.encode()).decode()}
    auth = auth_file(workdir / "auth-retags.json", {ecr.location: (ECR_USER, ECR_PASSWORD)})
    started: list[dict[str, Any]] = []  # each StartBuild's parameters
    session = boto3.session.Session()
    record_builds(session, started)

    def image(name: str, content: str) -> Layout:
        return write_image(workdir / f"retag-{name}", content, arches=RETAG_ARCHES, padding=2**16, tag="seed")

    def in_ecr(repository: str, tag: str) -> str | None:
        answer = requests.head(
            f"{ecr.url}/v2/mirror/{repository}/manifests/{tag}",
            headers={"Accept": MANIFEST_ACCEPT, **basic},
            timeout=10,
        )
        return answer.headers.get("Docker-Content-Digest") if answer.status_code == 200 else None

    def scenario(label: str, event: dict[str, Any]) -> dict[str, Any]:
        first_request, first_build, pulls_before = len(hub.requests), len(started), hub.pulls()
        began = time.perf_counter()
        report = app.handler(event, FakeLambdaContext(timeout_seconds=900))
        during_run = hub.requests[first_request:]
        payloads = [build_environment(params, session)["MIRROR_IMAGES"] for params in started[first_build:]]
        runs = [
            run_build_phase(
                payload,
                auth,
                cwd=workdir,
                ecr_registry=ecr.location,
                registry_endpoints=os.environ["REGISTRY_ENDPOINTS"],
            )
            for payload in payloads
        ]
        during_build = hub.requests[first_request + len(during_run) :]
        gets = {
            "run": sum(m == "GET" and "/manifests/" in p for m, p in during_run),
            "build": sum(m == "GET" and "/manifests/" in p for m, p in during_build),
        }
        return {
            "scenario": label,
            "seconds": round(time.perf_counter() - began, 2),
            "dockerHubPullsUsed": gets["run"] + gets["build"],
            "hubManifestGets": gets,
            "hubPullsCounted": hub.pulls() - pulls_before,  # the stand-in's ratelimit count: GETs answered 200
            "hubRequests": {
                "run": dict(Counter(m for m, _ in during_run)),
                "build": dict(Counter(m for m, _ in during_build)),
            },
            "records": [
                {
                    "tag": r["source"].rpartition(":")[2],
                    "status": r["status"],
                    "retag": r.get("retag", False),
                    "pulls": r.get("pulls"),
                    **({"error": r["error"]} if r["error"] else {}),
                }
                for r in report["images"]
            ],
            "mirrorImages": [
                [
                    {"tag": e["target"].rpartition(":")[2], "retag": e.get("retag", False), "pulls": e["pulls"]}
                    for e in json.loads(payload)
                ]
                for payload in payloads
            ],
            "buildSummaries": [
                line for run in runs for line in run.output.splitlines() if re.match(r"\d+ copied, ", line)
            ],
            "buildFailures": [line for run in runs for line in run.lines("FAILED") + run.lines("REFUSED")],
        }

    previous = app.session_factory
    app.session_factory = lambda: session
    failures: list[str] = []
    try:
        # (1) Alias tags move to an already-mirrored release.
        repository, aliases = "bench/alias", ["latest", "1", "1.2"]
        old, new = image("old", "alias release 1.2.2"), image("new", "alias release 1.2.3")
        for layout, tag in ((old, "1.2.2"), (new, "1.2.3")):
            push(layout, f"{upstream.location}/{repository}:{tag}", creds=hub_creds)
            push(layout, f"{ecr.location}/mirror/{repository}:{tag}", creds=ecr_creds)
        hub_auth = {"Authorization": f"Bearer {push_token(tokens, repository)}"}
        put_tags(upstream.url, repository, manifest_of(new), new.media_type, aliases, headers=hub_auth)
        put_tags(ecr.url, f"mirror/{repository}", manifest_of(old), old.media_type, aliases, headers=basic)
        rule = {"match": r"latest|1|1\.2|1\.2\.3"}
        figures = scenario(
            f"alias tags {', '.join(aliases)} move to the mirrored release 1.2.3 (tag set {rule['match']})",
            {"images": [{"source": repository, "tags": rule}]},
        )
        moved = {t: in_ecr(repository, t) == new.digest for t in [*aliases, "1.2.3"]}
        figures["ecrTagsAtRelease"] = moved
        print(json.dumps(figures))
        by_tag = {r["tag"]: r for r in figures["records"]}
        if figures["dockerHubPullsUsed"] or figures["hubPullsCounted"]:
            failures.append(f"the alias re-tags spent Docker Hub pulls: {figures['hubManifestGets']}")
        if any(not (by_tag.get(t, {}).get("retag") and by_tag[t]["pulls"] == 0) for t in aliases):
            failures.append(f"the aliases were not planned as re-tags: {figures['records']}")
        if not all(moved.values()) or figures["buildFailures"]:
            failures.append(f"the aliases were not moved in ECR: {moved} {figures['buildFailures']}")

        # (2) Two new tags share one new digest.
        repository, tags = "bench/pair", ["2.0.0", "2.0"]
        pair = image("pair", "pair release 2.0.0")
        push(pair, f"{upstream.location}/{repository}:{tags[0]}", creds=hub_creds)
        hub_auth = {"Authorization": f"Bearer {push_token(tokens, repository)}"}
        put_tags(upstream.url, repository, manifest_of(pair), pair.media_type, tags[1:], headers=hub_auth)
        figures = scenario(
            f"two new tags share one new digest ({len(RETAG_ARCHES)} platforms)",
            {"images": [f"{repository}:{t}" for t in tags]},
        )
        copied = {t: in_ecr(repository, t) == pair.digest for t in tags}
        figures["ecrTagsAtRelease"] = copied
        figures["pullsOfOneCopy"] = 1 + len(RETAG_ARCHES)
        print(json.dumps(figures))
        planned = [(e["retag"], e["pulls"] == 0) for build in figures["mirrorImages"] for e in build]
        if len(figures["mirrorImages"]) != 1 or sorted(planned) != [(False, False), (True, True)]:
            failures.append(f"not one copy and one re-tag in one build: {figures['mirrorImages']}")
        if figures["hubManifestGets"]["build"] != 1 + len(RETAG_ARCHES) or figures["hubManifestGets"]["run"]:
            failures.append(f"not one copy's pulls: {figures['hubManifestGets']}")
        if not all(copied.values()) or figures["buildFailures"]:
            failures.append(f"the tags were not written in ECR: {copied} {figures['buildFailures']}")
    finally:
        app.session_factory = previous
    if failures:
        raise RuntimeError("the re-tag scenarios did not behave as the product says:\n" + "\n".join(failures))


STEADY_REPOSITORY = "bench/steady"


def seed_steady(upstream: Registry, ecr: Registry, tokens: TokenServer, layout: Layout, count: int) -> list[str]:
    """`count` tags of one image on both sides (unchanged: the steady state), PUT through the registry API by a few
    threads; a push token per slice, so none expires mid-way."""
    from concurrent.futures import ThreadPoolExecutor

    tags = [f"s{i}" for i in range(count)]
    if not tags:
        return tags
    push(layout, f"{upstream.location}/{STEADY_REPOSITORY}:seed", creds=f"{tokens.username}:{tokens.password}")
    push(layout, f"{ecr.location}/mirror/{STEADY_REPOSITORY}:seed", creds=f"{ECR_USER}:{ECR_PASSWORD}")
    basic = base64.b64encode(f"{ECR_USER}:{ECR_PASSWORD}".encode()).decode()
    manifest = manifest_of(layout)

    def seed(part: list[str]) -> None:
        hub_auth = {"Authorization": f"Bearer {push_token(tokens, STEADY_REPOSITORY)}"}
        put_tags(upstream.url, STEADY_REPOSITORY, manifest, layout.media_type, part, headers=hub_auth)
        ecr_auth = {"Authorization": f"Basic {basic}"}
        put_tags(ecr.url, f"mirror/{STEADY_REPOSITORY}", manifest, layout.media_type, part, headers=ecr_auth)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(seed, [tags[i : i + 500] for i in range(0, count, 500)]))
    return tags


def bare_floor(hub: HubProxy | ProxyProcess, ecr: Registry, tags: list[str], workers: int) -> float:
    """Seconds to check `tags` as plainly as HTTP allows: per image a HEAD of the source manifest (Bearer, one token
    per repository scope, cached) and of the ECR-side manifest (Basic), `workers` at a time, one pooled session."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from requests.adapters import HTTPAdapter

    from mirror.registry.client import MANIFEST_ACCEPT

    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=workers, pool_maxsize=workers)
    session.mount("http://", adapter)
    tokens: dict[str, str] = {}
    lock = threading.Lock()
    basic = {"Authorization": "Basic " + base64.b64encode(f"{ECR_USER}:{ECR_PASSWORD}".encode()).decode()}
    accept = {"Accept": MANIFEST_ACCEPT}

    def bearer(repository: str) -> dict[str, str]:
        scope = f"repository:{repository}:pull"
        if scope not in tokens:
            with lock:  # one fetch per scope, as the client's
                if scope not in tokens:
                    url = f"{hub.url}/v2/{repository}/manifests/{tags[0]}"
                    challenge = session.head(url, headers=accept, timeout=10).headers["WWW-Authenticate"]
                    realm = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
                    query = {"service": realm["service"], "scope": scope}
                    tokens[scope] = session.get(realm["realm"], params=query, timeout=10).json()["token"]
        return {"Authorization": f"Bearer {tokens[scope]}"}

    def check(tag: str) -> None:
        source = session.head(
            f"{hub.url}/v2/{STEADY_REPOSITORY}/manifests/{tag}",
            headers={**accept, **bearer(STEADY_REPOSITORY)},
            timeout=10,
        )
        target = session.head(
            f"{ecr.url}/v2/mirror/{STEADY_REPOSITORY}/manifests/{tag}", headers={**accept, **basic}, timeout=10
        )
        digests = source.headers.get("Docker-Content-Digest"), target.headers.get("Docker-Content-Digest")
        if source.status_code != 200 or target.status_code != 200 or digests[0] != digests[1]:
            raise RuntimeError(f"the floor's check of {tag} failed: {source.status_code} {target.status_code}")

    started = time.perf_counter()
    with session, ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(check, tags))
    return time.perf_counter() - started


@contextmanager
def production_logging() -> Iterator[None]:
    """The function's log as deployed (INFO: a line per image), written to /dev/null instead of the runtime's pipe."""
    import logging
    import os

    import app

    handler = app.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    level = app.logger.log_level
    with open(os.devnull, "w") as sink:
        stream = handler.setStream(sink)
        app.logger.setLevel("INFO")
        try:
            yield
        finally:
            app.logger.setLevel(level)
            handler.setStream(stream)


def floor_figures(
    hub: HubProxy | ProxyProcess,
    ecr: Registry,
    tags: list[str],
    invoke: Callable[[dict[str, Any]], Callable[[], dict[str, Any]]],
    *,
    repeats: int,
    workers: int,
    quiet: bool = False,
) -> dict[str, Any]:
    """The handler's steady-state run over `tags` against the bare-HTTP floor: alternated, medians compared."""
    import statistics

    handler = invoke({"images": [f"{STEADY_REPOSITORY}:{t}" for t in tags]})
    floors, handlers = [], []

    def timed_handler() -> None:
        with production_logging():
            started = time.perf_counter()
            report = handler()
            handlers.append(time.perf_counter() - started)
        if report["summary"]["unchanged"] != len(tags):
            raise RuntimeError(f"the handler did not find every image unchanged: {report['summary']}")

    for n in range(repeats):  # in turn first, so neither always runs on a machine the other warmed or tired
        if n % 2:
            timed_handler()
        floors.append(bare_floor(hub, ecr, tags, workers))
        if not n % 2:
            timed_handler()
    floor, seconds = statistics.median(floors), statistics.median(handlers)
    figures = {
        "scenario": f"{len(tags)} unchanged images against the bare-HTTP floor",
        "images": len(tags),
        "handlerSeconds": round(seconds, 2),
        "floorSeconds": round(floor, 2),
        "handlerToFloorRatio": round(seconds / floor, 3),
        "pairRatios": [round(h / f, 3) for h, f in zip(handlers, floors, strict=True)],
        "repetitions": repeats,
        "workers": workers,
        "delaySeconds": hub.delay,
    }
    if not quiet:
        print(json.dumps(figures))
    return figures


def alternated(
    scenario: str,
    hub: HubProxy,
    runs: dict[str, tuple[dict[str, str], Callable[[], dict[str, Any]]]],
    *,
    count: int,
    repeats: int,
    expect: Callable[[dict[str, Any]], bool],
) -> None:
    """Two runs (a name -> the environment it sets, the run; the first is the baseline), `repeats` times each,
    alternated so that neither always goes first; prints the median seconds of each (`seconds<Name>`), the second's
    ratio to the first (`<second>To<First>Ratio`) and the Docker Hub side's requests per image (of `count`). Each
    report must meet `expect`."""
    import os
    import statistics

    (a, b) = runs
    seconds: dict[str, list[float]] = {a: [], b: []}
    requests_per_image: dict[str, float] = {}
    for n in range(2 * repeats):
        which = (a, b)[(n + n // 2) % 2]  # a, b, b, a, a, b
        env, run = runs[which]
        os.environ.update(env)
        sent = len(hub.requests)
        try:
            with production_logging():
                began = time.perf_counter()
                report = run()
                seconds[which].append(time.perf_counter() - began)
        finally:
            for name in env:
                os.environ.pop(name, None)
        if not expect(report):
            raise RuntimeError(f"the {which} run did not go as the scenario says: {report['summary']}")
        requests_per_image[which] = round((len(hub.requests) - sent) / count, 2)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    print(
        json.dumps(
            {
                "scenario": scenario,
                "images": count,
                f"seconds{a.title()}": round(median[a], 2),
                f"seconds{b.title()}": round(median[b], 2),
                f"{b}To{a.title()}Ratio": round(median[b] / median[a], 3),
                "dockerHubRequestsPerImage": requests_per_image,
                "repetitions": repeats,
            }
        )
    )


ARTIFACTS_REPOSITORY = "bench/distinct"


def artifact_figures(
    hub: HubProxy,
    upstream: Registry,
    ecr: Registry,
    tokens: TokenServer,
    layout: Layout,
    invoke: Any,
    *,
    count: int,
    repeats: int,
) -> None:
    """What looking for artifacts costs the steady state: `count` unchanged, unsigned images, each a digest of its
    own (so each is searched: the search is kept per digest), checked with COPY_ARTIFACTS off and on, alternated;
    medians compared, and the Docker Hub side's requests per image counted."""

    tags = [f"d{n}" for n in range(count)]
    manifest = manifest_of(layout)
    hub_auth = {"Authorization": f"Bearer {push_token(tokens, ARTIFACTS_REPOSITORY)}"}
    ecr_auth = {"Authorization": "Basic " + base64.b64encode(f"{ECR_USER}:{ECR_PASSWORD}".encode()).decode()}
    push(layout, f"{upstream.location}/{ARTIFACTS_REPOSITORY}:seed", creds=f"{tokens.username}:{tokens.password}")
    push(layout, f"{ecr.location}/mirror/{ARTIFACTS_REPOSITORY}:seed", creds=f"{ECR_USER}:{ECR_PASSWORD}")
    import requests

    with requests.Session() as http:
        for tag in tags:  # the same layers, a manifest (hence a digest) of its own
            document = json.loads(manifest)
            document["annotations"] = {"org.example.n": tag}
            body = json.dumps(document, separators=(",", ":")).encode()
            for url, name, auth in (
                (upstream.url, ARTIFACTS_REPOSITORY, hub_auth),
                (ecr.url, f"mirror/{ARTIFACTS_REPOSITORY}", ecr_auth),
            ):
                http.put(
                    f"{url}/v2/{name}/manifests/{tag}",
                    data=body,
                    headers={"Content-Type": layout.media_type, **auth},
                    timeout=10,
                ).raise_for_status()
    run = invoke({"images": [f"{ARTIFACTS_REPOSITORY}:{t}" for t in tags]})

    def unsigned(report: dict[str, Any]) -> bool:
        return bool(report["summary"]["unchanged"] == count and not report["summary"]["artifactsFound"])

    alternated(
        f"{count} unchanged unsigned images, each its own digest: COPY_ARTIFACTS off and on",
        hub,
        {"off": ({"COPY_ARTIFACTS": "false"}, run), "on": ({"COPY_ARTIFACTS": "true"}, run)},
        count=count,
        repeats=repeats,
        expect=unsigned,
    )


PLATFORMS_REPOSITORY = "bench/kept"


def platform_figures(
    workdir: Path,
    hub: HubProxy,
    upstream: Registry,
    ecr: Registry,
    tokens: TokenServer,
    invoke: Any,
    *,
    count: int,
    repeats: int,
) -> None:
    """What checking an image mirrored for some platforms costs the steady state: `count` indexes, each a digest of
    its own, unchanged, checked as whole copies (the ECR side holds the upstream index) and as
    `PLATFORMS=linux/amd64` (it holds the mirror's own index of that platform, which the check reads from ECR),
    alternated, without the artifact search; medians compared, and the Docker Hub side's requests per image
    counted."""
    import hashlib

    from mirror.trust import filtered_index, parse_platforms, select_platforms

    layout = write_image(workdir / "kept", "kept platforms")
    whole, kept = [f"w{n}" for n in range(count)], [f"k{n}" for n in range(count)]
    wanted = parse_platforms(["linux/amd64"])
    hub_auth = {"Authorization": f"Bearer {push_token(tokens, PLATFORMS_REPOSITORY)}"}
    ecr_auth = {"Authorization": "Basic " + base64.b64encode(f"{ECR_USER}:{ECR_PASSWORD}".encode()).decode()}
    push(layout, f"{upstream.location}/{PLATFORMS_REPOSITORY}:seed", creds=f"{tokens.username}:{tokens.password}")
    push(layout, f"{ecr.location}/mirror/{PLATFORMS_REPOSITORY}:seed", creds=f"{ECR_USER}:{ECR_PASSWORD}")
    target = f"mirror/{PLATFORMS_REPOSITORY}"
    for n in range(count):  # the same platforms, an index (hence a digest) of its own
        document = json.loads(manifest_of(layout))
        document["annotations"] = {"org.example.n": str(n)}
        body = json.dumps(document, separators=(",", ":")).encode()
        own = filtered_index(select_platforms(document, wanted), "sha256:" + hashlib.sha256(body).hexdigest(), wanted)
        put_tags(upstream.url, PLATFORMS_REPOSITORY, body, layout.media_type, [whole[n], kept[n]], headers=hub_auth)
        put_tags(ecr.url, target, body, layout.media_type, [whole[n]], headers=ecr_auth)
        put_tags(ecr.url, target, own, "application/vnd.oci.image.index.v1+json", [kept[n]], headers=ecr_auth)
    whole_run = invoke({"images": [f"{PLATFORMS_REPOSITORY}:{t}" for t in whole]})
    kept_run = invoke({"images": [f"{PLATFORMS_REPOSITORY}:{t}" for t in kept]})
    alternated(
        f"{count} unchanged indexes, each its own digest: whole copies, and PLATFORMS=linux/amd64",
        hub,
        {
            "whole": ({"COPY_ARTIFACTS": "false"}, whole_run),
            "kept": ({"COPY_ARTIFACTS": "false", "PLATFORMS": "linux/amd64"}, kept_run),
        },
        count=count,
        repeats=repeats,
        expect=lambda report: bool(report["summary"]["unchanged"] == count),
    )


MAXIMUM_SETS, MAXIMUM_TAGS = 60, 2_000


def maximum_figures(hub: HubProxy, upstream: Registry, tokens: TokenServer, layout: Layout, invoke: Any) -> None:
    """The run at the list's maximum, in a process of its own: 60 tag sets over one 2,000-tag repository, each into
    a target of its own, select 120,000 records; the run keeps 20,000 (the cap) and checks each (a dry run: no
    copies). Peak RSS is the whole process's, moto and the in-process Docker Hub proxy included."""
    from mirror.imagelist import MAX_ENTRIES

    repository = "bench/many"
    tags = [f"1.{i // 100}.{i % 100}" for i in range(MAXIMUM_TAGS)]
    push(layout, f"{upstream.location}/{repository}:seed", creds=f"{tokens.username}:{tokens.password}")
    hub_auth = {"Authorization": f"Bearer {push_token(tokens, repository)}"}
    put_tags(upstream.url, repository, manifest_of(layout), layout.media_type, tags, headers=hub_auth)
    images = [
        {"source": repository, "tags": {"semver": ">=1"}, "target": f"mirror/{repository}-{n}"}
        for n in range(MAXIMUM_SETS)
    ]
    figures = measure(
        f"{MAXIMUM_SETS} tag sets over {MAXIMUM_TAGS:,} tags, cut at the maximum of {MAX_ENTRIES:,} entries "
        "(dry run, fresh process)",
        MAX_ENTRIES,
        invoke({"images": images, "dryRun": True}),
        hub,
        quiet=True,
    )
    if figures["summary"]["total"] != MAX_ENTRIES:
        raise RuntimeError(f"the run did not keep {MAX_ENTRIES} entries: {figures['summary']}")
    figures["rssTargetMiB"] = 256
    print(json.dumps(figures))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--copies", type=int, default=16, help="images of the copy scenario (0: skip it)")
    parser.add_argument("--only-copies", action="store_true", help="run the copy scenario alone")
    parser.add_argument("--no-trace", action="store_true", help="time without tracemalloc (no Python peak figure)")
    parser.add_argument(
        "--floor-sizes",
        default="1000,10000",
        help="list sizes of the floor comparison, comma-separated (timing pass only; empty: skip it)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="floor and handler runs alternated per size")
    parser.add_argument("--only-floor", action="store_true", help="run the floor comparison alone")
    parser.add_argument(
        "--maximum",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the scenario at the list's maximum in a fresh process (timing pass only)",
    )
    parser.add_argument("--only-maximum", action="store_true", help=argparse.SUPPRESS)  # that fresh process
    parser.add_argument(
        "--retags",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the re-tag scenarios: aliases moved to a mirrored release, two new tags of one digest (timing pass)",
    )
    parser.add_argument("--only-retags", action="store_true", help="run the re-tag scenarios alone")
    parser.add_argument(
        "--artifacts", type=int, default=0, help="images of the artifact-search scenario (timing pass; 0: skip it)"
    )
    parser.add_argument("--only-artifacts", action="store_true", help="run the artifact-search scenario alone")
    parser.add_argument(
        "--platforms", type=int, default=0, help="images of the platform-check scenario (timing pass; 0: skip it)"
    )
    parser.add_argument("--only-platforms", action="store_true", help="run the platform-check scenario alone")
    args = parser.parse_args(argv)
    args.only_artifacts = args.only_artifacts or args.only_platforms  # both skip the same scenarios
    floor_sizes = (
        [int(n) for n in args.floor_sizes.split(",") if n.strip()]
        if not TRACE and not (args.only_retags or args.only_artifacts)
        else []
    )
    if args.only_copies:
        workdir = Path(tempfile.mkdtemp(prefix="ecr-mirror-bench-"))
        try:
            copy_figures(workdir, args.copies)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0
    alone = args.only_maximum or args.only_floor or args.only_retags or args.only_artifacts
    if args.maximum and not TRACE and not alone:
        import subprocess

        subprocess.run([sys.executable, "-m", "devtools.benchmark", "--no-trace", "--only-maximum"], check=True)
    figures = None if alone else package_figures()
    if figures is not None and not TRACE:
        print(json.dumps(figures))
    workdir = Path(tempfile.mkdtemp(prefix="ecr-mirror-bench-"))
    import os

    os.environ.update(
        {
            **LAMBDA_ENVIRONMENT,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    tokens = TokenServer(workdir / "tokens")
    upstream = Registry(workdir / "upstream", token=tokens)
    hub = HubProxy(upstream, limit=1_000_000, keep_alive=True)
    ecr = Registry(workdir / "ecr", basic=(ECR_USER, ECR_PASSWORD))
    try:
        from moto import mock_aws

        old, new = write_image(workdir / "old", "old"), write_image(workdir / "new", "new")
        repository = "bench/app"
        push(old, f"{upstream.location}/{repository}:seed", creds=f"{tokens.username}:{tokens.password}")
        push(new, f"{upstream.location}/{repository}:seed-new", creds=f"{tokens.username}:{tokens.password}")
        push(old, f"{ecr.location}/mirror/{repository}:seed", creds=f"{ECR_USER}:{ECR_PASSWORD}")
        tags = [f"t{i}" for i in range(0 if alone else args.images)]
        changed = set(tags[: args.images // 10])
        started = time.perf_counter()
        steady = seed_steady(upstream, ecr, tokens, old, 0 if args.only_maximum else max(floor_sizes, default=0))
        hub_auth = {"Authorization": f"Bearer {push_token(tokens, repository)}"}
        put_tags(
            upstream.url,
            repository,
            manifest_of(old),
            old.media_type,
            [t for t in tags if t not in changed],
            headers=hub_auth,
        )
        put_tags(upstream.url, repository, manifest_of(new), new.media_type, sorted(changed), headers=hub_auth)
        basic = base64.b64encode(f"{ECR_USER}:{ECR_PASSWORD}".encode()).decode()
        put_tags(
            ecr.url,
            f"mirror/{repository}",
            manifest_of(old),
            old.media_type,
            tags,
            headers={"Authorization": f"Basic {basic}"},
        )
        print(
            f"seeded {len(tags)} + {len(steady)} tags on each side in {time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )

        env = {
            "CODEBUILD_PROJECT": PROJECT,
            "REGISTRY_ENDPOINTS": json.dumps({"docker.io": hub.url, ECR_ACCOUNT_HOST: ecr.url}),
        }
        os.environ.update(env)
        import boto3

        import app
        from mirror.settings import Settings

        with mock_aws():
            # moto answers boto3 through botocore's event hooks, and also patches `requests` (for clients that call
            # AWS with it) so that every request of the process is matched against its URL table first. The
            # function sends no AWS call through `requests`, and in Lambda nothing intercepts its registry traffic:
            # unpatched, the figures are the handler's and the floor's own.
            from moto.core.models import responses_mock

            responses_mock.stop()
            session = boto3.session.Session()
            create_copy_project(session)
            app.session_factory = lambda: session

            def invoke(event: dict[str, Any]) -> Callable[[], dict[str, Any]]:
                return lambda: app.handler(event, FakeLambdaContext(timeout_seconds=900))

            if args.only_maximum:
                maximum_figures(hub, upstream, tokens, old, invoke)
                return 0
            if floor_sizes:
                workers = Settings.from_env().max_concurrency
                remote = ProxyProcess(upstream.port)  # the floor's Docker Hub side: out of the measured process
                os.environ["REGISTRY_ENDPOINTS"] = json.dumps({"docker.io": remote.url, ECR_ACCOUNT_HOST: ecr.url})
                try:
                    floor_figures(remote, ecr, steady[:100], invoke, repeats=1, workers=workers, quiet=True)  # warm-up
                    for size in floor_sizes:
                        floor_figures(remote, ecr, steady[:size], invoke, repeats=args.repeats, workers=workers)
                finally:
                    os.environ["REGISTRY_ENDPOINTS"] = env["REGISTRY_ENDPOINTS"]
                    remote.close()
            if args.only_floor:
                return 0
            if args.only_retags:
                retag_figures(workdir, hub, upstream, ecr, tokens)
                return 0
            if args.artifacts and not TRACE:
                artifact_figures(hub, upstream, ecr, tokens, old, invoke, count=args.artifacts, repeats=args.repeats)
            if args.platforms and not TRACE:
                platform_figures(
                    workdir, hub, upstream, ecr, tokens, invoke, count=args.platforms, repeats=args.repeats
                )
            if args.only_artifacts:
                return 0
            unchanged_tags = [t for t in tags if t not in changed]
            measure(
                f"{len(unchanged_tags)} images, all unchanged (steady state)",
                len(unchanged_tags),
                invoke({"images": [f"{repository}:{t}" for t in unchanged_tags]}),
                hub,
            )
            measure(
                f"{args.images} images, {len(changed)} changed (builds started)",
                args.images,
                invoke({"images": [f"{repository}:{t}" for t in tags]}),
                hub,
            )
            pinned = [f"{repository}:p{i}@{old.digest}" for i in range(args.entries)]
            measure(
                f"{args.entries} entries pinned by digest, dry run",
                args.entries,
                invoke({"images": pinned, "dryRun": True}),
                hub,
            )
            if args.retags and not TRACE:  # figures of pulls, not of time: once, in the timing pass
                retag_figures(workdir, hub, upstream, ecr, tokens)
        if args.copies and not TRACE:  # wall times only: the timing pass
            copy_figures(workdir, args.copies)
    finally:
        hub.close()
        upstream.close()
        ecr.close()
        tokens.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

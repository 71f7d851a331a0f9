"""The whole mirror on one machine, no AWS account and no Docker: `make sandbox`.

Starts on 127.0.0.1 an "upstream" registry with Bearer token auth (standing in for Docker Hub, rate-limit headers
included), an "ECR" registry with Basic auth and a moto server for the AWS APIs; seeds upstream with sample images;
then runs the real handler as the nightly schedule would, and the builds it starts with the build phase of the real
buildspec from template.yaml (the copy code CodeBuild runs). It changes one upstream image and releases a tag while
the build's address is low on Docker Hub pulls (one copy is deferred), runs again once the window has reset, and
once more to show that nothing is left to copy. Every report is kept as JSON; every process started is stopped at
the end, on Ctrl-C and on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lambda"))

from devtools.buildspec import BuildRun, exported_variables, run_build_phase  # noqa: E402
from devtools.images import Layout, push, write_image  # noqa: E402
from devtools.localaws import (  # noqa: E402
    LAMBDA_ENVIRONMENT,
    PROJECT,
    LocalCodeBuild,
    build_environment,
    create_copy_project,
)
from devtools.profiles import ARTIFACT_REGISTRY  # noqa: E402
from devtools.registries import (  # noqa: E402
    ECR_ACCOUNT_HOST,
    ECR_PASSWORD,
    ECR_USER,
    HubProxy,
    K8sFront,
    Registry,
    TokenServer,
    auth_file,
    free_port,
)
from devtools.signing import Repo, Signer  # noqa: E402
from devtools.standins import RegistryFront  # noqa: E402

BUCKET = "ecr-mirror-sandbox"
# (repository on "Docker Hub", tag, kind of manifest): a multi-arch index among them.
SAMPLES = [
    ("library/nginx", "1.27", "oci-index"),
    ("library/alpine", "3.20", "docker-list"),
    ("library/amazonlinux", "2023", "oci-manifest"),
    ("bitnami/redis", "7.4", "docker-manifest"),
]
#: the samples mirrored for some platforms only (`platforms:` on their entry): the mirror writes an index of its own
PLATFORMS = {"library/alpine": ["linux/arm64"]}
CHANGED = "library/nginx"
#: an image of registry.k8s.io, whose front end redirects every registry request to its Artifact Registry backend
K8S_IMAGE = ("pause", "3.10")
K8S_BACKEND = ARTIFACT_REGISTRY.name
# A tag set: the two highest node versions from 20 on. Run 2 releases node 23, which the rule picks up by itself.
TAG_SET = ("library/node", {"semver": ">=20", "latest": 2})
NODE_TAGS = ["18", "20", "21", "22"]
RELEASED = "23"
#: run 2's Docker Hub pulls left for the build: the reserve (10) and 2, enough for node 23 (a single manifest: one
#: pull), not for nginx (an index and two platforms, counted from its copy in ECR: 3)
LOW_QUOTA = 12


@dataclass
class Sandbox:
    workdir: Path
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    codebuild: LocalCodeBuild = field(default_factory=LocalCodeBuild)
    signer: Signer = field(default_factory=Signer)

    def start(self) -> None:
        self.tokens = TokenServer(self.workdir / "tokens")
        self.stack.callback(self.tokens.close)
        self.upstream = Registry(self.workdir / "upstream", token=self.tokens)
        self.stack.callback(self.upstream.close)
        self.hub = HubProxy(self.upstream)
        self.stack.callback(self.hub.close)
        self.ecr = Registry(self.workdir / "ecr", basic=(ECR_USER, ECR_PASSWORD))
        self.stack.callback(self.ecr.close)
        # registry.k8s.io: its front end (archeio), and a public Artifact Registry repository behind it
        self.k8s_backend = Registry(self.workdir / "k8s-backend")
        self.stack.callback(self.k8s_backend.close)
        self.artifact_registry = RegistryFront(ARTIFACT_REGISTRY, self.k8s_backend)
        self.stack.callback(self.artifact_registry.close)
        self.k8s = K8sFront(self.artifact_registry.url)
        self.stack.callback(self.k8s.close)

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request lines
        port = free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.moto.start()
        self.stack.callback(self.moto.stop)
        self.environment = {
            **LAMBDA_ENVIRONMENT,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "sandbox",
            "AWS_SECRET_ACCESS_KEY": "sandbox",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "CODEBUILD_PROJECT": PROJECT,
            "IMAGE_LIST": f"s3://{BUCKET}/lists/images.yaml",
            "REPORT_LOCATION": f"s3://{BUCKET}/reports",
            "REGISTRY_ENDPOINTS": json.dumps(
                {
                    "docker.io": self.hub.url,
                    ECR_ACCOUNT_HOST: self.ecr.url,
                    "registry.k8s.io": self.k8s.url,
                    K8S_BACKEND: self.artifact_registry.url,
                }
            ),
        }
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(key, None)
        os.environ.update(self.environment)

    def seed(self, repository: str, tag: str, kind: str, content: str) -> Layout:
        layout = write_image(
            self.workdir / "layouts" / f"{repository.replace('/', '_')}-{content}", content, kind=kind, tag=tag
        )
        push(
            layout,
            f"{self.upstream.location}/{repository}:{tag}",
            creds=f"{self.tokens.username}:{self.tokens.password}",
        )
        return layout

    def seed_k8s(self, repository: str, tag: str) -> Layout:
        """An image where registry.k8s.io's redirect points: k8s-artifacts-prod/images/<repository> on the backend,
        signed as the Kubernetes release process signs its images (cosign, a `.sig` tag beside the image)."""
        layout = write_image(
            self.workdir / "layouts" / f"k8s-{repository}", f"k8s-{repository}", kind="oci-index", tag=tag
        )
        push(layout, f"{self.k8s_backend.location}/{self.k8s.path}/{repository}:{tag}")
        self.sign_k8s(repository, layout.digest)
        return layout

    def sign_k8s(self, repository: str, digest: str, note: str = "") -> None:
        """Sign (or sign again) a registry.k8s.io image with the sandbox's key, as `cosign sign --key` does."""
        self.signer.sign(Repo(self.k8s_backend.url, f"{self.k8s.path}/{repository}", {}), digest, note)

    def prepare_aws(self) -> None:
        import boto3

        session = boto3.session.Session()
        session.client("s3").create_bucket(Bucket=BUCKET)
        images = "\n".join(
            f"  - {{source: {r.removeprefix('library/')}:{t}, platforms: [{', '.join(PLATFORMS[r])}]}}"
            if r in PLATFORMS
            else f"  - {r.removeprefix('library/')}:{t}"
            for r, t, _ in SAMPLES
        )
        repository, rule = TAG_SET
        images += f"\n  - source: {repository.removeprefix('library/')}\n    tags: {json.dumps(rule)}"
        images += f"\n  - registry.k8s.io/{K8S_IMAGE[0]}:{K8S_IMAGE[1]}"
        session.client("s3").put_object(Bucket=BUCKET, Key="lists/images.yaml", Body=f"images:\n{images}\n")
        create_copy_project(session)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """The real handler, with a session that hands each StartBuild's parameters to this sandbox's CodeBuild."""
        import boto3

        import app
        from devtools.context import FakeLambdaContext

        session = boto3.session.Session()
        self.codebuild.attach(session)
        app.session_factory = lambda: session
        # The function's JSON logs and metrics go to a file, as they would go to CloudWatch.
        with (self.workdir / "reports" / "function.log").open("a") as log, contextlib.redirect_stdout(log):
            handler = app.logger.registered_handler
            assert isinstance(handler, logging.StreamHandler)
            previous = handler.setStream(log)
            try:
                report: dict[str, Any] = app.handler(event, FakeLambdaContext(timeout_seconds=900))
            finally:
                handler.setStream(previous)
        return report

    def run_builds(self) -> list[BuildRun]:
        """What CodeBuild would do: the buildspec's build phase with each build's MIRROR_IMAGES, then its post_build
        phase, whose exported variables (the Docker Hub pulls spent) the next run reads back from CodeBuild."""
        auth = auth_file(self.workdir / "auth.json", {self.ecr.location: (ECR_USER, ECR_PASSWORD)})
        runs: list[BuildRun] = []
        import boto3

        for build_id, params in self.codebuild.pending():
            env = build_environment(params, boto3.session.Session())
            env["MIRROR_PULLS_FILE"] = str(self.workdir / f"pulls-{len(self.codebuild.started)}-{len(runs)}")
            run = run_build_phase(
                env.pop("MIRROR_IMAGES"),
                auth,
                cwd=self.workdir,
                ecr_registry=self.ecr.location,
                registry_endpoints=self.environment["REGISTRY_ENDPOINTS"],  # the copy project's, as the function's
                extra_env=env,
            )
            exported = exported_variables({"MIRROR_PULLS_FILE": env["MIRROR_PULLS_FILE"]}, cwd=self.workdir)
            self.codebuild.finish(build_id, run.returncode == 0, exported)
            runs.append(run)
        return runs

    def close(self) -> None:
        self.stack.close()


def artifacts(image: dict[str, Any], location: str | None, arrived: set[str], *, planned: bool) -> str:
    """What refers to the image and what became of it: `2 signature, attestation: 1 mirrored, 1 copied`."""
    found = image.get("artifacts") or []
    if not found or location is None:
        return "-"
    repository = location.rsplit(":", 1)[0]
    states: dict[str, int] = {}
    for a in found:
        where = f"{repository}:{a['tag']}" if a["tag"] else f"{repository}@{a['digest']}"
        state = (
            "mirrored"
            if a["mirrored"]
            else "to copy"
            if planned
            else "copied"
            if any(w.endswith(where) for w in arrived)
            else "not copied"
        )
        states[state] = states.get(state, 0) + 1
    kinds = ", ".join(sorted({a["kind"] for a in found}))
    return f"{len(found)} {kinds}: " + ", ".join(f"{n} {state}" for state, n in states.items())


def short(digest: str | None) -> str:
    return digest.split(":", 1)[1][:12] if digest else "-"


def table(title: str, report: dict[str, Any], builds: list[BuildRun] | None) -> str:
    """The run's records as a table, with what its builds did to each (`builds`: None for a plan, which starts
    none: the COPY column then says what a run would do, a copy or a re-tag)."""
    ran = builds or []
    copied = {line.split(" -> ", 1)[1] for run in ran for line in run.lines("COPIED")}
    failed = {line.split(" ", 2)[1].rstrip(":") for run in ran for line in run.lines("FAILED")}
    deferred = {line.split(" ", 2)[1].rstrip(":") for run in ran for line in run.lines("DEFERRED")}
    arrived = {line.split(" ", 2)[1] for run in ran for line in run.lines("ARTIFACT")}
    rows = [("IMAGE", "STATUS", "SOURCE", "ECR BEFORE", "COPY", "ARTIFACTS")]
    for image in report["images"]:
        location = image["target"] and image["target"].split("/", 1)[1]
        copy_state = "-"
        if builds is None and image["status"] in ("missing", "changed"):
            copy_state = "re-tag" if image.get("retag") else "copy"
        elif image["build"]:
            copy_state = next(
                (
                    state
                    for state, targets in (("copied", copied), ("FAILED", failed), ("deferred by the build", deferred))
                    if any(t.endswith(location) for t in targets)
                ),
                "started",
            )
        if image["status"] == "unchanged" and image["build"] and copy_state == "copied":
            copy_state = "-"  # its re-tag only brought the artifacts
        rows.append(
            (
                image["source"] + (f" ({', '.join(image['platforms'])})" if image.get("platforms") else ""),
                image["status"],
                short(image["sourceDigest"]),
                short(image["targetDigest"]),
                copy_state,
                artifacts(image, location, arrived, planned=builds is None),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [title, "-" * len(title)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    s = report["summary"]
    spent = sum(int(m.group(1)) for run in ran if (m := re.search(r"; (\d+) Docker Hub pulls spent", run.output)))
    remaining = report["rateLimit"].get("docker.io", {}).get("remaining", "n/a")
    lines.append(
        f"{s['total']} images: {s['unchanged']} unchanged, {s['changed']} changed, {s['missing']} missing, "
        f"{s['deferred']} deferred, {s['failed']} failed, {s['invalid']} invalid; "
        + (
            f"Docker Hub pulls remaining: {remaining}"
            if builds is None
            else f"{s['buildsStarted']} build(s) started; Docker Hub pulls remaining: {remaining}; the copies spent "
            f"{spent} pull(s)"
        )
    )
    previous = report.get("previousRun")
    if previous and previous["dockerHubPulls"] is not None:
        lines.append(
            f"the previous run's {previous['builds']} build(s) spent {previous['dockerHubPulls']} Docker Hub pull(s), "
            "as CodeBuild reported them to this run"
        )
    return "\n".join(lines)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".sandbox", help="state and reports (wiped at start)")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "reports").mkdir(parents=True)
    signal.signal(signal.SIGTERM, _terminate)

    sandbox = Sandbox(workdir)
    scheduled = json.loads((ROOT / "events" / "scheduled.json").read_text())
    try:
        print(
            "starting: token endpoint, upstream registry (Bearer), ECR registry (Basic), registry.k8s.io's front end "
            "and backend, moto server ..."
        )
        started = time.monotonic()
        sandbox.start()
        for number, (repository, tag, kind) in enumerate(SAMPLES):
            sandbox.seed(repository, tag, kind, f"sample-{number}-v1")
        for tag in NODE_TAGS:
            sandbox.seed(TAG_SET[0], tag, "oci-manifest", f"node-{tag}")
        pause = sandbox.seed_k8s(*K8S_IMAGE)
        sandbox.prepare_aws()
        print(
            f"ready in {time.monotonic() - started:.1f}s; upstream seeded with {len(SAMPLES)} images and "
            f"{TAG_SET[0]} {', '.join(NODE_TAGS)} (the list's tag set: {json.dumps(TAG_SET[1])}); "
            f"registry.k8s.io/{':'.join(K8S_IMAGE)} (signed with cosign's tag scheme) behind a front end that "
            "redirects to its backend\n"
        )

        # (title, what changes upstream, the Docker Hub pulls the build's address has left when it copies)
        steps = [
            ("run 1: the first nightly run finds nothing in ECR", None, None),
            (
                f"run 2: {CHANGED} changed upstream, node {RELEASED} was released and registry.k8s.io/"
                f"{K8S_IMAGE[0]} signed again (only its new signature is copied); the build's address has "
                f"{LOW_QUOTA} Docker Hub pulls left (the reserve is 10): {CHANGED} waits",
                CHANGED,
                LOW_QUOTA,
            ),
            ("run 3: the pull window has reset: what waited is copied", None, None),
            ("run 4: nothing left to copy", None, None),
        ]
        for number, (title, change, quota) in enumerate(steps, 1):
            if change:
                repository, tag, kind = next(s for s in SAMPLES if s[0] == change)
                sandbox.seed(repository, tag, kind, "sample-changed-v2")
                sandbox.seed(TAG_SET[0], RELEASED, "oci-manifest", f"node-{RELEASED}")
                sandbox.sign_k8s(K8S_IMAGE[0], pause.digest, note="signed again")
            sandbox.hub.remaining = quota if quota is not None else sandbox.hub.limit
            report = sandbox.invoke(scheduled)
            builds = sandbox.run_builds()
            (workdir / "reports" / f"run-{number}.json").write_text(json.dumps(report, indent=1))
            (workdir / "reports" / f"run-{number}-builds.json").write_text(
                json.dumps([{"returncode": b.returncode, "output": b.output} for b in builds], indent=1)
            )
            print(table(title, report, builds) + "\n")
            if any(b.returncode for b in builds):
                print("a build failed; its output is in", workdir / "reports" / f"run-{number}-builds.json")
                return 1
        print(
            f"reports: {workdir / 'reports'} (run-N.json: the function's report; run-N-builds.json: the copy's "
            "output; function.log: the function's JSON logs and metrics)"
        )
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything")
        return 130
    finally:
        sandbox.close()


if __name__ == "__main__":
    sys.exit(main())

"""`make sandbox` runs the main job end to end; its outcome is read from the reports, not the printed text."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_sandbox(workdir: Path) -> subprocess.CompletedProcess[str]:
    """The README's command, as a newcomer types it."""
    return subprocess.run(
        ["make", "sandbox", f"SANDBOX_DIR={workdir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))},
    )


def report(workdir: Path, number: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workdir / "reports" / f"run-{number}.json").read_text())
    return data


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {i["source"]: i["status"] for i in data["images"]}


def processes_under(workdir: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-af", str(workdir)], capture_output=True, text=True, check=False).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


def test_sandbox_mirrors_then_copies_the_change_then_rests_and_runs_again_cleanly(tmp_path: Path) -> None:
    workdir = tmp_path / "sandbox"
    for attempt in (1, 2):  # the second run starts from scratch just as cleanly
        done = run_sandbox(workdir)
        assert done.returncode == 0, done.stdout + done.stderr

        first, second, third, fourth = (report(workdir, n) for n in (1, 2, 3, 4))
        assert set(statuses(first).values()) == {"missing"}
        assert first["summary"]["buildsStarted"] == 1
        # the tag set (node >=20, the latest 2) selected 22 and 21 in run 1; run 2 picks up the new 23 by itself
        assert [i["source"] for i in first["images"] if i.get("rule")] == [
            "docker.io/library/node:22",
            "docker.io/library/node:21",
        ]
        assert statuses(second) == {
            "docker.io/library/nginx:1.27": "changed",
            "docker.io/library/alpine:3.20": "unchanged",
            "docker.io/library/amazonlinux:2023": "unchanged",
            "docker.io/bitnami/redis:7.4": "unchanged",
            "docker.io/library/node:23": "missing",
            "docker.io/library/node:22": "unchanged",
            "registry.k8s.io/pause:3.10": "unchanged",  # checked through its front end's redirect
        }
        assert second["summary"]["tagSets"] == 1
        # run 2's build had 12 Docker Hub pulls left, 2 above the reserve of 10: node 23 (a single manifest, 1 pull)
        # was copied, nginx (3, counted from its copy in ECR) was deferred by the build, not failed; run 3, the
        # window reset, copies it
        (run_2,) = json.loads((workdir / "reports" / "run-2-builds.json").read_text())
        assert run_2["returncode"] == 0
        deferred = [line.split()[1] for line in run_2["output"].splitlines() if line.startswith("DEFERRED")]
        assert [target.rstrip(":").rsplit("/", 2)[-2:] for target in deferred] == [["library", "nginx:1.27"]]
        # pause's re-tag (it is unchanged) brought only its new signature, at no Docker Hub pull
        assert "2 copied, 1 deferred, 0 failed; 1 artifacts copied, 0 not; 1 Docker Hub pulls spent" in run_2["output"]
        # what each run's build spent comes back to the next run through CodeBuild's exported variable
        # (alpine, kept for linux/arm64 only, cost its index and one platform: 2 of the 10 a whole copy costs)
        assert (second["previousRun"]["runId"], second["previousRun"]["dockerHubPulls"]) == (first["runId"], 9)
        assert third["previousRun"]["dockerHubPulls"] == 1
        assert fourth["previousRun"]["dockerHubPulls"] == 3
        assert {s: v for s, v in statuses(third).items() if v != "unchanged"} == {
            "docker.io/library/nginx:1.27": "changed"
        }
        assert set(statuses(fourth).values()) == {"unchanged"}
        assert fourth["summary"]["buildsStarted"] == 0
        # What run 1 copied is what run 2 found in ECR; run 2's new nginx is what runs 3 and 4 found.
        for image in second["images"]:
            if image["status"] == "unchanged":
                # alpine's is the mirror's own index of arm64, which records the upstream digest it was made from
                held = image.get("mirroredFrom", image["targetDigest"])
                assert held == next(i["sourceDigest"] for i in first["images"] if i["source"] == image["source"])
        alpine = next(i for i in second["images"] if "alpine" in i["source"])
        assert alpine["platforms"] == ["linux/arm64"]
        assert alpine["targetDigest"] != alpine["sourceDigest"] == alpine["mirroredFrom"]
        nginx = next(i for i in fourth["images"] if "nginx" in i["source"])
        assert nginx["targetDigest"] == next(i for i in second["images"] if "nginx" in i["source"])["sourceDigest"]
        builds = json.loads((workdir / "reports" / "run-1-builds.json").read_text())
        assert [b["returncode"] for b in builds] == [0]
        assert "7 copied, 0 deferred, 0 failed; 1 artifacts copied" in builds[0]["output"]  # pause's signature
        pause = next(i for i in first["images"] if i["source"] == "registry.k8s.io/pause:3.10")
        assert pause["target"].endswith("/mirror/registry.k8s.io/pause:3.10")
        # signed upstream: its signature is found, copied, then mirrored; signed again in run 2, only the new one
        signed = [next(i for i in r["images"] if "pause" in i["source"]) for r in (first, second, third)]
        assert [[a["mirrored"] for a in p["artifacts"]] for p in signed] == [[False], [False], [True]]
        assert [p["artifacts"][0]["kind"] for p in signed] == ["signature"] * 3
        assert signed[0]["artifacts"][0]["digest"] != signed[1]["artifacts"][0]["digest"]
        assert "1 signature: 1 copied" in done.stdout
        assert "run 2: library/nginx changed upstream, node 23 was released" in done.stdout, attempt
        assert processes_under(workdir) == []


def test_sandbox_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    workdir = tmp_path / "sandbox"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.sandbox", "--workdir", str(workdir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Unbuffered: through a pipe Python buffers its output, and "ready" could arrive only once every run is done.
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
        | {"PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("ready"):
            break
    assert seen, "the sandbox printed nothing"
    assert seen[-1].startswith("ready"), "".join(seen)
    assert processes_under(workdir), "the registries should be running"
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]

    assert proc.returncode == 130, output
    assert "interrupted" in output
    assert processes_under(workdir) == []

"""`make plan LIST=...`: the function's own stages on a laptop, against the local registries; it reads only."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools import plan
from devtools.registries import ECR_ACCOUNT_HOST, ECR_PASSWORD, ECR_USER
from tests.integration.conftest import Mirror

ROOT = Path(__file__).resolve().parents[2]
TAGS = ["0.9", "1.0.0", "1.1.0", "1.2.0", "1.2", "2.0.0", "2.0.0-rc1", "latest"]


@dataclass
class Planned:
    code: int
    out: str
    err: str


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    """An empty Docker config directory: the user's own ~/.docker is never read by a test."""
    directory = tmp_path / "docker"
    directory.mkdir()
    return directory


def write_list(path: Path, images: list[object] | str) -> Path:
    path.write_text(images if isinstance(images, str) else json.dumps({"images": images}))
    return path


def run_plan(
    mirror: Mirror,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    docker_config: Path,
    images: list[object] | str,
    *args: str,
) -> Planned:
    """`python -m devtools.plan LIST` in this process, with the deployment's settings and moto's AWS."""
    for key, value in mirror.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.setattr(plan, "session_factory", lambda region: mirror.session)
    listed = write_list(mirror.workdir / "images.yaml", images)
    capsys.readouterr()
    code = plan.main([str(listed), *args])
    out, err = capsys.readouterr()
    return Planned(code, out, err)


def rows(out: str) -> dict[str, list[str]]:
    """The table's rows by image: status, source digest, target digest, copy (not the artifacts column after them,
    which holds words of its own)."""
    lines = out.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("IMAGE "))
    end = next(n for n, line in enumerate(lines) if n > start and " images: " in line)
    return {cells[0]: cells[1:5] for cells in (line.split() for line in lines[start + 1 : end])}


def short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def test_a_plan_shows_each_image_and_what_each_tag_set_selected_and_left_out(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], docker_config: Path
) -> None:
    web = mirror.seed("web", "w", tag="1")
    app = mirror.seed_tags("app", TAGS)
    images: list[object] = [f"{mirror.image('web')}:1", {"source": mirror.image("app"), "tags": {"semver": ">=1 <2"}}]

    done = run_plan(mirror, monkeypatch, capsys, docker_config, images)

    assert done.code == 0, done.err
    assert f"targets checked in ECR {ECR_ACCOUNT_HOST}" in done.out
    table = rows(done.out)
    # the tag set's four tags are one image here: copied once, then re-tagged after that copy
    app_rows = {
        f"docker.io/{mirror.image('app')}:{t}": ["missing", short(app[t]), "-", "copy" if t == "1.2.0" else "re-tag"]
        for t in TAGS[1:5]
    }
    assert table == {f"docker.io/{mirror.image('web')}:1": ["missing", short(web.digest), "-", "copy"], **app_rows}
    assert (
        f":1.2 -> mirror/{mirror.image('app')}:1.2: a re-tag after the copy to mirror/{mirror.image('app')}:1.2.0"
        in done.out
    )
    assert f"entry 2: docker.io/{mirror.image('app')} tags semver >=1 <2" in done.out
    assert "  selected: 1.2.0, 1.2, 1.1.0, 1.0.0" in done.out
    assert "  left out: not a version: 1 (latest)" in done.out
    assert "  left out: another variant: 1 (2.0.0-rc1)" in done.out
    assert "  left out: outside the range: 2 (2.0.0, 0.9)" in done.out
    assert f"docker.io/{mirror.image('web')}:1 -> mirror/{mirror.image('web')}:1: about 9 Docker Hub pulls" in done.out
    assert "5 images: 0 unchanged, 0 changed, 5 missing" in done.out


def test_latest_counts_releases_by_their_digests(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], docker_config: Path
) -> None:
    for tag in ("1.0", "1.1", "1.2"):
        mirror.seed("node", f"node-{tag}", kind="oci-manifest", tag=tag)

    done = run_plan(
        mirror, monkeypatch, capsys, docker_config, [{"source": mirror.image("node"), "tags": {"latest": 2}}]
    )

    assert done.code == 0, done.err
    assert "  selected: 1.2, 1.1" in done.out
    assert "  left out: older than the 2 newest releases: 1 (1.0)" in done.out
    assert "about 1 Docker Hub pull\n" in done.out  # a single manifest, its type known from its HEAD


def test_an_image_ecr_holds_reads_unchanged_and_the_plan_is_the_functions_dry_run(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], docker_config: Path
) -> None:
    web = mirror.seed("web", "w", tag="1")
    mirror.seed("web", "w", tag="2")  # the same image under another tag: ECR holds it, a re-tag
    mirror.seed("web", "w3", tag="3")
    mirror.seed_ecr(f"mirror/{mirror.image('web')}", "w", tag="1")
    images: list[object] = [f"{mirror.image('web')}:{t}" for t in ("1", "2", "3")]

    done = run_plan(mirror, monkeypatch, capsys, docker_config, images)

    assert done.code == 0, done.err
    table = rows(done.out)
    one, two, three = (f"docker.io/{mirror.image('web')}:{t}" for t in ("1", "2", "3"))
    assert table[one] == ["unchanged", short(web.digest), short(web.digest), "-"]
    assert table[two][0] == table[three][0] == "missing"
    assert (table[two][3], table[three][3]) == ("re-tag", "copy")
    assert f"{two} -> mirror/{mirror.image('web')}:2: a re-tag" in done.out
    assert f"{one} ->" not in done.out

    # The same code as the function: its dry run of the same list reports the same records.
    env = {**plan.DEFAULTS, **mirror.env, "IMAGE_LIST": str(mirror.workdir / "images.yaml")}
    planned = plan.make({**env, "DOCKER_CONFIG": str(docker_config)}, mirror.session)
    dry = mirror.invoke({"images": images, "dryRun": True})
    assert planned.report["images"] == dry["images"]
    assert planned.report["summary"] == dry["summary"]


def ecr_catalog(mirror: Mirror) -> list[str]:
    answer = requests.get(f"{mirror.registries.ecr.url}/v2/_catalog", auth=(ECR_USER, ECR_PASSWORD), timeout=5)
    catalog: list[str] = answer.json()["repositories"]
    return catalog


def test_a_plan_starts_no_build_creates_nothing_and_pulls_nothing(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], docker_config: Path
) -> None:
    mirror.seed("web", "w", tag="1")
    mirror.seed_tags("app", TAGS)
    ecr, codebuild = mirror.session.client("ecr"), mirror.session.client("codebuild")
    repositories = ecr.describe_repositories()["repositories"]
    catalog = ecr_catalog(mirror)

    done = run_plan(
        mirror,
        monkeypatch,
        capsys,
        docker_config,
        [f"{mirror.image('web')}:1", {"source": mirror.image("app"), "tags": {"latest": 2}}],
    )

    assert done.code == 0, done.err
    assert "missing" in done.out
    assert mirror.builds == []
    assert codebuild.list_builds()["ids"] == []
    assert ecr.describe_repositories()["repositories"] == repositories
    assert ecr_catalog(mirror) == catalog
    sent = mirror.hub_requests()
    assert sent
    for method, path in sent:  # HEADs of manifests, the tag list and referrers listings: no Docker Hub pull
        listing = "/tags/list" in path or "/referrers/" in path
        assert (method == "HEAD" and "/manifests/" in path) or (method == "GET" and listing), path


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("images:\n  - &a nginx:1\n  - *a\n", "uses a YAML alias at line 3"),
        ("images: nginx:1\n", "'images' in"),
        ("images: []\n", "is empty: nothing to mirror"),
        ("images:\n  - nginx:1\n   bad: [\n", "is not valid YAML at line"),
    ],
    ids=["alias", "not a list", "empty", "not YAML"],
)
def test_a_list_that_cannot_be_used_exits_2_saying_why(
    mirror: Mirror,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    docker_config: Path,
    text: str,
    reason: str,
) -> None:
    done = run_plan(mirror, monkeypatch, capsys, docker_config, text)

    assert done.code == 2
    assert done.out == ""
    assert done.err.startswith("plan: the image list") or done.err.startswith("plan: 'images'")
    assert reason in done.err
    assert mirror.hub_requests() == []


def test_a_bad_setting_exits_2_naming_it_and_a_bad_entry_is_shown_with_its_reason(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], docker_config: Path
) -> None:
    mirror.seed("web", "w", tag="1")
    images: list[object] = [
        f"{mirror.image('web')}:1",
        {"source": mirror.image("web"), "tags": {"semver": ">=1", "lastest": 2}},
        "example.com/x:1",
    ]

    bad = run_plan(mirror, monkeypatch, capsys, docker_config, images, "--prefix", "Not A Prefix")
    assert bad.code == 2
    assert "plan: TARGET_PREFIX 'Not A Prefix' is not a valid ECR repository prefix" in bad.err

    done = run_plan(mirror, monkeypatch, capsys, docker_config, images)
    assert done.code == 0, done.err
    assert f"invalid: {mirror.image('web')}: entry 2 ('{mirror.image('web')}'): tags: unknown keys lastest" in done.out
    assert "invalid: example.com/x:1: entry 3 ('example.com/x:1'): registry example.com is not an allowed" in done.out
    assert "1 missing, 0 deferred, 0 failed, 2 invalid" in done.out


@pytest.mark.parametrize("key", ["endpoint", "https://index.docker.io/v1/"])
def test_docker_config_credentials_are_used_and_never_shown(
    mirror: Mirror,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    docker_config: Path,
    key: str,
) -> None:
    tokens = mirror.registries.tokens
    mirror.seed("web", "w", tag="1")
    host = mirror.registries.hub.url.split("://", 1)[1] if key == "endpoint" else key
    auth = base64.b64encode(f"{tokens.username}:{tokens.password}".encode()).decode()
    config = {"auths": {host: {"auth": auth}}, "credsStore": "desktop"}
    (docker_config / "config.json").write_text(json.dumps(config))
    scope = f"repository:{mirror.image('web')}:pull"
    before = len(tokens.requests)

    done = run_plan(mirror, monkeypatch, capsys, docker_config, [f"{mirror.image('web')}:1"])

    assert done.code == 0, done.err
    asked = [r for r in tokens.requests[before:] if scope in r.scopes]
    assert asked
    assert {r.username for r in asked} == {tokens.username}  # the token was asked with the Docker config's login
    assert f"registry credentials from {docker_config / 'config.json'}: docker.io" in done.out
    assert "note: " in done.out
    assert "credsStore/credHelpers are not read" in done.out
    for shown in (done.out, done.err):
        assert tokens.password not in shown
        assert auth not in shown

    # A login the token service refuses: the image fails, and its password is still never shown.
    wrong = base64.b64encode(f"{tokens.username}:not-the-s3cret-password".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {host: {"auth": wrong}}}))
    refused = run_plan(mirror, monkeypatch, capsys, docker_config, [f"{mirror.image('web')}:1"])
    assert refused.code == 0, refused.err
    assert "failed: " in refused.out
    for shown in (refused.out, refused.err):
        assert "not-the-s3cret-password" not in shown
        assert wrong not in shown


def test_without_aws_credentials_only_the_sources_are_checked(mirror: Mirror, tmp_path: Path) -> None:
    """The command as a person runs it, with no AWS credentials anywhere: a subprocess, no moto."""
    web = mirror.seed("web", "w", tag="1")
    mirror.seed_ecr(f"mirror/{mirror.image('web')}", "w", tag="1")  # in ECR, but the plan cannot look
    listed = write_list(tmp_path / "images.yaml", [f"{mirror.image('web')}:1"])
    env: dict[str, Any] = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DOCKER_CONFIG": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "REGISTRY_ENDPOINTS": mirror.env["REGISTRY_ENDPOINTS"],
        "REQUEST_TIMEOUT_SECONDS": "5",
    }

    done = subprocess.run(
        [sys.executable, "-m", "devtools.plan", str(listed), "--sources", "docker.io"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "no AWS credentials: targets not checked (each reads as missing)" in done.stdout
    assert rows(done.stdout) == {f"docker.io/{mirror.image('web')}:1": ["missing", short(web.digest), "-", "copy"]}
    assert f"-> mirror/{mirror.image('web')}:1: about 9 Docker Hub pulls" in done.stdout


def test_an_entry_with_platforms_shows_them_and_their_pulls(
    mirror: Mirror, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], docker_config: Path
) -> None:
    mirror.seed("multi", "m", tag="1", arches=("amd64", "arm64", "s390x"))
    images: list[object] = [{"source": f"{mirror.image('multi')}:1", "platforms": ["linux/arm64", "linux/amd64"]}]

    done = run_plan(mirror, monkeypatch, capsys, docker_config, images)

    assert done.code == 0, done.err
    # the index, and each platform with its attestation, assumed: Docker Hub's index is read by the copy alone
    expected = f"-> mirror/{mirror.image('multi')}:1: about 5 Docker Hub pulls, linux/amd64, linux/arm64 only"
    assert expected in done.out

"""The copy CodeBuild runs: the build phase of template.yaml's buildspec, with real skopeo and two real registries."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from devtools.buildspec import run_build_phase
from devtools.registries import ECR_PASSWORD, ECR_USER, auth_file
from mirror.registry import MANIFEST_ACCEPT
from tests.integration.conftest import Mirror


@pytest.fixture
def auth(mirror: Mirror, tmp_path: Path) -> Path:
    return auth_file(tmp_path / "auth.json", {mirror.registries.ecr.location: (ECR_USER, ECR_PASSWORD)})


def ecr_digest(mirror: Mirror, repository: str, reference: str) -> str | None:
    response = requests.head(
        f"{mirror.registries.ecr.url}/v2/{repository}/manifests/{reference}",
        headers={"Accept": MANIFEST_ACCEPT},
        auth=(ECR_USER, ECR_PASSWORD),
        timeout=5,
    )
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


def entry(mirror: Mirror, name: str, digest: str, tag: str, *, pinned: str | None = None) -> dict[str, str]:
    hub, ecr = mirror.registries.hub.location, mirror.registries.ecr.location
    return {
        "source": f"{hub}/{mirror.image(name)}@{pinned or digest}",
        "target": f"{ecr}/mirror/{mirror.image(name)}:{tag}",
        "digest": digest,
    }


def test_multi_arch_index_is_copied_with_every_digest_intact(mirror: Mirror, auth: Path, tmp_path: Path) -> None:
    index = mirror.seed("multi", "m1", kind="oci-index", tag="1")
    docker_list = mirror.seed("dlist", "d1", kind="docker-list", tag="1")
    children = [str(c["digest"]) for c in index.manifests()]

    run = run_build_phase(
        [entry(mirror, "multi", index.digest, "1"), entry(mirror, "dlist", docker_list.digest, "1")], auth, cwd=tmp_path
    )

    assert run.returncode == 0, run.output
    assert ecr_digest(mirror, f"mirror/{mirror.image('multi')}", "1") == index.digest
    assert ecr_digest(mirror, f"mirror/{mirror.image('dlist')}", "1") == docker_list.digest
    for child in children:  # every platform, not only the build machine's
        assert ecr_digest(mirror, f"mirror/{mirror.image('multi')}", child) == child
    assert len(run.lines("COPIED")) == 2
    assert "2 copied, 0 failed" in run.output


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
    )

    assert run.returncode != 0
    assert run.lines("REFUSED entry 1: digest is not the digest the source is pinned to")
    (failed,) = run.lines("FAILED")
    assert f"mirror/{mirror.image('gone')}:1: copy failed" in failed
    assert ecr_digest(mirror, f"mirror/{mirror.image('good')}", "1") == good.digest
    assert ecr_digest(mirror, f"mirror/{mirror.image('other')}", "1") is None
    assert "1 copied, 2 failed" in run.output


@pytest.mark.parametrize(
    "hostile",
    [
        {"source": "SRC; touch MARKER", "target": "TGT", "digest": "DIGEST"},
        {"source": "SRC", "target": "TGT$(touch MARKER)", "digest": "DIGEST"},
        {"source": "SRC", "target": "TGT`touch MARKER`", "digest": "DIGEST"},
        {"source": "SRC\ntouch MARKER", "target": "TGT", "digest": "DIGEST"},
        {"source": "SRC", "target": "TGT", "digest": "DIGEST && touch MARKER"},
        {"source": "--src-creds=x:y SRC", "target": "TGT", "digest": "DIGEST"},
        {"source": "SRC", "target": "TGT", "digest": "DIGEST", "extra": "touch MARKER"},
        {"source": ["SRC"], "target": "TGT", "digest": "DIGEST"},
        "touch MARKER",
    ],
)
def test_hostile_entries_are_refused_without_being_executed(
    mirror: Mirror, auth: Path, tmp_path: Path, hostile: object
) -> None:
    good = mirror.seed("safe", "s", tag="1")
    valid = entry(mirror, "safe", good.digest, "1")
    marker = tmp_path / "pwned"
    text = (
        __import__("json")
        .dumps(hostile)
        .replace("SRC", valid["source"])
        .replace("TGT", valid["target"])
        .replace("DIGEST", good.digest)
        .replace("MARKER", str(marker))
    )

    run = run_build_phase(f"[{text}, {__import__('json').dumps(valid)}]", auth, cwd=tmp_path)

    assert not marker.exists()
    assert run.returncode != 0
    assert len(run.lines("REFUSED entry 1")) == 1
    assert run.lines("COPIED")  # the valid entry after it still ran
    assert ecr_digest(mirror, f"mirror/{mirror.image('safe')}", "1") == good.digest


@pytest.mark.parametrize("value", ["", "not json", '{"source": "x"}', "$(touch /tmp/x)"])
def test_unreadable_mirror_images_fails_the_build(auth: Path, tmp_path: Path, value: str) -> None:
    run = run_build_phase(value, auth, cwd=tmp_path)
    assert run.returncode != 0
    assert run.lines("FAILED: MIRROR_IMAGES")

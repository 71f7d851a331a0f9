"""Tag sets end to end: listed page by page through the Docker Hub-like proxy, selected, checked, copied by the real
build, reported tag by tag with the rule they came from."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from devtools.registries import answer
from tests.integration.conftest import Mirror, copy_entries, ecr_digest

VERSIONS = [f"1.{i}.0" for i in range(200)]
OTHERS = ["latest", "mainline", "stable-perl", "1.27.3-alpine", "1.28-alpine", "20-alpine", "2.0.0-rc1", "2.0.0"]
TAGS = VERSIONS + [f"0.{i}" for i in range(60)] + OTHERS  # 268 tags: three pages of 100


@pytest.fixture
def app(mirror: Mirror) -> str:
    mirror.seed_tags("app", TAGS, release=lambda tag: tag)  # every tag an image of its own
    return mirror.image("app")


def test_each_rule_selects_exactly_and_every_selected_tag_is_checked_copied_and_reported(
    mirror: Mirror, app: str, tmp_path: Path
) -> None:
    pages_before = mirror.registries.hub.tag_pages_served
    rules: list[dict[str, Any]] = [
        {"semver": ">=1.150 <2", "latest": 3},
        {"match": r"^1\.2\d\.0$", "exclude": r"1\.25"},
        {"semver": ">=1", "variant": "alpine"},
        {"match": "latest|mainline"},
    ]
    targets = ["", "/semver", "/regex", "/alpine", "/named"]
    images: list[object] = [
        {"source": app, "tags": rule, "target": f"mirror/{app}{targets[n + 1]}"} for n, rule in enumerate(rules)
    ]

    report = mirror.invoke({"images": images})

    expected = {
        f"mirror/{app}/semver": ["1.199.0", "1.198.0", "1.197.0"],
        f"mirror/{app}/regex": [f"1.2{i}.0" for i in (9, 8, 7, 6, 4, 3, 2, 1, 0)],
        f"mirror/{app}/alpine": ["20-alpine", "1.28-alpine", "1.27.3-alpine"],
        f"mirror/{app}/named": ["latest", "mainline"],
    }
    got: dict[str, list[str]] = {}
    for record in report["images"]:
        repository, tag = record["target"].split("/", 1)[1].rsplit(":", 1)
        got.setdefault(repository, []).append(tag)
        assert record["status"] == "missing"
        assert record["source"] == f"docker.io/{app}:{tag}"
    assert got == expected
    rule_of = {r["target"].rsplit(":", 1)[1]: r["rule"] for r in report["images"]}
    assert rule_of["1.199.0"] == f"entry 1: docker.io/{app} tags semver >=1.150 <2, latest 3"
    assert rule_of["1.20.0"] == f"entry 2: docker.io/{app} tags match ^1\\.2\\d\\.0$, exclude 1\\.25"
    summary = report["summary"]
    assert summary["tagSets"] == 4
    assert summary["total"] == summary["missing"] == sum(map(len, expected.values())) == 17
    # one listing for the four rules on one repository: 100 + 100 + 68 tags
    assert mirror.registries.hub.tag_pages_served - pages_before == 3
    assert not [p for m, p in mirror.hub_requests() if m == "GET" and "/manifests/" in p]  # no pull for a check

    payloads = mirror.mirror_images()  # 17 copies, 10 a build
    assert sum(map(len, payloads)) == 17
    for payload in payloads:
        copy_entries(mirror, payload, tmp_path)

    again = mirror.invoke({"images": images})
    assert {r["status"] for r in again["images"]} == {"unchanged"}


def test_a_rule_that_selects_nothing_is_one_failed_record(mirror: Mirror, app: str) -> None:
    report = mirror.invoke({"images": [{"source": app, "tags": {"semver": ">=9"}}, f"{app}:1.1.0"]})

    nothing, plain = report["images"]
    assert nothing["status"] == "failed"
    assert nothing["error"] == f"tags: the rule selects none of the {len(TAGS)} tags of docker.io/{app}"
    assert nothing["rule"] == f"entry 1: docker.io/{app} tags semver >=9"
    assert plain["status"] == "missing"
    assert "rule" not in plain


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (answer(429, {"Retry-After": "0"}), "source rate limited:"),
        (answer(503), "source upstream error:"),
        (answer(200, {"Link": "garbage; rel=next"}, b'{"tags": ["1.0.0"]}'), "source bad response: .*malformed Link"),
        (answer(200, {"Link": '<?n=100>; rel="next"'}, b'{"tags": ["1.0.0"]}'), "source bad response: .*already read"),
    ],
    ids=["429", "503", "malformed Link", "Link loop"],
)
def test_a_listing_fault_fails_only_that_tag_set(mirror: Mirror, app: str, fault: Any, reason: str) -> None:
    mirror.seed("plain", "p", tag="1")
    mirror.registries.hub.faults[f"/{app}/tags/list"] = fault
    mirror.env["REQUEST_TIMEOUT_SECONDS"] = "2"

    report = mirror.invoke({"images": [{"source": app, "tags": {"latest": 2}}, f"{mirror.image('plain')}:1"]})

    failed, plain = report["images"]
    assert failed["status"] == "failed"
    assert re.match(reason, failed["error"]), failed["error"]
    assert failed["rule"] == f"entry 1: docker.io/{app} tags latest 2"
    assert plain["status"] == "missing"
    assert report["summary"]["total"] == 2


def test_a_dry_run_shows_what_a_rule_selects_today(mirror: Mirror, app: str) -> None:
    report = mirror.invoke({"images": [{"source": app, "tags": {"semver": "^1.198"}}], "dryRun": True})

    assert [r["target"].rsplit(":", 1)[1] for r in report["images"]] == ["1.199.0", "1.198.0"]
    assert mirror.builds == []


def test_a_tag_set_never_writes_a_tag_another_entry_writes(mirror: Mirror, app: str) -> None:
    mirror.seed("other", "o", tag="1")
    report = mirror.invoke(
        {
            "images": [
                f"{app}:1.199.0",  # the same copy: a duplicate, checked and copied once
                {"source": app, "tags": {"semver": "^1.198"}},
                {"source": f"{mirror.image('other')}:1", "target": f"mirror/{app}:1.198.0"},  # another upstream
            ]
        }
    )

    plain, first, second, intruder = report["images"]
    assert plain["status"] == first["status"] == second["status"] == "missing"
    assert intruder["status"] == "invalid"
    assert "a repository belongs to one upstream" in intruder["error"]
    (batch,) = mirror.mirror_images()
    assert sorted(e["target"].rsplit(":", 1)[1] for e in batch) == ["1.198.0", "1.199.0"]


def test_tag_sets_that_select_more_than_the_runs_maximum_are_cut_in_list_order(mirror: Mirror) -> None:
    # 80 rules over 260 tags select 20,800 records: 800 over the cap of 20,000. The rules share one target
    # repository, so every rule after the first selects duplicates (checked once): the run stays short.
    tags = [f"1.{i // 100}.{i % 100}" for i in range(260)]
    mirror.seed_tags("big", tags)
    big = mirror.image("big")
    s3 = mirror.report_bucket()
    images: list[object] = [{"source": big, "tags": {"semver": ">=1"}} for _ in range(80)]

    report = mirror.invoke({"images": images, "dryRun": True})

    full = stored_report(s3, report["reportLocation"])
    assert full["summary"]["total"] == report["summary"]["total"] == 20_000
    per_entry: dict[int, list[dict[str, Any]]] = {}
    for record in full["images"]:
        per_entry.setdefault(int(record["rule"].split(":", 1)[0].removeprefix("entry ")), []).append(record)
    # 20,000 - 80 spare records beyond each entry's own: 76 rules keep all 260 tags, the 77th keeps 236 and says
    # so, the last three keep none and say so.
    assert [len(per_entry[n]) for n in range(1, 81)] == [260] * 76 + [237, 1, 1, 1]
    *kept, cut = per_entry[77]
    assert {r["status"] for r in kept} == {"missing"}
    assert [r["target"] for r in kept] == [r["target"] for r in per_entry[1]][:236]  # the highest versions
    cap = "the run's list is capped at 20,000 entries (earlier entries keep theirs first)"
    assert cut["status"] == "failed"
    assert cut["error"] == f"tags: 24 of the 260 selected tags dropped: {cap}"
    for n in (78, 79, 80):
        assert per_entry[n][0]["error"] == f"tags: 260 of the 260 selected tags dropped: {cap}"
    failed = [r for r in report["images"] if r["status"] == "failed"]
    assert len(failed) == 4  # kept first in the trimmed response


def stored_report(s3: Any, location: str) -> dict[str, Any]:
    bucket, _, key = location[len("s3://") :].partition("/")
    data: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return data


def gets(mirror: Mirror) -> list[str]:
    """The manifests fetched at the Docker Hub side: what Docker Hub counts as pulls."""
    return [p for m, p in mirror.hub_requests() if m == "GET" and "/manifests/" in p]


NODE_LIKE = {  # tag -> release, as node's official tags float (tests/data/official-images/node.json)
    "26.7.0": "26.7.0", "26.7": "26.7.0", "26": "26.7.0", "latest": "26.7.0",
    "26.6.1": "26.6.1", "26.6": "26.6.1", "26.6.0": "26.6.0", "25.9.0": "25.9.0", "25": "25.9.0",
}  # fmt: skip


def test_latest_counts_releases_copies_each_new_digest_once_and_re_tags_the_rest(
    mirror: Mirror, tmp_path: Path
) -> None:
    digests = mirror.seed_tags("node", list(NODE_LIKE), release=NODE_LIKE.__getitem__)
    node = mirror.image("node")
    images: list[object] = [{"source": node, "tags": {"semver": ">=20", "latest": 2}}]

    report = mirror.invoke({"images": images})

    records = {r["target"].rsplit(":", 1)[1]: r for r in report["images"]}
    assert list(records) == ["26.7.0", "26.7", "26", "26.6.1", "26.6"]  # two releases under all their names
    assert {r["status"] for r in records.values()} == {"missing"}
    assert [t for t, r in records.items() if r.get("retag")] == ["26.7", "26", "26.6"]
    assert [records[t]["pulls"] for t in records] == [1, 0, 0, 1, 0]  # one copy per new digest, charged once
    assert gets(mirror) == []  # choosing and checking cost no pull
    (payload,) = mirror.mirror_images()
    assert [(e["target"].rsplit(":", 1)[1], e.get("retag", False), e["pulls"]) for e in payload] == [
        ("26.7.0", False, 1), ("26.7", True, 0), ("26", True, 0), ("26.6.1", False, 1), ("26.6", True, 0),
    ]  # fmt: skip

    copy_entries(mirror, payload, tmp_path)  # the real build: each re-tag written from ECR after its copy

    assert sorted(gets(mirror)) == sorted(f"/v2/{node}/manifests/{digests[t]}" for t in ("26.7.0", "26.6.1"))
    for tag in records:
        assert ecr_digest(mirror, f"mirror/{node}", tag) == digests[tag]
    again = mirror.invoke({"images": images})
    assert {r["status"] for r in again["images"]} == {"unchanged"}


def test_a_tag_that_moves_to_a_mirrored_digest_is_a_re_tag_from_ecr_with_no_pull(
    mirror: Mirror, tmp_path: Path
) -> None:
    releases = {"1.2.3": "1.2.3", "1.2.4": "1.2.4", "1.2": "1.2.3", "latest": "1.2.3"}
    digests = mirror.seed_tags("app", list(releases), release=releases.__getitem__)
    app = mirror.image("app")
    images = [f"{app}:{tag}" for tag in releases]
    first = mirror.invoke({"images": images})
    assert [r.get("retag", False) for r in first["images"]] == [False, False, True, True]
    for payload in mirror.mirror_images():
        copy_entries(mirror, payload, tmp_path)
    mirror.builds.clear()
    # upstream, the moving tags now name 1.2.4, which the mirror holds under its precise tag
    mirror.seed_tags("app", ["1.2", "latest"], release=lambda _: "1.2.4")
    moved = mirror.seed_tags("app", ["1.2.4"], release=lambda _: "1.2.4")["1.2.4"]
    assert moved == digests["1.2.4"]
    before = len(mirror.hub_requests())

    report = mirror.invoke({"images": images})

    records = {r["target"].rsplit(":", 1)[1]: r for r in report["images"]}
    assert [records[t]["status"] for t in releases] == ["unchanged", "unchanged", "changed", "changed"]
    assert records["1.2"]["retag"] is True
    assert records["1.2"]["pulls"] == 0
    (payload,) = mirror.mirror_images()
    assert [(e["target"].rsplit(":", 1)[1], e["retag"], e["pulls"]) for e in payload] == [
        ("1.2", True, 0), ("latest", True, 0),
    ]  # fmt: skip
    copy_entries(mirror, payload, tmp_path)
    # no pull by the run or the build: Docker Hub counts GETs of manifests (a referrers listing is none)
    assert not [p for m, p in mirror.hub_requests()[before:] if m == "GET" and "/manifests/" in p]
    assert ecr_digest(mirror, f"mirror/{app}", "1.2") == ecr_digest(mirror, f"mirror/{app}", "latest") == moved
    assert {r["status"] for r in mirror.invoke({"images": images})["images"]} == {"unchanged"}

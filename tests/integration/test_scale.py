"""A 10,000-entry list: every entry reported once in order, duplicates checked and copied once, memory bounded."""

from __future__ import annotations

import tracemalloc

from tests.integration.conftest import Mirror


def test_ten_thousand_entries_with_duplicates_and_hostile_ones(mirror: Mirror) -> None:
    for name in ("a", "b"):
        mirror.seed(name, name)
    valid = [mirror.image("a"), f"docker.io/{mirror.image('a')}:latest", mirror.image("b")]
    hostile = [f"{mirror.image('a')};id", "../x", "A:1", "x\ny", "\uff4eginx"]
    images: list[object] = [valid[i % 3] if i % 2 else hostile[i % 5] for i in range(10_000)]

    tracemalloc.start()
    report = mirror.invoke({"images": images})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert len(report["images"]) == 10_000
    assert report["summary"]["total"] == 10_000
    assert report["summary"]["invalid"] == 5_000
    assert report["summary"]["missing"] == 5_000
    assert [i["status"] == "invalid" for i in report["images"]] == [i % 2 == 0 for i in range(10_000)]
    (batch,) = mirror.mirror_images()
    assert sorted(e["target"].rsplit("/", 1)[1] for e in batch) == ["a:latest", "b:latest"]
    heads = [p for m, p in mirror.hub_requests() if m == "HEAD" and "/manifests/" in p]
    manifest_heads = [p for p in heads if "/manifests/sha256-" not in p]
    assert len(manifest_heads) <= 2 * 2  # one check per distinct image (plus the 401 that discovers auth)
    signatures = [p for p in heads if p.endswith(".sig")]
    assert len(signatures) == 2  # and one search for its artifacts, however often the list names it
    assert peak < 128 * 2**20, f"peak Python memory {peak / 2**20:.0f} MiB"

from __future__ import annotations

from tests.integration.conftest import Mirror


def test_smoke(mirror: Mirror) -> None:
    layout = mirror.seed("nginx", "v1", tag="1.27")
    report = mirror.invoke({"images": [mirror.image("nginx") + ":1.27"]})
    print(report)
    print(mirror.builds)
    assert report["images"][0]["sourceDigest"] == layout.digest

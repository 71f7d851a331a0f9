"""Trust boundaries against real registries: a credential goes only where it belongs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.images import push, write_image
from devtools.registries import Registry, TokenServer
from tests.integration.conftest import Mirror


@pytest.fixture(params=[True, False], ids=["anonymous pull allowed", "anonymous pull refused"])
def foreign_realm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TokenServer, Registry]]:
    """A registry on 127.0.0.1 whose challenge names a token realm on `localhost`: another host name."""
    tokens = TokenServer(tmp_path / "tokens", realm_host="localhost", anonymous_pull=request.param)
    registry = Registry(tmp_path / "registry", token=tokens)
    try:
        yield tokens, registry
    finally:
        registry.close()
        tokens.close()


def test_a_token_realm_on_another_host_never_receives_the_credential(
    mirror: Mirror, foreign_realm: tuple[TokenServer, Registry]
) -> None:
    tokens, registry = foreign_realm
    layout = write_image(mirror.workdir / "img", "content")
    push(layout, f"{registry.location}/{mirror.image('app')}:1", creds=f"{tokens.username}:{tokens.password}")
    pushes = len(tokens.requests)
    endpoints = json.loads(mirror.env["REGISTRY_ENDPOINTS"]) | {"docker.io": registry.url}
    mirror.env["REGISTRY_ENDPOINTS"] = json.dumps(endpoints)
    # The Docker Hub credential is the token server's own: sent there, it would be accepted.
    mirror.dockerhub_secret(json.dumps({"username": tokens.username, "password": tokens.password}))

    report = mirror.invoke({"images": [f"{mirror.image('app')}:1"]})

    asked = tokens.requests[pushes:]
    assert asked  # the realm was asked...
    assert all(r.username is None for r in asked)  # ...but never with the credential
    (image,) = report["images"]
    if tokens.anonymous_pull:
        assert image["status"] == "missing"
        assert image["sourceDigest"] == layout.digest
    else:
        assert image["status"] == "failed"
        assert "asked without the credentials configured for docker.io" in image["error"]
        assert "the token realm is on localhost" in image["error"]
    assert tokens.password not in json.dumps(report)

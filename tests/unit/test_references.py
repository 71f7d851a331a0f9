"""Reference parsing and normalisation, table-driven."""

from __future__ import annotations

import pytest

from mirror.references import ImageRef, ReferenceError, default_target, parse_reference, parse_target

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", ImageRef("docker.io", "library/nginx", "latest")),
        ("nginx:1.27", ImageRef("docker.io", "library/nginx", "1.27")),
        ("bitnami/redis:7.4", ImageRef("docker.io", "bitnami/redis", "7.4")),
        ("docker.io/nginx", ImageRef("docker.io", "library/nginx", "latest")),
        ("index.docker.io/library/nginx:1", ImageRef("docker.io", "library/nginx", "1")),
        ("registry-1.docker.io/bitnami/redis:7", ImageRef("docker.io", "bitnami/redis", "7")),
        ("ghcr.io/org/app:v1", ImageRef("ghcr.io", "org/app", "v1")),
        ("GHCR.io/org/app:v1", ImageRef("ghcr.io", "org/app", "v1")),
        ("localhost/app", ImageRef("localhost", "app", "latest")),
        ("localhost:5000/a/b/c:x_y.z-1", ImageRef("localhost:5000", "a/b/c", "x_y.z-1")),
        ("127.0.0.1:5000/app:1", ImageRef("127.0.0.1:5000", "app", "1")),
        ("[::1]:5000/app:1", ImageRef("[::1]:5000", "app", "1")),
        (
            "public.ecr.aws/docker/library/python:3.12-slim",
            ImageRef("public.ecr.aws", "docker/library/python", "3.12-slim"),
        ),
        (f"nginx:1.27@{DIGEST}", ImageRef("docker.io", "library/nginx", "1.27", DIGEST)),
        (f"nginx@{DIGEST}", ImageRef("docker.io", "library/nginx", None, DIGEST)),
        ("a__b/c--d:T", ImageRef("docker.io", "a__b/c--d", "T")),
        ("amazonlinux:2023", ImageRef("docker.io", "library/amazonlinux", "2023")),
    ],
)
def test_valid_references_normalise(text: str, expected: ImageRef) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("nginx; rm -rf /", "whitespace"),
        ("nginx:1.27\nmalicious", "whitespace"),
        ("nginx:$(id)", "tag"),
        ("nginx`id`", "not valid"),
        ("nginx|cat", "not valid"),
        ("ngínx:1", "non-ASCII"),
        ("\uff4eginx:1", "non-ASCII"),  # fullwidth n
        ("Nginx:1", "lower case"),
        ("docker.io/Library/nginx", "lower case"),
        ("a/../b", "not valid"),
        ("../etc/passwd", "host"),
        ("0_0.0/x", "host"),  # a dot makes the first component a registry host, as in Docker
        ("nginx:" + "t" * 129, "tag"),
        ("a" * 300, "characters"),
        ("nginx@sha256:abc", "digest"),
        (f"nginx@sha512:{'a' * 128}", "digest"),
        ("-bad.host/app", "host"),
        ("nginx:", "tag"),
        ("/nginx", "not valid"),
        ("nginx/", "not valid"),
        ("a..b", "not valid"),
        ("host.io/", "empty"),
        (12, "string"),
        (None, "string"),
    ],
)
def test_invalid_references_are_rejected_with_reason(text: object, reason: str) -> None:
    with pytest.raises(ReferenceError, match=reason):
        parse_reference(text)


def test_a_path_of_exactly_255_characters_is_accepted_and_256_rejected() -> None:
    # distribution/reference v0.6 limits the path alone; the registry host does not count
    ok = "ghcr.io/" + "a" * 255
    assert parse_reference(ok).repository == "a" * 255
    with pytest.raises(ReferenceError, match="longer than 255"):
        parse_reference(ok + "b")
    assert parse_reference("b" * 247).repository == "library/" + "b" * 247  # 255 with library/
    with pytest.raises(ReferenceError, match="longer than 255"):
        parse_reference("b" * 248)


def test_reference_string_round_trips() -> None:
    ref = parse_reference(f"ghcr.io/org/app:v1@{DIGEST}")
    assert str(ref) == f"ghcr.io/org/app:v1@{DIGEST}"
    assert parse_reference(str(ref)) == ref
    assert ref.reference == DIGEST
    assert parse_reference("nginx").reference == "latest"


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("nginx:1.27", "mirror/library/nginx:1.27"),
        ("bitnami/redis", "mirror/bitnami/redis:latest"),
        ("ghcr.io/org/app:v1", "mirror/ghcr.io/org/app:v1"),
        ("localhost:5000/app:v1", "mirror/localhost-5000/app:v1"),
    ],
)
def test_default_target_names_the_source_under_the_prefix(source: str, target: str) -> None:
    assert str(default_target(parse_reference(source), "mirror")) == target


def test_source_pinned_only_by_digest_needs_a_target_tag() -> None:
    with pytest.raises(ReferenceError, match="needs a target with a tag"):
        default_target(parse_reference(f"nginx@{DIGEST}"), "mirror")
    with pytest.raises(ReferenceError, match="needs a target with a tag"):
        parse_target("mirror/nginx", default_tag=None)
    assert str(parse_target("mirror/nginx:pinned", default_tag=None)) == "mirror/nginx:pinned"


@pytest.mark.parametrize("target", ["mirror/Nginx", "mirror//x", "mirror/x:bad tag", "m", "mirror/x;id", "mirror/-x"])
def test_invalid_targets_are_rejected(target: str) -> None:
    with pytest.raises(ReferenceError):
        parse_target(target, default_tag="1")

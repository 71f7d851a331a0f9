"""Loading and validating the image list."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mirror.imagelist import ImageListError, expand_tag_sets, load_text, parse_document, parse_entries

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"


def test_default_list_is_valid_and_mirrors_amazonlinux() -> None:
    text = load_text("images.yaml", package_dir=LAMBDA_DIR)
    entries = parse_entries(parse_document(text, "images.yaml"), "mirror")
    assert all(e.valid for e in entries)
    assert "docker.io/library/amazonlinux:2023" in [e.text for e in entries]
    assert len(entries) >= 4


def test_mapping_entry_sets_the_target() -> None:
    (entry,) = parse_entries([{"source": "nginx:1.27", "target": "mirror/web"}], "mirror")
    assert str(entry.target) == "mirror/web:1.27"
    (entry,) = parse_entries([{"source": "nginx:1.27", "target": "mirror/web:stable"}], "mirror")
    assert str(entry.target) == "mirror/web:stable"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"source": "nginx", "target": "elsewhere/nginx"}, "outside the mirror prefix"),
        ({"source": "nginx", "tag": "x"}, "unknown keys tag"),
        ({"target": "mirror/x"}, "no 'source'"),
        (["nginx"], "not list"),
        (None, "not NoneType"),
        ({"source": 5}, "must be a string"),
    ],
)
def test_bad_entries_are_invalid_with_reason(raw: object, reason: str) -> None:
    (entry,) = parse_entries([raw], "mirror")
    assert not entry.valid
    assert reason in (entry.error or "")
    assert entry.error is not None
    assert entry.error.startswith("entry 1")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("images: [nginx", "not valid YAML at line"),
        ("- nginx", "mapping with an 'images:' list"),
        ("images: nginx", "must be a list"),
        ("images: []", "empty"),
        ("other: 1", "mapping with an 'images:' list"),
    ],
)
def test_unreadable_lists_fail_the_run(text: str, reason: str) -> None:
    with pytest.raises(ImageListError, match=reason):
        parse_document(text, "list.yaml")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageListError, match=r"cannot read the image list 'nope.yaml': FileNotFoundError"):
        load_text("nope.yaml", package_dir=tmp_path)


def test_file_path_is_relative_to_the_package(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "mine.yaml").write_text(yaml.safe_dump({"images": ["alpine:3.20"]}))
    assert parse_document(load_text("lists/mine.yaml", package_dir=tmp_path), "x") == ["alpine:3.20"]


def test_yaml_aliases_are_refused_before_they_expand() -> None:
    # Nine levels of nine aliases: under 1 KB of text, 9**9 entries when walked.
    lines = ["a0: &a0 [nginx, nginx, nginx, nginx, nginx, nginx, nginx, nginx, nginx]"]
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append("images: *a9")
    text = "\n".join(lines)
    assert len(text) < 1024

    with pytest.raises(ImageListError, match=r"uses a YAML alias at line 2: image lists may not use anchors"):
        parse_document(text, "images.yaml")


def test_a_document_nested_too_deeply_is_a_clear_error() -> None:
    with pytest.raises(ImageListError, match=r"nests too deeply|not valid YAML"):
        parse_document("images: " + "[" * 100_000 + "]" * 100_000, "images.yaml")


def test_a_rejected_entry_is_shown_without_building_its_full_representation() -> None:
    # One list referenced ten times per level, nine levels deep: its full repr would be 10**9 items long.
    nested: list[object] = ["x" * 1000]
    for _ in range(9):
        nested = [nested] * 10
    deep: list[object] = []
    cursor = deep
    for _ in range(100_000):
        inner: list[object] = []
        cursor.append(inner)
        cursor = inner

    wide, very_deep, big_key = parse_entries(
        [nested, deep, {"x" * 10_000: 1, **{f"k{i}": i for i in range(1000)}, "source": "nginx"}], "mirror"
    )

    assert wide.error is not None
    assert not wide.valid
    assert wide.text.startswith("[[[[[[[[[['xxx")
    assert len(wide.text) <= 203
    assert very_deep.text.startswith("[[[[")
    assert len(very_deep.text) <= 203
    assert big_key.error is not None
    assert "and 996 more" in big_key.error
    assert len(big_key.error) < 400


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"source": "nginx:1.27", "tags": {"latest": 2}}, "without a tag or digest"),
        ({"source": "nginx@sha256:" + "a" * 64, "tags": {"latest": 2}}, "without a tag or digest"),
        ({"source": "nginx", "tags": {"latest": 2}, "target": "mirror/web:1"}, "target is a repository"),
        ({"source": "nginx", "tags": {"latest": 2}, "target": "elsewhere/web"}, "outside the mirror prefix"),
        ({"source": "nginx", "tags": {"match": "("}}, "not a valid regular expression"),
        ({"source": "nginx", "tags": {"newest": 1}}, "unknown keys newest"),
        ({"source": "nginx", "tags": {"latest": 2}, "extra": 1}, "expected 'source', 'tags', 'target' and 'platforms'"),
        ({"source": "evil.example.net/x", "tags": {"latest": 2}}, "not an allowed source"),
    ],
)
def test_a_bad_tag_set_is_invalid_with_the_reason(raw: dict[str, object], reason: str) -> None:
    (entry,) = parse_entries([raw], "mirror", {"docker.io"})
    assert entry.error is not None
    assert reason in entry.error
    assert entry.error.startswith("entry 1")


def test_a_tag_set_expands_into_single_tag_entries_that_keep_their_entry_number() -> None:
    images: list[object] = ["redis:7", {"source": "nginx", "tags": {"semver": ">=1.26", "latest": 2}}]
    entries = parse_entries(images, "mirror")
    assert entries[1].tag_set is not None
    assert not entries[1].valid

    expanded = expand_tag_sets(images, entries, {1: ["1.25", "1.26.1", "1.27", "latest"]}, "mirror")

    assert [str(e.target) for e in expanded] == [
        "mirror/library/redis:7",
        "mirror/library/nginx:1.27",
        "mirror/library/nginx:1.26.1",
    ]
    assert [e.number for e in expanded] == [1, 2, 2]
    assert expanded[1].rule == "entry 2: docker.io/library/nginx tags semver >=1.26, latest 2"
    assert all(e.valid for e in expanded)
    (failed,) = expand_tag_sets(images[1:], entries[1:], {1: "source rate limited: x"}, "mirror")
    assert failed.failure == "source rate limited: x"

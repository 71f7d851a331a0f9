"""Loading and validating the image list."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mirror.imagelist import ImageListError, load_text, parse_document, parse_entries

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

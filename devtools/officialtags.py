"""Real tag lists of Docker official images, for tests: `python -m devtools.officialtags <git-dir> <out-dir>`.

Docker Hub keeps every tag ever pushed to an official image, so `tags/list` on `library/<image>` returns all of
them, including tags whose version stopped being built years ago. The public record of those tags is the git
history of https://github.com/docker-library/official-images: each official image is built from the file
`library/<image>`, and every tag that file ever listed was pushed. This walks that history (a bare clone is
enough, no work tree) and writes, per image, every tag ever listed and a synthetic image id for it.

A tag's image is the one it was last built as: the block (entry) that last listed it, in the last commit that
listed it. Tags last listed in the same block of the same commit were pushed together as the same image, so they
share an id, `<first 12 hex of that commit>-<index of the block in that file>` (counted from 0, header excluded).
A SharedTag (a manifest list spanning, say, Windows and Linux entries) belongs to the first non-Windows block
listing it in that commit.

The file format changed over time. The current one is RFC 2822-like blocks separated by blank lines (`Tags:`,
`SharedTags:`, `Architectures:`, `GitCommit:`, `Directory:`; the first block holds defaults such as `GitRepo:`).
Before 2016 it was a line per tag, `<tag>: <git repo>@<commit> [<directory>]`, and in 2013 briefly
`<tag> <git repo> [<ref>]`; there the lines with the same repo, commit (or ref) and directory make one block.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGES = ("node", "nginx", "python", "postgres", "redis", "alpine", "golang", "busybox")

_OLD_LINE = re.compile(r"^(?P<tag>[^\s:#]+)\s*:\s*(?P<repo>\S+)@(?P<commit>[0-9a-fA-F]+)(?:\s+(?P<dir>\S+))?\s*$")
_OLDEST_LINE = re.compile(r"^(?P<tag>[^\s:#]+)\s+(?P<repo>[a-z+]+://\S+)(?:\s+(?P<ref>\S+))?\s*$")
_FIELD = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9-]*)\s*:\s*(?P<value>.*)$")
_NEW_FORMAT = re.compile(r"^(Tags|GitCommit|GitRepo|Maintainers)\s*:", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One entry of a `library/<image>` file: the tags it lists and whether it is a Windows image."""

    tags: tuple[str, ...]
    shared_tags: tuple[str, ...]
    windows: bool


@dataclass(frozen=True)
class History:
    """Every tag of one image with its image id, and the commits they were read from."""

    image: str
    tags: dict[str, str]
    commits: int
    first_date: str
    last_date: str
    last_commit: str


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item for item in (part.strip() for part in value.split(",")) if item)


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    """The blocks of a new-format file as field maps (continuation lines joined, comments dropped)."""
    fields: dict[str, str] = {}
    key: str | None = None
    for raw in [*text.splitlines(), ""]:
        line = raw.rstrip()
        if line.lstrip().startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, None
        elif line[0].isspace() and key is not None:
            fields[key] = f"{fields[key]} {line.strip()}"
        elif match := _FIELD.match(line):
            key = match["key"].lower()
            fields[key] = match["value"].strip()


def parse_new(text: str) -> list[Block]:
    """The blocks of a current-format file; fields of tag-less blocks (the header) are defaults for later ones."""
    defaults: dict[str, str] = {}
    blocks: list[Block] = []
    for stanza in _stanzas(text):
        if "tags" not in stanza and "sharedtags" not in stanza:
            defaults.update(stanza)
            continue
        fields = {**defaults, **stanza}
        arches = fields.get("architectures", "amd64")
        windows = "windows-" in arches or "windowsservercore" in fields.get("constraints", "")
        windows = windows or "nanoserver" in fields.get("constraints", "")
        blocks.append(Block(_split_list(stanza.get("tags", "")), _split_list(stanza.get("sharedtags", "")), windows))
    return blocks


def parse_old(text: str) -> list[Block]:
    """The blocks of an old-format file: lines with the same repo@commit and directory form one block."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for raw in text.splitlines():
        if match := _OLD_LINE.match(raw.strip()):
            key = (match["repo"], match["commit"].lower(), match["dir"] or "")
        elif match := _OLDEST_LINE.match(raw.strip()):
            key = (match["repo"], match["ref"] or "", "")
        else:
            continue
        grouped.setdefault(key, []).append(match["tag"])
    return [Block(tuple(tags), (), windows=False) for tags in grouped.values()]


def parse(text: str) -> list[Block]:
    """The blocks of a `library/<image>` file of either format."""
    return parse_new(text) if _NEW_FORMAT.search(text) else parse_old(text)


def assign(blocks: Sequence[Block]) -> dict[str, int]:
    """Each tag of one file version mapped to the index of its block.

    A tag in some block's Tags belongs to the first such block; a tag only in SharedTags belongs to the first
    non-Windows block sharing it, or to the first block sharing it when all are Windows.
    """
    owner: dict[str, int] = {}
    for index, block in enumerate(blocks):
        for tag in block.tags:
            owner.setdefault(tag, index)
    for want_windows in (False, True):
        for index, block in enumerate(blocks):
            if block.windows and not want_windows:
                continue
            for tag in block.shared_tags:
                owner.setdefault(tag, index)
    return owner


def _git(git_dir: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True, text=True).stdout


def _contents(git_dir: Path, specs: Sequence[str]) -> list[str | None]:
    """The text of each `<commit>:<path>` in specs (None where missing), through one `git cat-file --batch`."""
    batch = subprocess.run(
        ["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
        input="".join(f"{spec}\n" for spec in specs).encode(),
        check=True,
        capture_output=True,
    ).stdout
    texts: list[str | None] = []
    pos = 0
    for _ in specs:
        end = batch.index(b"\n", pos)
        header = batch[pos:end].decode().split()
        pos = end + 1
        if len(header) < 3 or header[1] != "blob":
            texts.append(None)
            continue
        size = int(header[2])
        texts.append(batch[pos : pos + size].decode("utf-8", errors="replace"))
        pos += size + 1
    return texts


def history(git_dir: Path, image: str) -> History:
    """Walks every commit that touched `library/<image>`, oldest first; each tag keeps its last block."""
    path = f"library/{image}"
    log = [line.split() for line in _git(git_dir, "log", "--reverse", "--format=%H %cs", "--", path).splitlines()]
    if not log:
        raise SystemExit(f"no history for {path} in {git_dir}")
    tags: dict[str, str] = {}
    for (commit, _date), text in zip(log, _contents(git_dir, [f"{c}:{path}" for c, _ in log]), strict=True):
        if text is None:  # the file was deleted in this commit
            continue
        for tag, index in assign(parse(text)).items():
            tags[tag] = f"{commit[:12]}-{index}"
    return History(image, dict(sorted(tags.items())), len(log), log[0][1], log[-1][1], log[-1][0])


def render(found: History) -> str:
    """The JSON file for one image: compact, one tag per line, tags sorted as `tags/list` sorts them."""
    source = (
        f"docker-library/official-images library/{found.image}, {found.commits} commits from "
        f"{found.first_date} to {found.last_date}, last commit {found.last_commit}"
    )
    head = json.dumps({"image": found.image, "source": source})[:-1]
    lines = [f"{json.dumps(tag)}: {json.dumps(image_id)}" for tag, image_id in found.tags.items()]
    return head + ', "tags": {\n' + ",\n".join(lines) + "\n}}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Writes `<out-dir>/<image>.json` for each image, from a (bare) clone of docker-library/official-images."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("git_dir", type=Path, help="git directory of docker-library/official-images")
    parser.add_argument("out_dir", type=Path, help="where to write <image>.json")
    parser.add_argument("images", nargs="*", default=list(IMAGES), help=f"images (default: {' '.join(IMAGES)})")
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for image in args.images:
        found = history(args.git_dir, image)
        (out_dir / f"{image}.json").write_text(render(found))
        print(f"{image}: {len(found.tags)} tags, {len(set(found.tags.values()))} images, {found.commits} commits")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The buildspec's build phase, taken from template.yaml, run exactly as CodeBuild runs it (bash, one command);
and the step that embeds copier/copy_images.py in it (`make buildspec`, or `python -m devtools.buildspec --write`).

The copy program is a real module (linted, typed, unit-tested) and the template carries a verbatim copy of it in
a heredoc, because a NO_SOURCE CodeBuild project has nothing but its buildspec; a test fails when the two differ.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[1]
COPIER = ROOT / "copier" / "copy_images.py"
TEMPLATE = ROOT / "template.yaml"
_HEREDOC = re.compile(r"(?P<head>python3 - <<'COPY'\n)(?P<body>.*?)(?P<tail>\n(?P<indent> *)COPY\n)", re.S)


def buildspec() -> dict[str, Any]:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    spec: dict[str, Any] = yaml.safe_load(template["Resources"]["CopyProject"]["Properties"]["Source"]["BuildSpec"])
    return spec


def build_commands() -> list[str]:
    commands: list[str] = buildspec()["phases"]["build"]["commands"]
    return commands


@dataclass(frozen=True)
class BuildRun:
    returncode: int
    output: str

    def lines(self, word: str) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith(word)]


def run_build_phase(
    mirror_images: str | list[dict[str, Any]],
    auth_file: Path,
    *,
    cwd: Path,
    ecr_registry: str,
    prefix: str = "mirror",
    extra_env: dict[str, str] | None = None,
) -> BuildRun:
    """Run the build phase's commands with MIRROR_IMAGES and a registry auth file, as CodeBuild would (the
    project's ECR_REGISTRY and TARGET_PREFIX set as the template sets them)."""
    value = mirror_images if isinstance(mirror_images, str) else json.dumps(mirror_images)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "MIRROR_IMAGES": value,
        "REGISTRY_AUTH_FILE": str(auth_file),
        "ECR_REGISTRY": ecr_registry,
        "TARGET_PREFIX": prefix,
        **(extra_env or {}),
    }
    output, code = [], 0
    for command in build_commands():
        done = subprocess.run(
            ["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
        )
        output.append(done.stdout + done.stderr)
        if done.returncode != 0:
            code = done.returncode
            break
    return BuildRun(code, "".join(output))


def exported_variables(env: dict[str, str], *, cwd: Path) -> dict[str, str]:
    """What CodeBuild would export after the build (env.exported-variables): the post_build phase's commands run in
    one shell, as CodeBuild runs a phase's commands, with `env` and the buildspec's own variables; then each exported
    variable's value."""
    spec = buildspec()
    names: list[str] = spec["env"].get("exported-variables", [])
    script = "\n".join([*spec["phases"]["post_build"]["commands"], *(f'printf "%s\\0" "${{{n}:-}}"' for n in names)])
    done = subprocess.run(
        ["bash", "-c", script],
        env={"PATH": os.environ["PATH"], **spec["env"].get("variables", {}), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(zip(names, done.stdout.split("\0"), strict=False))


def copy_program() -> str:
    """The Python program of the build phase (the heredoc CodeBuild feeds to python3)."""
    command = next(c for c in build_commands() if "<<'COPY'" in c)
    body = command.split("<<'COPY'\n", 1)[1].rsplit("\nCOPY", 1)[0]
    return body


def embed(template: str, program: str) -> str:
    """`template` with `program` as the heredoc of its build phase, indented as the block around it."""
    match = _HEREDOC.search(template)
    if match is None:
        raise ValueError("template.yaml has no python3 - <<'COPY' heredoc")
    indent = match.group("indent")
    body = "\n".join(indent + line if line else "" for line in program.rstrip("\n").splitlines())
    return template[: match.start("body")] + body + template[match.end("body") :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Embed copier/copy_images.py in template.yaml's buildspec.")
    parser.add_argument("--write", action="store_true", help="rewrite template.yaml (default: only check)")
    args = parser.parse_args(argv)
    current = TEMPLATE.read_text()
    wanted = embed(current, COPIER.read_text())
    if current == wanted:
        print("template.yaml carries copier/copy_images.py as it is")
        return 0
    if args.write:
        TEMPLATE.write_text(wanted)
        print("template.yaml: build phase updated from copier/copy_images.py")
        return 0
    print("template.yaml's build phase differs from copier/copy_images.py: run make buildspec", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

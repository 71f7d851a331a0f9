"""The buildspec's build phase, taken from template.yaml, run exactly as CodeBuild runs it (bash, one command)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[1]


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


def run_build_phase(mirror_images: str | list[dict[str, Any]], auth_file: Path, *, cwd: Path) -> BuildRun:
    """Run the build phase's commands with MIRROR_IMAGES and a registry auth file, as CodeBuild would."""
    value = mirror_images if isinstance(mirror_images, str) else json.dumps(mirror_images)
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "MIRROR_IMAGES": value, "REGISTRY_AUTH_FILE": str(auth_file)}
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


def copy_program() -> str:
    """The Python program of the build phase (the heredoc CodeBuild feeds to python3)."""
    command = next(c for c in build_commands() if "<<'COPY'" in c)
    body = command.split("<<'COPY'\n", 1)[1].rsplit("\nCOPY", 1)[0]
    return body


def copy_definitions() -> dict[str, Any]:
    """The build phase's patterns and functions (everything before it reads MIRROR_IMAGES), to test them directly."""
    program = copy_program()
    definitions = program.split("\ntry:\n", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(definitions, "buildspec:build", "exec"), namespace)
    return namespace

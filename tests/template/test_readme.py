"""Every command in the README exists as written: make targets, SAM CLI flags, AWS API parameters, files."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
from pathlib import Path

import botocore.session
import pytest
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SAM = ROOT / ".venv-sam" / "bin" / "sam"
#: files a README command has you generate (`make local-env`), ignored by git
GENERATED = [line for line in (ROOT / ".gitignore").read_text().splitlines() if line.startswith("events/")]


def commands() -> list[str]:
    found = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line:
                found.append(line)
    found += re.findall(r"`((?:sam|aws|make) [^`]+)`", README)
    return sorted(set(found))


def flags(argv: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in argv if a.startswith("-")]


def test_the_readme_has_the_commands_that_matter() -> None:
    found = commands()
    for expected in ("make sandbox", "make test", "sam build", "sam deploy --guided"):
        assert expected in found
    assert any(c.startswith("sam remote invoke") for c in found)
    assert any(c.startswith("sam local invoke") for c in found)


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith("make ")])
def test_make_targets_exist(command: str) -> None:
    words = shlex.split(command)[1:]
    (target,) = [w for w in words if "=" not in w]  # and its variables, STACK=ecr-mirror
    variables = [w for w in words if "=" in w]
    done = subprocess.run(["make", "-n", target, *variables], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith("sam ")])
def test_sam_commands_and_flags_exist(command: str) -> None:
    assert SAM.exists(), "the SAM CLI venv is made by `make template` (part of `make test`)"
    argv = shlex.split(command)
    words = [a for a in argv[1:] if not a.startswith("-")]
    subcommand = words[:2] if words[:1] in (["remote"], ["local"]) else words[:1]
    help_text = subprocess.run(
        [str(SAM), *subcommand, "--help"], capture_output=True, text=True, check=True, env={"SAM_CLI_TELEMETRY": "0"}
    ).stdout
    for flag in flags(argv):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}\b", help_text), f"{flag} is not an option of sam {subcommand}"
    resources = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    for word in words[len(subcommand) :]:
        if word.startswith("events/"):  # a file in the repository, or one the README has you generate (ignored)
            assert (ROOT / word).is_file() or any(fnmatch.fnmatch(word, pattern) for pattern in GENERATED), word
        elif re.fullmatch(r"[A-Z][A-Za-z]+", word):
            assert word in resources


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith("aws ")])
def test_aws_cli_commands_name_real_operations_and_parameters(command: str) -> None:
    argv = shlex.split(command)
    service, operation = argv[1], argv[2]
    if (service, operation) == ("s3", "cp"):  # the CLI's own S3 command, not an API operation
        assert argv[-1].startswith("s3://")
        return
    model = botocore.session.get_session().get_service_model(service)
    name = "".join(part.capitalize() for part in operation.split("-"))
    shape = model.operation_model(name).input_shape
    assert shape is not None
    members = {m.lower() for m in shape.members}  # PascalCase in most services' models, camelCase in ECR's
    for flag in flags(argv):
        member = flag.lstrip("-").replace("-", "").lower()
        assert member in members, f"{flag} is not a parameter of {service} {operation}"


def test_settings_table_lists_exactly_what_the_code_reads(settings_variables: set[str]) -> None:
    section = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M)) == settings_variables


def test_template_parameters_are_documented() -> None:
    parameters = yaml_parse((ROOT / "template.yaml").read_text())["Parameters"]
    for name in parameters:
        assert f"| `{name}` |" in README, name

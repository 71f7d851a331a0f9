"""`make local-env STACK=<name>`: the env-vars file with which `sam local invoke` runs as the deployed function does.

SAM resolves none of the function's variables that name a stack resource or a parameter the user set at deploy
time, so a local invoke falls back to the template's defaults: another prefix, another list, a project name right
only for a stack named `ecr-mirror`, no report location (hence no lease and no check history). This reads the
deployed stack (its parameters and outputs, one `DescribeStacks`) and evaluates the function's `Environment` as
the template writes it (`Ref`, `Fn::Sub`, `Fn::If` over the template's conditions), so the file holds exactly the
variables the template declares, with the values the deployed function has.

    python -m devtools.localenv --stack ecr-mirror [--region eu-west-1] [--out events/local-env.ecr-mirror.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = "MirrorFunction"


class LocalEnvError(ValueError):
    """The template uses a form this evaluator does not know, or the stack lacks a value it needs."""


def load_template(path: Path = ROOT / "template.yaml") -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    template: dict[str, Any] = yaml_parse(path.read_text())
    return template


def declared_variables(template: Mapping[str, Any]) -> dict[str, Any]:
    """The function's environment variables as the template writes them (values unevaluated)."""
    variables: dict[str, Any] = template["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    return variables


class _Stack:
    """A deployed stack's values, as the template's intrinsic functions refer to them."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str], outputs: Mapping[str, str]):
        self.template = template
        self.parameters = dict(parameters)
        # A resource's physical ID, through the output whose value is a Ref of it (BucketName: !Ref MirrorBucket).
        self.resources = {
            output["Value"]["Ref"]: outputs[key]
            for key, output in template.get("Outputs", {}).items()
            if isinstance(output.get("Value"), dict) and set(output["Value"]) == {"Ref"} and key in outputs
        }

    def ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name]
        raise LocalEnvError(f"the stack has no parameter or output for {name}")

    def condition(self, name: str) -> bool:
        return self.truth(self.template["Conditions"][name])

    def truth(self, expression: Any) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            ((function, argument),) = expression.items()
            if function == "Fn::Equals":
                left, right = argument
                return self.value(left) == self.value(right)
            if function == "Fn::Not":
                (inner,) = argument
                return not self.truth(inner)
            if function == "Condition":
                return self.condition(argument)
        raise LocalEnvError(f"unsupported condition {json.dumps(expression)[:100]}")

    def value(self, expression: Any) -> str:
        if isinstance(expression, str):
            return expression
        if isinstance(expression, bool):
            return str(expression).lower()
        if isinstance(expression, int | float):
            return str(expression)
        if isinstance(expression, dict) and len(expression) == 1:
            ((function, argument),) = expression.items()
            if function == "Ref":
                return self.ref(argument)
            if function == "Fn::Sub" and isinstance(argument, str):
                return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda m: self.ref(m.group(1)), argument)
            if function == "Fn::If":
                condition, when_true, when_false = argument
                return self.value(when_true if self.condition(condition) else when_false)
        raise LocalEnvError(f"unsupported value {json.dumps(expression)[:100]}")


def local_env(template: Mapping[str, Any], parameters: Mapping[str, str], outputs: Mapping[str, str]) -> dict[str, Any]:
    """The env-vars file's content: every variable the template declares for the function, evaluated for the stack
    whose `parameters` and `outputs` are given (a parameter left at its default is listed with it)."""
    stack = _Stack(template, parameters, outputs)
    return {FUNCTION: {name: stack.value(value) for name, value in declared_variables(template).items()}}


def describe(stack_name: str, region: str | None = None, session: Any = None) -> tuple[dict[str, str], dict[str, str]]:
    """The deployed stack's parameters and outputs."""
    import boto3

    session = session or boto3.session.Session(region_name=region)
    (stack,) = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    parameters = {p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue", "")) for p in stack["Parameters"]}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return parameters, outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", required=True, help="the deployed stack's name")
    parser.add_argument("--region", default=None, help="its region (default: the AWS CLI's)")
    parser.add_argument("--out", type=Path, default=None, help="default: events/local-env.<stack>.json")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "events" / f"local-env.{args.stack}.json"
    parameters, outputs = describe(args.stack, args.region)
    try:
        content = local_env(load_template(), parameters, outputs)
    except LocalEnvError as e:
        print(f"local-env: {e}", file=sys.stderr)
        return 2
    out.write_text(json.dumps(content, indent=2) + "\n")
    print(f"wrote {out}: sam local invoke {FUNCTION} -e events/dry-run.json --env-vars {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

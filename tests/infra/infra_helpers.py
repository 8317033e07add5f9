"""Test helpers for the SAM template: load it, run the SAM transform offline, walk it."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
STATE_MACHINE = ROOT / "infra" / "statemachine" / "pipeline.asl.json"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
          "AWS::StackName": "headstart", "AWS::StackId": "arn:aws:cloudformation:us-east-1:"
          "123456789012:stack/headstart/00000000-0000-0000-0000-000000000000",
          "AWS::URLSuffix": "amazonaws.com", "AWS::NotificationARNs": []}


def load_template() -> dict[str, Any]:
    """template.yaml as plain dicts (short-form tags like !Ref become {"Ref": ...})."""
    from cfnlint.decode import decode

    template, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return json.loads(json.dumps(template))


def state_machine_definition() -> dict[str, Any]:
    return json.loads(STATE_MACHINE.read_text())


class _NoManagedPolicies:
    """The SAM translator looks up managed policy names; ours are all inline or full ARNs."""

    def load(self) -> dict[str, str]:
        return {}


def transformed_template(inline_definition: bool = False) -> dict[str, Any]:
    """Run the SAM transform offline, as ``sam deploy`` would after ``sam package``.

    Local CodeUri / DefinitionUri are what ``sam package`` replaces with S3 locations; with
    ``inline_definition`` the state machine's JSON is embedded instead (for moto, which
    cannot read the S3 location at deploy time).
    """
    from samtranslator.translator.transform import transform

    template = copy.deepcopy(load_template())
    for res in template["Resources"].values():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://headstart-artifacts/trigger.zip"
        if res["Type"] == "AWS::Serverless::StateMachine":
            del props["DefinitionUri"]
            if inline_definition:
                props["Definition"] = state_machine_definition()
            else:
                props["DefinitionUri"] = {"Bucket": "headstart-artifacts", "Key": "pipeline.asl.json"}
    return transform(template, dict(PSEUDO), _NoManagedPolicies())


def resources(template: dict[str, Any], type_: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, properties) of every resource of one type."""
    for name, res in template["Resources"].items():
        if res["Type"] == type_:
            yield name, res.get("Properties", {})


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and scalar in a JSON-like tree, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)

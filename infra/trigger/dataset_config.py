"""``headstart.yaml``: one config per dataset, with a section per pipeline job.

::

    scrape:   {min_success: 0.8, max_bytes: 8000000}
    train:    {backbone: mobilenet_v2, epochs: 5}
    evaluate: {batch_size: 64}
    gradcam:  {max_images: 16}
    audit:    true            # optional step before train (or a mapping of audit options)

``audit`` is the one optional step: ``true`` or a mapping of its options turns it on (train
then gets ``--exclude`` = the audit's output), ``false`` or absent leaves it off.

This module ships inside the upload-trigger Lambda, which has boto3 and PyYAML (its
requirements.txt) but not headstart. So it checks a config against ``config_schema.json``
beside it: per job, each option's accepted types, choices and bounds, generated from the jobs'
own specs by :mod:`headstart.infra.cloud.dataset_config` and kept in sync by a test.
``headstart submit`` additionally validates with the pydantic specs themselves (cross-field
rules too); every job validates its spec again when it starts.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG_FILE = "headstart.yaml"
ERROR_FILE = "_CONFIG_ERROR.json"
SCHEMA_FILE = Path(__file__).with_name("config_schema.json")
# The pipeline's own defaults, below the config file: a scrape that yields fewer than half
# of its URLs as images fails instead of training on scraps.
PIPELINE_DEFAULTS: dict[str, dict[str, Any]] = {"scrape": {"min_success": 0.5}}
# Optional steps: the section may also be a boolean (on with the defaults / off).
OPTIONAL_STEPS = ("audit",)
_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def load_schema() -> dict[str, dict[str, dict[str, Any]]]:
    """{job: {option: rule}} from config_schema.json."""
    return json.loads(SCHEMA_FILE.read_text())["jobs"]


def parse(text: str, where: str = CONFIG_FILE) -> dict[str, Any]:
    """The YAML text as a mapping; ValueError with a one-line reason otherwise."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{where} is not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{where} must map job names to their options, got {type(data).__name__}")
    return data


def _type_ok(value: Any, types: list[str]) -> bool:
    for name in types:
        if name == "array" and isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            return True
        expected = _TYPES.get(name)
        if expected is None:
            continue
        # bool is an int in Python; YAML `yes` must not pass as a number.
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, expected):
            return True
    return False


def _check(job: str, option: str, value: Any, rule: dict[str, Any]) -> str | None:
    where = f"{job}.{option}"
    if not _type_ok(value, rule["types"]):
        return f"`{where}` must be {' or '.join(rule['types'])}. Received: {where}={value!r}"
    if value is None:
        return None
    if "enum" in rule and value not in rule["enum"]:
        return f"`{where}` must be one of {rule['enum']}. Received: {where}={value!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, ok, text in (("minimum", lambda b: value >= b, ">="), ("maximum", lambda b: value <= b, "<="),
                              ("exclusiveMinimum", lambda b: value > b, ">"),
                              ("exclusiveMaximum", lambda b: value < b, "<")):
            if key in rule and not ok(rule[key]):
                return f"`{where}` must be {text} {rule[key]}. Received: {where}={value!r}"
    return None


def validate(config: dict[str, Any], schema: dict[str, dict[str, dict[str, Any]]] | None = None) -> list[str]:
    """Every problem of ``config`` as one line (an empty list: valid)."""
    schema = load_schema() if schema is None else schema
    problems = []
    for job, section in config.items():
        if job not in schema:
            problems.append(f"unknown section `{job}`; expected {sorted(schema)}")
            continue
        if section is None or (job in OPTIONAL_STEPS and isinstance(section, bool)):
            continue
        if not isinstance(section, dict):
            problems.append(f"section `{job}` must map options to values. Received: {section!r}")
            continue
        for option, value in section.items():
            name = str(option).replace("-", "_")
            rule = schema[job].get(name)
            if rule is None:
                problems.append(f"unknown option `{job}.{option}`; `headstart {job.replace('_', '-')}` "
                                f"takes {sorted(schema[job])}")
                continue
            problem = _check(job, name, value, rule)
            if problem:
                problems.append(problem)
    train = config.get("train")
    if _step_on(config.get("audit")) and isinstance(train, dict) and train.get("exclude") is not None:
        problems.append(f"`train.exclude` cannot be set with `audit` on: the pipeline gives train the audit's "
                        f"output as --exclude. Received: train.exclude={train['exclude']!r}")
    return problems


def _step_on(section: Any) -> bool:
    """An optional step's section turns it on: ``true`` or a mapping (``false``/absent: off)."""
    return section is True or isinstance(section, dict)


def sections(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each job's options (dash or underscore spelling) over the pipeline's defaults; an
    optional step (``audit``) has a section only when it is on."""
    out = {job: dict(values) for job, values in PIPELINE_DEFAULTS.items()}
    for job, section in config.items():
        if job in OPTIONAL_STEPS:
            if not _step_on(section):
                continue  # off: no section, so the step does not run
            section = {} if section is True else section
        out.setdefault(job, {}).update({str(k).replace("-", "_"): v for k, v in (section or {}).items()})
    return out


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)  # list options are comma-separated in env vars
    return str(value)


def environment(options: dict[str, Any]) -> list[dict[str, str]]:
    """Options as Batch ``ContainerOverrides.Environment`` (``HEADSTART_<OPTION>``), sorted."""
    return [{"Name": f"HEADSTART_{k.upper()}", "Value": _env_value(v)}
            for k, v in sorted(options.items()) if v is not None]


def error_record(key: str, problems: list[str]) -> dict[str, Any]:
    """What is written to ``_CONFIG_ERROR.json`` beside the dataset."""
    return {"config": key, "started": False, "errors": problems,
            "message": f"{key}: nothing was started: " + "; ".join(problems)}

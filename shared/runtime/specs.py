"""Typed job specs: pydantic models settable from CLI flags, a YAML/JSON file or env vars.

Precedence, lowest first: field defaults < spec file (``--spec``) < environment variables
(``HEADSTART_<FIELD>``) < CLI flags. Unknown fields are rejected everywhere.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import types
import typing
from collections.abc import Collection
from typing import Any, Iterable, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from headstart.shared.runtime.errors import UserError

ENV_PREFIX = "HEADSTART_"
S = TypeVar("S", bound="JobSpec")


class JobSpec(BaseModel):
    """Base class of every job's parameters. Fields marked ``positional`` become CLI
    positionals; the rest become ``--kebab-case`` flags."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.dump(), sort_keys=False)


def _is_positional(field) -> bool:
    extra = field.json_schema_extra or {}
    return bool(isinstance(extra, dict) and extra.get("positional"))


def _base_type(annotation: Any) -> Any:
    """Strip Optional[...] to find the underlying type of a field."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else annotation
    return annotation


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(_base_type(annotation)) in (list, tuple)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'epochs'?)"`` for a near miss among ``choices``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _default_text(field) -> str:
    """`` (default: 5)`` from the field, never ``PydanticUndefined``, never twice."""
    if field.is_required():
        return " (required)"
    if "default" in (field.description or ""):
        return ""  # the description already says what the default is
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None or value == [] or value == {}:
        return ""
    if isinstance(value, bool):
        value = "on" if value else "off"
    elif isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return f" (default: {value})"


def add_spec_arguments(parser: argparse.ArgumentParser, spec_cls: type[JobSpec]) -> None:
    """Add one CLI argument per spec field (defaults stay None so unset flags are absent).

    Required fields are listed in their own group and marked "(required)"; they stay optional
    for argparse itself because a ``--spec`` file or ``HEADSTART_<FIELD>`` may supply them.
    """
    required = parser.add_argument_group(
        "required (as an argument, in the --spec file or as HEADSTART_<NAME>)")
    options = parser  # argparse's own "options" group
    usage = []
    for name, field in spec_cls.model_fields.items():
        help_text = (field.description or "") + _default_text(field)
        group = required if field.is_required() else options
        if field.is_required():
            usage.append(name.upper() if _is_positional(field)
                         else f"--{name.replace('_', '-')} {name.upper()}")
        if _is_positional(field):
            group.add_argument(name, nargs="?", default=None, metavar=name.upper(), help=help_text)
            continue
        flag = "--" + name.replace("_", "-")
        if _base_type(field.annotation) is bool:
            group.add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction,
                               help=help_text)
        else:
            group.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=help_text)
    options.add_argument("--spec", dest="_spec_file", default=None, metavar="FILE",
                         help="YAML or JSON file with any of these parameters")
    parser.usage = " ".join(["%(prog)s", *usage, "[options]"])


def _coerce(spec_cls: type[JobSpec], values: Mapping[str, Any]) -> dict[str, Any]:
    """Split comma-separated strings for list fields (flags and env vars are strings)."""
    out = dict(values)
    for name, value in values.items():
        field = spec_cls.model_fields.get(name)
        if field is not None and isinstance(value, str) and _is_list(field.annotation):
            out[name] = [v.strip() for v in value.split(",") if v.strip()]
    return out


def load_spec_file(path: str) -> dict[str, Any]:
    """Read a YAML/JSON spec file from any store."""
    from headstart.shared.storage.store import split_uri

    store, name = split_uri(path)
    try:
        text = store.read_text(name)
    except FileNotFoundError as exc:
        raise UserError(f"spec file not found: {path!r}") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"spec file {path!r} is not valid YAML/JSON: not UTF-8 text ({exc})") from None
    try:
        data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UserError(f"spec file {path!r} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"spec file {path!r} must hold a mapping of parameters, got {type(data).__name__}")
    return data


def env_values(spec_cls: type[JobSpec], env: Mapping[str, str]) -> dict[str, Any]:
    """Values for this spec from ``HEADSTART_<FIELD>`` environment variables."""
    return {
        name: env[ENV_PREFIX + name.upper()]
        for name in spec_cls.model_fields
        if ENV_PREFIX + name.upper() in env
    }


def format_validation_error(exc: ValidationError, fields: Iterable[str] = (),
                            skip: Collection[str] = ()) -> str:
    """One line per problem: "`field` <what is expected>. Received: field=value"; errors whose
    type is in ``skip`` (e.g. ``"missing"``) are left out."""
    lines = []
    for err in exc.errors():
        if err["type"] in skip:
            continue
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown parameter `{loc}`{did_you_mean(loc, fields)}. "
                         f"Received: {loc}={err.get('input')!r}")
        elif err["type"] == "missing":
            field = dict(fields).get(loc) if isinstance(fields, Mapping) else None
            how = (f"the {loc.upper()} argument" if field is not None and _is_positional(field)
                   else "--" + loc.replace("_", "-"))
            lines.append(f"`{loc}` is required: pass {how}, or set it in --spec or HEADSTART_{loc.upper()}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            hint = ""
            if err["type"] == "literal_error" and isinstance(err.get("input"), str):
                hint = did_you_mean(err["input"], re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", ""))))
            if "Received:" in msg:  # a model-level rule that already names the values
                lines.append(msg)
            else:
                lines.append(f"`{loc}`: {msg}{hint}. Received: {loc}={err.get('input')!r}")
    return "; ".join(lines)


def build_spec(spec_cls: type[S], *layers: Mapping[str, Any]) -> S:
    """Merge parameter layers (later wins) and validate them into a spec."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in _coerce(spec_cls, layer).items() if v is not None})
    try:
        return spec_cls(**merged)
    except ValidationError as exc:
        raise UserError(f"invalid parameters: {format_validation_error(exc, spec_cls.model_fields)}") from None


def spec_from_args(spec_cls: type[S], args: argparse.Namespace,
                   env: Mapping[str, str] | None = None) -> S:
    """Resolve a spec from defaults, the ``--spec`` file, the environment and CLI flags."""
    ns = vars(args)
    file_values = load_spec_file(ns["_spec_file"]) if ns.get("_spec_file") else {}
    cli = {k: v for k, v in ns.items() if k in spec_cls.model_fields and v is not None}
    return build_spec(spec_cls, file_values, env_values(spec_cls, os.environ if env is None else env), cli)


def weights_value(value: str) -> str:
    """The ``--weights`` check every backbone-taking spec shares, as a pydantic ValueError."""
    from headstart.shared.model.backbones import check_weights_arg  # lazy: keeps TF out of the CLI

    try:
        return check_weights_arg(value)
    except UserError as exc:
        raise ValueError(str(exc)) from None

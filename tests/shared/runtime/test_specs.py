"""Specs: defaults < spec file < HEADSTART_<FIELD> env < CLI flags; clear errors."""
from __future__ import annotations

import argparse
import json
from typing import Literal

import pytest
import yaml
from pydantic import Field

from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.specs import (JobSpec, add_spec_arguments, build_spec, env_values, load_spec_file,
                                            spec_from_args)
from headstart.shared.storage.store import open_store


class ToySpec(JobSpec):
    dataset: str = Field(..., description="dataset URI", json_schema_extra={"positional": True})
    out: str = Field("runs/toy", description="output folder")
    epochs: int = Field(5, ge=1, description="training epochs")
    lr: float = 1e-3
    fast_path: bool = True
    tags: list[str] = Field(default_factory=list)
    backbone: Literal["resnet50", "tiny"] = "resnet50"
    seed: int | None = None


def parse(argv, env=None, spec_cls=ToySpec):
    parser = argparse.ArgumentParser(prog="toy")
    add_spec_arguments(parser, spec_cls)
    return spec_from_args(spec_cls, parser.parse_args(argv), env={} if env is None else env)


def test_defaults():
    spec = parse(["data/x"])
    assert spec.dataset == "data/x"
    assert (spec.out, spec.epochs, spec.lr, spec.fast_path, spec.tags, spec.backbone, spec.seed) == \
        ("runs/toy", 5, 1e-3, True, [], "resnet50", None)


def test_cli_flags_are_kebab_case():
    spec = parse(["d", "--out", "o", "--epochs", "7", "--lr", "0.5", "--backbone", "tiny", "--seed", "3"])
    assert (spec.out, spec.epochs, spec.lr, spec.backbone, spec.seed) == ("o", 7, 0.5, "tiny", 3)


def test_bool_flags():
    assert parse(["d", "--no-fast-path"]).fast_path is False
    assert parse(["d", "--fast-path"]).fast_path is True
    assert parse(["d"], env={"HEADSTART_FAST_PATH": "false"}).fast_path is False
    assert parse(["d", "--fast-path"], env={"HEADSTART_FAST_PATH": "0"}).fast_path is True


def test_list_fields_from_comma_strings(tmp_path):
    assert parse(["d", "--tags", "a, b,,c"]).tags == ["a", "b", "c"]
    assert parse(["d"], env={"HEADSTART_TAGS": "x,y"}).tags == ["x", "y"]
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("tags: [p, q]\n")
    assert parse(["d", "--spec", str(spec_file)]).tags == ["p", "q"]
    spec_file.write_text("tags: 'p,q'\n")
    assert parse(["d", "--spec", str(spec_file)]).tags == ["p", "q"]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_precedence(tmp_path, fmt):
    values = {"epochs": 2, "lr": 0.1, "out": "from-file", "tags": ["f"], "fast_path": True}
    spec_file = tmp_path / f"spec.{fmt}"
    spec_file.write_text(yaml.safe_dump(values) if fmt == "yaml" else json.dumps(values))
    env = {"HEADSTART_EPOCHS": "3", "HEADSTART_OUT": "from-env", "HEADSTART_FAST_PATH": "false"}

    spec = parse(["d", "--spec", str(spec_file)])
    assert (spec.epochs, spec.lr, spec.out, spec.tags) == (2, 0.1, "from-file", ["f"])

    spec = parse(["d", "--spec", str(spec_file)], env=env)
    assert (spec.epochs, spec.lr, spec.out, spec.fast_path) == (3, 0.1, "from-env", False)

    spec = parse(["d", "--spec", str(spec_file), "--epochs", "4", "--fast-path"], env=env)
    assert (spec.epochs, spec.lr, spec.out, spec.fast_path) == (4, 0.1, "from-env", True)


def test_positional_can_come_from_file_or_env(tmp_path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("dataset: from-file\n")
    assert parse(["--spec", str(spec_file)]).dataset == "from-file"
    assert parse([], env={"HEADSTART_DATASET": "from-env"}).dataset == "from-env"
    assert parse(["from-cli"], env={"HEADSTART_DATASET": "from-env"}).dataset == "from-cli"


def test_process_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("HEADSTART_EPOCHS", "9")
    parser = argparse.ArgumentParser()
    add_spec_arguments(parser, ToySpec)
    assert spec_from_args(ToySpec, parser.parse_args(["d"])).epochs == 9


def test_explicit_empty_env_ignores_process_environment(monkeypatch):
    monkeypatch.setenv("HEADSTART_EPOCHS", "9")
    assert parse(["d"], env={}).epochs == 5


def test_env_reads_only_known_fields():
    env = {"HEADSTART_EPOCHS": "3", "HEADSTART_BOGUS": "1", "EPOCHS": "8", "HEADSTART_epochs": "7"}
    assert env_values(ToySpec, env) == {"epochs": "3"}
    assert parse(["d"], env=env).epochs == 3


def test_unknown_field_in_file_rejected(tmp_path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("epochs: 2\nepoch: 3\n")
    with pytest.raises(UserError, match=r"unknown parameter `epoch`.*Received: epoch=3"):
        parse(["d", "--spec", str(spec_file)])


def test_unknown_field_in_build_spec_rejected():
    with pytest.raises(UserError, match="bogus"):
        build_spec(ToySpec, {"dataset": "d", "bogus": 1})


@pytest.mark.parametrize("argv, field, received", [
    (["d", "--epochs", "0"], "epochs", "'0'"),
    (["d", "--epochs", "abc"], "epochs", "'abc'"),
    (["d", "--lr", "fast"], "lr", "'fast'"),
    (["d", "--backbone", "vgg"], "backbone", "'vgg'"),
])
def test_validation_error_names_field_and_value(argv, field, received):
    with pytest.raises(UserError) as info:
        parse(argv)
    message = str(info.value)
    assert f"`{field}`" in message
    assert f"Received: {field}={received}" in message
    assert "\n" not in message
    assert message.startswith("invalid parameters:") and "ToySpec" not in message


def test_validation_error_from_env_names_field():
    with pytest.raises(UserError, match=r"`epochs`.*Received: epochs='many'"):
        parse(["d"], env={"HEADSTART_EPOCHS": "many"})


def test_missing_required_field():
    with pytest.raises(UserError, match="`dataset` is required"):
        parse([])


def test_spec_file_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        parse(["d", "--spec", str(tmp_path / "missing.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(UserError, match="not valid YAML/JSON"):
        parse(["d", "--spec", str(bad)])
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{'epochs': 1}")
    with pytest.raises(UserError, match="not valid YAML/JSON"):
        parse(["d", "--spec", str(bad_json)])
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        parse(["d", "--spec", str(not_mapping)])
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(UserError, match="binary.yaml"):
        parse(["d", "--spec", str(binary)])
    with pytest.raises(UserError):
        parse(["d", "--spec", "gs://bucket/spec.yaml"])


def test_empty_spec_file_is_no_values(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_spec_file(str(empty)) == {}
    assert parse(["d", "--spec", str(empty)]).epochs == 5


def test_spec_file_from_any_store(store_uri):
    open_store(store_uri).write_text("conf/spec.yaml", "epochs: 11\n")
    assert parse(["d", "--spec", f"{store_uri}/conf/spec.yaml"]).epochs == 11


def test_dump_roundtrips_through_yaml(tmp_path):
    spec = parse(["d", "--epochs", "3", "--tags", "a,b", "--no-fast-path"])
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    assert parse(["--spec", str(path)]) == spec
    assert spec.dump()["tags"] == ["a", "b"]


def test_assignment_is_validated():
    spec = parse(["d"])
    with pytest.raises(ValueError):
        spec.epochs = 0


def test_help_lists_flags_and_defaults(capsys):
    parser = argparse.ArgumentParser(prog="toy")
    add_spec_arguments(parser, ToySpec)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in ("--out", "--epochs", "--fast-path", "--no-fast-path", "--tags", "--spec"):
        assert flag in out
    assert "(default: 5)" in out

"""The ``headstart`` CLI: no abbreviations, clean help, "did you mean", the summary line on stdout."""
from __future__ import annotations

import json
import re
import sys
import types

import pytest
from pydantic import Field

from headstart.shared.runtime import cli
from headstart.shared.runtime.specs import JobSpec
from headstart.shared.runtime.summary import Summary


class FakeSpec(JobSpec):
    data: str = Field(description="input", json_schema_extra={"positional": True})
    out: str = Field(description="output folder")
    epochs: int = Field(3, ge=1, description="epochs")
    fail: bool = Field(False, description="raise a user error")


def _fake_run(spec: FakeSpec) -> Summary:
    from headstart.shared.runtime.errors import UserError

    if spec.fail:
        raise UserError("bad data: 'x'")
    return Summary(job="fake", out=spec.out, produced="a thing", metric="test accuracy",
                   value=0.9125, report=f"{spec.out}/report.html")


@pytest.fixture
def fake_command(monkeypatch):
    module = types.ModuleType("fake_job")
    module.SPEC, module.HELP, module.run = FakeSpec, "a fake job", _fake_run
    monkeypatch.setitem(sys.modules, "fake_job", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", "fake_job")


def _help(name: str, capsys) -> str:
    with pytest.raises(SystemExit):
        cli.main([name, "--help"])
    return capsys.readouterr().out


def test_summary_line_on_stdout_and_json(fake_command, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert cli.main(["fake", "d", "--out", out]) == 0
    stdout = capsys.readouterr().out
    assert stdout.splitlines() == [f"fake: a thing -> {out} · test accuracy 0.912 · open {out}/report.html"]
    assert cli.main(["fake", "d", "--out", out, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"job": "fake", "ok": True, "out": out, "produced": "a thing",
                   "metric": "test accuracy", "value": 0.9125, "report": f"{out}/report.html"}


def test_json_on_failure(fake_command, tmp_path, capsys, caplog):
    out = str(tmp_path / "o")
    assert cli.main(["fake", "d", "--out", out, "--fail", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"job": "fake", "ok": False, "exit_code": 2, "out": out,
                                        "failure": f"{out}/_FAILURE.json"}
    assert any("bad data: 'x'" in r.getMessage() for r in caplog.records)  # logs: stderr, not stdout


def test_no_abbreviations_and_did_you_mean(fake_command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["fake", "d", "--out", "o", "--epoch", "3"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: headstart fake DATA --out OUT [options]")  # the subcommand's usage
    assert "unrecognized arguments: --epoch 3 (did you mean '--epochs'?)" in err


def test_unknown_command_did_you_mean(capsys):
    with pytest.raises(SystemExit):
        cli.main(["trian"])
    assert "unknown command 'trian' (did you mean 'train'?)" in capsys.readouterr().err


def test_errors_in_the_users_terms(fake_command, capsys):
    assert cli.main(["fake", "d", "--out", "o", "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "FakeSpec" not in err and "invalid parameters: `epochs`" in err
    assert cli.main(["fake", "--out", "o"]) == 2
    assert "`data` is required: pass the DATA argument" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_is_clean(name, capsys):
    text = _help(name, capsys)
    assert "PydanticUndefined" not in text and "_SPEC_FILE" not in text and "--spec FILE" in text
    for entry in re.split(r"\n  (?=-|[A-Z])", text):
        assert entry.count("(default") <= 1, entry  # never a default printed twice
    module = cli._load(name)
    required = [n for n, f in module.SPEC.model_fields.items() if f.is_required()]
    usage = text.split("\n\n", 1)[0]
    for field in required:  # required arguments are shown as required, in the usage too
        shown = field.upper() if (module.SPEC.model_fields[field].json_schema_extra or {}).get(
            "positional") else f"--{field.replace('_', '-')} {field.upper()}"
        assert shown in usage and f"[{shown}" not in usage
    if required:
        assert "required (as an argument" in text and "(required)" in text


def test_train_help_defaults(capsys):
    text = _help("train", capsys)
    assert "(default: 20)" in text  # epochs
    assert "(default: on)" in text  # fast path
    assert "input size in pixels (default: the backbone's)\n" in text.replace("\n" + " " * 24, " ")


def test_a_job_returning_nothing_gets_a_line_from_its_manifest(monkeypatch, tmp_path, capsys):
    from headstart.shared.storage.manifest import RunOutput
    from headstart.shared.storage.store import open_store

    def run(spec):
        out = RunOutput(open_store(spec.out), "plain")
        out.write_text("report.html", "<html></html>")
        out.write_text("a.csv", "x\n")
        out.publish()

    module = types.ModuleType("plain_job")
    module.SPEC, module.HELP, module.run = FakeSpec, "a job without a summary", run
    monkeypatch.setitem(sys.modules, "plain_job", module)
    monkeypatch.setitem(cli.COMMANDS, "plain", "plain_job")
    out = tmp_path / "o"
    assert cli.main(["plain", "d", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"plain: 2 files -> {out} · open {out}/report.html\n"


_CONSOLE = '''
import atexit, sys, threading, time, types
from pathlib import Path
from pydantic import Field
from headstart.shared.runtime import cli
from headstart.shared.runtime.specs import JobSpec
from headstart.shared.runtime.summary import Summary

marks = Path(sys.argv[1])
sys.modules["tensorflow"] = types.ModuleType("tensorflow")  # what the quick exit looks for


class Spec(JobSpec):
    out: str = Field(description="output folder")
    fail: bool = Field(False, description="fail")
    thread: bool = Field(False, description="leave a worker thread running")


def run(spec):
    from headstart.shared.runtime.errors import UserError

    atexit.register(lambda: (marks / "atexit").write_text("ran"))
    sys.stderr.write("unflushed stderr")
    if spec.thread:
        threading.Thread(target=lambda: (time.sleep(0.3), (marks / "thread").write_text("joined"))).start()
    if spec.fail:
        raise UserError("bad: 'x'")
    return Summary(job="fake", out=spec.out, produced="a thing")


module = types.ModuleType("fake_job")
module.SPEC, module.HELP, module.run = Spec, "fake", run
sys.modules["fake_job"] = module
cli.COMMANDS["fake"] = "fake_job"
sys.argv = ["headstart", "fake", "--out", str(marks / "o")] + sys.argv[2:]
cli.console()
'''


@pytest.mark.parametrize("flags, code", [([], 0), (["--fail"], 2), (["--thread"], 0)])
def test_console_exits_quickly_with_the_code_after_exit_handlers_and_flushed_output(tmp_path, flags, code):
    import subprocess

    script = tmp_path / "console.py"
    script.write_text(_CONSOLE)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)] + flags, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == code, done.stderr
    assert (tmp_path / "atexit").read_text() == "ran"  # exit handlers (temporary folders) still run
    assert "unflushed stderr" in done.stderr
    if code == 0:
        assert done.stdout.startswith("fake: a thing -> ")
    if "--thread" in flags:  # a running non-daemon thread: the normal exit, which joins it
        assert (tmp_path / "thread").read_text() == "joined"

"""The README's commands work as written.

* The ```bash block after ``<!-- readme-test: quick-start -->`` runs line by line in a fresh
  folder, each command in its own process, with two substitutions only: ``.venv/bin/headstart``
  becomes this interpreter's ``-m headstart.shared.runtime.cli`` and ``../shared`` the handed
  material (``$HANDED_DIR``, default the folder beside the checkout). Every job must
  exit 0 and end with its summary line on stdout. Skipped when the material is absent.
* Every other ``headstart ...`` line of every ```bash block is parsed by the real CLI parser
  and its spec built: no flag or value the README shows may be unknown or invalid.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import HANDED, REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
MARK = "<!-- readme-test: quick-start -->"
CLI = [sys.executable, "-m", "headstart.shared.runtime.cli"]


def _commands(block: str) -> list[str]:
    """Lines of a bash block with continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def _quick_start() -> list[str]:
    after = README.split(MARK, 1)[1]
    return _commands(_bash_blocks(after)[0])


def _shown_commands() -> list[list[str]]:
    """Every ``headstart`` command of the README (argv after the program name)."""
    found = []
    for block in _bash_blocks(README):
        for line in _commands(block):
            words = shlex.split(line)
            if words and words[0] in ("headstart", ".venv/bin/headstart") and len(words) > 1:
                found.append(words[1:])
    return found


def test_the_quick_start_block_is_there() -> None:
    commands = _quick_start()
    assert [shlex.split(c)[1] for c in commands] == ["train", "evaluate", "gradcam", "similarity", "results"]


@pytest.mark.parametrize("argv", _shown_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_shown_command_parses(argv: list[str], tmp_path: Path) -> None:
    from headstart.shared.runtime import cli
    from headstart.shared.runtime.specs import spec_from_args

    if any(w.startswith("[") for w in argv):
        pytest.skip("a usage line with [optional] placeholders")
    if "--spec" in argv:  # the README's spec file is the user's: stand in an empty one
        argv = list(argv)
        stand_in = tmp_path / Path(argv[argv.index("--spec") + 1]).name
        stand_in.write_text("{}\n")
        argv[argv.index("--spec") + 1] = str(stand_in)
    args = cli.build_parser().parse_args(argv)  # SystemExit on an unknown flag: the test fails
    spec_from_args(cli._load(args.command).SPEC, args, env={})


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path: Path) -> None:
    shared = Path(os.environ.get("HANDED_DIR", HANDED))
    if not (shared / "data/flowers5").is_dir():
        pytest.skip(f"handed material not found at {shared} (set HANDED_DIR)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for command in _quick_start():
        words = shlex.split(command.replace("../shared", str(shared)))
        assert words[0] == ".venv/bin/headstart"
        done = subprocess.run(CLI + words[1:], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
        last = done.stdout.strip().splitlines()[-1]
        job = words[1]
        if "--json" in words:
            doc = json.loads(last)
            assert doc["ok"] and doc["job"] == job and Path(doc["report"]).is_file()
        elif job != "results":
            assert last.startswith(f"{job}: ") and " · open " in last, last
            assert Path(last.rsplit(" · open ", 1)[1]).is_file()
    assert (tmp_path / "results/flowers-eval/report.html").is_file()
    assert not (tmp_path / "runs/flowers/checkpoint").exists()

"""The deployment linters an operator would run: `sam validate --lint`, checkov, asl-validator.

Each tool is pinned and lives in its own cached venv / npm prefix (see lint_tools.py): they
pin boto3 exactly, to versions the project cannot share.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

from infra_helpers import ROOT, STATE_MACHINE, TEMPLATE
from lint_tools import asl_validator, tool

QUIET = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1",
         "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}


def _run(cmd: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=QUIET)


def test_sam_validate_lint_is_clean():
    result = _run([tool("sam"), "validate", "--lint", "--template", TEMPLATE, "--region", "us-east-1"])
    assert result.returncode == 0 and "is a valid SAM Template" in result.stdout, result.stdout + result.stderr


def test_checkov_finds_nothing_unexplained_in_the_template_and_dockerfile():
    result = _run([tool("checkov"), "--skip-download", "--output", "json",
                   "--framework", "cloudformation", "dockerfile", "-f", TEMPLATE, "-f", ROOT / "Dockerfile"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"cloudformation", "dockerfile"}
    assert all(r["summary"]["failed"] == 0 and r["summary"]["parsing_errors"] == 0 for r in reports)
    skipped = {c["check_id"] for r in reports for c in r["results"]["skipped_checks"]}
    assert {"CKV_AWS_18", "CKV_DOCKER_2"} <= skipped
    # Every skip carries its one-line reason in the file it skips.
    template, dockerfile = TEMPLATE.read_text(), (ROOT / "Dockerfile").read_text()
    for check_id in skipped:
        assert (re.search(rf"- id: {check_id}\n\s+comment: \S", template)
                or re.search(rf"# checkov:skip={check_id}: \S", dockerfile)), check_id


def test_asl_validator_accepts_the_state_machine():
    result = _run([asl_validator(), "--json-path", STATE_MACHINE], timeout=120)
    assert result.returncode == 0 and "is valid" in result.stdout, result.stdout + result.stderr

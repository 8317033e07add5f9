"""Pinned linters that cannot share the project's venv, each in its own cached venv.

``aws-sam-cli`` and ``checkov`` both pin ``boto3`` exactly (1.43.108 and 1.35.49 at these
versions), to different versions than each other and than the project's, so neither can be
a ``test`` extra. Each lives in ``$HEADSTART_TOOLS`` (default ``~/.cache/headstart/tools``),
built once from PyPI on first use; when that is impossible (offline) the tests that need it
skip with the reason.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = {"sam": ("aws-sam-cli", "1.170.0"), "checkov": ("checkov", "3.3.30")}


def tools_home() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "headstart" / "tools"
    return Path(os.environ.get("HEADSTART_TOOLS", default))


def tool(name: str) -> Path:
    """Path of the pinned ``name`` executable, installing it once; skips the test if impossible."""
    package, version = TOOLS[name]
    venv = tools_home() / f"{package}-{version}"
    exe = venv / "bin" / name
    if exe.exists():
        return exe
    base = getattr(sys, "_base_executable", sys.executable)
    try:
        subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        f"{package}=={version}"], check=True, capture_output=True, text=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        pytest.skip(f"cannot install {package}=={version} into {venv}: {str(detail)[-300:]}")
    return exe


ASL_VALIDATOR = "4.0.0"


def asl_validator() -> Path:
    """The pinned asl-validator (npm), installed once; skips without npm or a registry."""
    import shutil

    home = tools_home() / f"asl-validator-{ASL_VALIDATOR}"
    exe = home / "node_modules" / ".bin" / "asl-validator"
    if exe.exists():
        return exe
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm not installed: asl-validator needs node")
    try:
        subprocess.run([npm, "install", "--silent", "--prefix", str(home), f"asl-validator@{ASL_VALIDATOR}"],
                       check=True, capture_output=True, text=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot install asl-validator@{ASL_VALIDATOR}: {str(getattr(exc, 'stderr', exc))[-300:]}")
    return exe

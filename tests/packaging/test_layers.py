"""ARCHITECTURE.md's import rules, checked against the code (every import, lazy ones too)."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

# package -> the Headstart packages it may import (besides itself). Keep in step with
# ARCHITECTURE.md's table.
RUNTIME_BOUNDARY = {"shared/runtime/cli.py", "shared/runtime/runner.py", "shared/runtime/specs.py",
                    "shared/runtime/preflight.py"}
ALLOWED = {
    "shared/runtime": set(),
    "shared/runtime(boundary)": {"shared/storage", "shared/model"},  # preflight checks backbones
    "shared/storage": {"shared/runtime"},
    "shared/report": {"shared/runtime"},
    "shared/data": {"shared/runtime", "shared/storage"},
    "shared/net": {"shared/runtime", "shared/storage"},
    "shared/model": {"shared/runtime", "shared/storage", "shared/data", "shared/report"},
    "shared/auto": {"shared/runtime", "shared/storage", "shared/data", "shared/model", "shared/report"},
    "shared/explain": {"shared/runtime", "shared/storage", "shared/data", "shared/model", "shared/report"},
    "shared/audit": {"shared/runtime", "shared/storage", "shared/data", "shared/model", "shared/explain",
                     "shared/report"},
    "shared": {"shared/runtime"},  # shared/__main__.py
    "jobs": {"shared/runtime", "shared/storage", "shared/data", "shared/net", "shared/model",
             "shared/auto", "shared/explain", "shared/report", "shared/audit"},
    "infra/trigger": set(),  # ships alone to Lambda
    "infra/cloud": {"shared/runtime", "shared/storage", "infra/trigger"},
    "infra/commands": {"shared/runtime", "infra/cloud"},
    "infra": {"shared/runtime", "shared/storage", "shared/model"},  # bake_weights, local_s3
}
# Third-party packages a package must never import.
FORBIDDEN = {
    "jobs": {"boto3", "botocore"},
    "shared/runtime": {"boto3", "botocore", "tensorflow", "keras", "numpy"},
    "shared/report": {"boto3", "botocore", "tensorflow", "keras"},
    "shared/net": {"boto3", "botocore", "tensorflow", "keras"},
    "shared/data": {"boto3", "botocore"},
    "shared/model": {"boto3", "botocore"},
    "shared/auto": {"boto3", "botocore"},
    "shared/explain": {"boto3", "botocore"},
    "shared/audit": {"boto3", "botocore"},
    "infra/trigger": {"tensorflow", "keras", "numpy"},
}


def _package(rel: str) -> str:
    if rel in RUNTIME_BOUNDARY:
        return "shared/runtime(boundary)"
    parts = rel.split("/")
    if parts[0] == "jobs":
        return "jobs"
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def _target(module: str) -> str | None:
    bits = module.split(".")
    if bits[0] != "headstart" or len(bits) < 2:
        return None
    if bits[1] == "jobs":
        return "jobs"
    return "/".join(bits[1:3]) if len(bits) > 2 else bits[1]


def _imports(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import mod`
    return found


def _modules():
    for top in ("shared", "jobs", "infra"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            yield rel, _package(rel), _imports(path)


def test_every_package_imports_only_what_architecture_allows() -> None:
    bad = []
    for rel, package, imports in _modules():
        assert package in ALLOWED, f"{rel}: package {package!r} is not in the architecture table"
        allowed = ALLOWED[package] | {package, package.replace("(boundary)", "")}
        for module in imports:
            target = _target(module)
            # "shared" / "infra" alone: the namespace of a `from headstart.shared import x`
            if target not in (None, "shared", "infra") and target not in allowed:
                bad.append(f"{rel} imports {module}")
    assert not bad, "\n".join(bad)


def test_forbidden_third_party_imports() -> None:
    bad = [f"{rel} imports {module}" for rel, package, imports in _modules()
           for module in imports if module.split(".")[0] in FORBIDDEN.get(package.replace("(boundary)", ""), ())]
    assert not bad, "\n".join(bad)


def test_the_library_never_imports_the_cli_boundary() -> None:
    """Compute code polls the stop flag (runtime.stop); only the CLI starts the runner."""
    bad = [f"{rel} imports {module}" for rel, package, imports in _modules()
           for module in imports
           if module.startswith(("headstart.shared.runtime.runner", "headstart.shared.runtime.cli"))
           and package not in ("shared/runtime(boundary)", "shared", "infra/cloud")]
    assert not bad, "\n".join(bad)


def test_cli_and_specs_start_without_tensorflow() -> None:
    code = ("import sys, importlib, pkgutil\n"
            "from headstart.shared.runtime import cli\n"
            "import headstart.jobs as jobs\n"
            "for m in pkgutil.iter_modules(jobs.__path__):\n"
            "    for part in ('main', 'spec'):\n"
            "        try: importlib.import_module(f'headstart.jobs.{m.name}.{part}')\n"
            "        except ModuleNotFoundError as e:\n"
            "            if e.name != f'headstart.jobs.{m.name}.{part}': raise\n"
            "print(sorted(k for k in ('tensorflow', 'keras', 'boto3') if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

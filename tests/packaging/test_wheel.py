"""The installed distribution has one top-level import name, ``headstart``, and survives a
neighbour wheel that ships generic top-level packages (``shared``, ``jobs``, ``infra``)."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pip(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
                   check=True, cwd=cwd)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: setuptools is already here and the machine may be offline.
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT))
    (whl,) = out.glob("headstart-*.whl")
    return whl


def _neighbour_wheel(tmp: Path) -> Path:
    """A wheel that ships its own top-level ``shared``, ``jobs`` and ``infra`` packages."""
    src = tmp / "neighbour"
    for pkg in ("shared", "jobs", "infra"):
        (src / pkg).mkdir(parents=True)
        (src / pkg / "__init__.py").write_text("NEIGHBOUR = True\n")
    (src / "shared" / "storage.py").write_text("# not Headstart's store\n")
    (src / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "neighbour"
        version = "1.0"
        [tool.setuptools]
        packages = ["shared", "jobs", "infra"]
        """))
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src))
    (whl,) = (tmp / "dist").glob("neighbour-*.whl")
    return whl


def test_wheel_has_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert zf.read(top_level).decode().split() == ["headstart"]
    roots = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert roots == {"headstart"}
    # The parts a job needs at run time are inside: CLI, jobs, the state machine definition.
    for path in ("headstart/shared/runtime/cli.py", "headstart/jobs/train/main.py",
                 "headstart/infra/statemachine/pipeline.asl.json"):
        assert path in names


def test_installs_beside_a_wheel_with_its_own_shared(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(target), str(wheel))
    _pip("install", "--no-deps", "--target", str(target), "--upgrade", str(_neighbour_wheel(tmp_path)))
    assert (target / "shared" / "storage.py").is_file()  # the neighbour's package is really there
    # -S: no site processing, so the developer's editable install cannot leak in; the
    # dependencies come from this interpreter's site-packages, Headstart from the target only.
    env = {"PYTHONPATH": f"{target}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"}
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import headstart.shared.runtime.cli as c; print(c.__file__)"],
        env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(str(target / "headstart"))
    result = subprocess.run([sys.executable, "-S", str(target / "bin" / "headstart"), "--help"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "scrape", "gradcam"):
        assert command in result.stdout

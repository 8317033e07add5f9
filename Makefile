# Two commands for a fresh machine: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test lint bench-quick report-check clean image-check

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 required, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[cpu,test,onnx]'  # onnx: the ONNX export check runs, not skips
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/headstart demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Style and likely bugs (ruff), then types (mypy); settings in pyproject.toml.
lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy

# Every report rendered in headless Chromium (apt-get install -y chromium); SCREENS=DIR saves screenshots.
report-check: $(STAMP)
	REPORT_SCREENS=$(SCREENS) $(BIN)/python -m pytest -q tests/jobs/test_reports_browser.py

bench-quick: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b --quick || exit 1; done

# Build the Dockerfile without a Docker daemon (buildah + vfs + chroot) on a stand-in base
# image cached outside the repo, then run `headstart --help` and a tiny train inside it.
# Needs root, buildah and debootstrap (apt-get install -y buildah debootstrap). Not in CI.
image-check:
	infra/image_check/check.sh

clean:
	rm -rf $(VENV) runs .pytest_cache

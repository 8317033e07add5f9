# syntax=docker/dockerfile:1
# checkov:skip=CKV_DOCKER_2: batch jobs, not services: nothing to probe; Batch and Step Functions watch the exit code
# The one image every Headstart job runs in (locally, in compose, on AWS Batch).
# The base image carries the GPU build of TensorFlow; the project pins the same version in its
# `gpu`/`cpu` extras and installs here with no extra, so pip never pulls a second TensorFlow.
ARG TF_VERSION=2.21.0

# ---- stage 1: the wheel. Only this stage sees the source; the image gets the built wheel
# through a bind mount, so no source (and not even the wheel file) lands in any image layer.
FROM tensorflow/tensorflow:${TF_VERSION}-gpu AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY shared ./shared
COPY jobs ./jobs
COPY infra ./infra
RUN python3 -m pip wheel --no-deps --wheel-dir /wheel . && rm -rf /src/build /src/*.egg-info

# ---- stage 2: the image.
FROM tensorflow/tensorflow:${TF_VERSION}-gpu

# Space-separated backbone names whose ImageNet weights are baked into the image, so jobs
# never download at run time. Empty bakes nothing (a smaller image; downloads on first use).
# Only backbones whose constructor builds with the base's Keras belong here: a failing one
# fails the whole build (efficientnet_b0 did, see the hardening issue).
ARG BAKE_WEIGHTS="resnet50 mobilenet_v2"

# MPLCONFIGDIR: matplotlib's font cache, built below as the job user and writable by any uid
# (compose and `docker run --user $(id -u)` run as the caller), so no job rebuilds it.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/opt/keras \
    MPLCONFIGDIR=/var/cache/headstart/matplotlib \
    XDG_CACHE_HOME=/var/cache/headstart

RUN groupadd --system --gid 10001 headstart \
    && useradd --system --uid 10001 --gid headstart --create-home --home-dir /home/headstart headstart \
    && mkdir -p "${MPLCONFIGDIR}" "${KERAS_HOME}" \
    && chown -R headstart:headstart /var/cache/headstart "${KERAS_HOME}" \
    && chmod -R 1777 /var/cache/headstart

# Dependency layer first, from pyproject.toml alone: a code change reuses it. The base image's
# TensorFlow (and its Keras) are pinned as constraints: a dependency resolving to another
# TensorFlow build or version fails the build instead of installing a second copy.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -m pip freeze | grep -iE '^(tensorflow|keras|tf-keras)==' > /tmp/constraints.txt \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && python3 -m pip install --no-cache-dir -c /tmp/constraints.txt -r /tmp/requirements.txt \
    && python3 -m pip check \
    && python3 -c "import importlib.metadata as m, sys; \
bad = {'tensorflow-cpu', 'tensorflow-intel', 'tf-nightly'} & {d.metadata['Name'].lower() for d in m.distributions()}; \
sys.exit(f'second TensorFlow installed: {bad}' if bad else 0)" \
    && rm /tmp/constraints.txt /tmp/requirements.txt /tmp/pyproject.toml

# The package itself, with --no-deps: the layer above holds every dependency.
RUN --mount=type=bind,from=wheel,source=/wheel,target=/wheel \
    python3 -m pip install --no-cache-dir --no-deps /wheel/*.whl \
    && python3 -m pip check

RUN if [ -n "${BAKE_WEIGHTS}" ]; then python3 -m headstart.infra.bake_weights ${BAKE_WEIGHTS}; fi \
    && chown -R headstart:headstart "${KERAS_HOME}"

USER 10001:10001
WORKDIR /home/headstart
# Build matplotlib's font cache now, as the job user, so jobs start without rebuilding it.
RUN python3 -c "import matplotlib.font_manager as f; f.findfont('DejaVu Sans')" \
    && test -n "$(ls "${MPLCONFIGDIR}")"
ENTRYPOINT ["headstart"]
CMD ["--help"]

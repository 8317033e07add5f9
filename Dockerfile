# The one image every Headstart job runs in (locally, in compose, on AWS Batch).
# The base image carries the GPU build of TensorFlow; the project pins the same version in its
# `gpu`/`cpu` extras and installs here with no extra, so pip never pulls a second TensorFlow.
ARG TF_VERSION=2.21.0
FROM tensorflow/tensorflow:${TF_VERSION}-gpu

# Space-separated backbone names whose ImageNet weights are baked into the image, so jobs
# never download at run time. Empty bakes nothing (a smaller image; downloads on first use).
ARG BAKE_WEIGHTS="resnet50 mobilenet_v2 efficientnet_b0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/opt/keras \
    MPLCONFIGDIR=/tmp/matplotlib

RUN groupadd --system --gid 10001 headstart \
    && useradd --system --uid 10001 --gid headstart --create-home --home-dir /home/headstart headstart

WORKDIR /opt/headstart
COPY pyproject.toml setup.py README.md ./
COPY shared ./shared
COPY jobs ./jobs
COPY infra ./infra

# Pin the base image's TensorFlow (and its Keras) as constraints: a dependency resolving to
# another TensorFlow build or version fails the build instead of installing a second copy.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python3 -m pip freeze | grep -iE '^(tensorflow|keras|tf-keras)==' > /tmp/constraints.txt \
    && python3 -m pip install --no-cache-dir -c /tmp/constraints.txt . \
    && python3 -m pip check \
    && python3 -c "import importlib.metadata as m, sys; \
bad = {'tensorflow-cpu', 'tensorflow-intel', 'tf-nightly'} & {d.metadata['Name'].lower() for d in m.distributions()}; \
sys.exit(f'second TensorFlow installed: {bad}' if bad else 0)" \
    && rm /tmp/constraints.txt

RUN mkdir -p "${KERAS_HOME}" \
    && if [ -n "${BAKE_WEIGHTS}" ]; then python3 -m headstart.infra.bake_weights ${BAKE_WEIGHTS}; fi \
    && chown -R headstart:headstart "${KERAS_HOME}"

USER 10001:10001
WORKDIR /home/headstart
ENTRYPOINT ["headstart"]
CMD ["--help"]

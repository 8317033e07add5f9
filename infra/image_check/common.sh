# Shared settings for the daemonless image check (sourced by base.sh and check.sh).
# buildah runs rootful with vfs storage and chroot isolation: no daemon, no overlay or user
# namespaces needed, so it works inside an unprivileged CI/dev container.
set -euo pipefail
TF_VERSION="${TF_VERSION:-2.21.0}"
BASE_IMAGE="docker.io/tensorflow/tensorflow:${TF_VERSION}-gpu"
# Outside the repo so the ~3 GB base survives `git clean` and is shared by worktrees.
IMAGE_CACHE="${IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/headstart/image-check}"
mkdir -p "$IMAGE_CACHE/storage" "$IMAGE_CACHE/run"
bh() { buildah --storage-driver vfs --root "$IMAGE_CACHE/storage" --runroot "$IMAGE_CACHE/run" "$@"; }

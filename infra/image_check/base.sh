#!/usr/bin/env bash
# Assemble a stand-in for tensorflow/tensorflow:$TF_VERSION-gpu when no registry is reachable:
# Debian bookworm (debootstrap) + its Python 3.11 + the same `tensorflow` wheel version from
# PyPI, installed system-wide as root like the real image, tagged with the real image's name so
# the Dockerfile's FROM resolves to it. Reused when already in the cache.
source "$(dirname "$0")/common.sh"
# One builder at a time: a second caller waits, then reuses the committed base.
exec 9>"$IMAGE_CACHE/base.lock"
flock 9
if bh inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "base: reusing $BASE_IMAGE from $IMAGE_CACHE"; exit 0
fi
command -v debootstrap >/dev/null || { echo "base: debootstrap missing (apt-get install -y debootstrap)" >&2; exit 2; }
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ctr=$(bh from scratch)
trap 'bh rm "$ctr" >/dev/null 2>&1 || true' EXIT
root=$(bh mount "$ctr")
echo "base: debootstrap bookworm into $root"
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
  bookworm "$root" "$MIRROR" >"$IMAGE_CACHE/debootstrap.log" 2>&1 \
  || { tail -20 "$IMAGE_CACHE/debootstrap.log" >&2; exit 1; }
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The host's CA bundle: where HTTPS goes through an intercepting proxy (as on this dev box)
# its CA is only there. Harmless elsewhere: it is the host's own trust store.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
echo "base: pip install tensorflow==$TF_VERSION"
# env -i: none of the host's PIP_* settings (local wheel folders) leak into the base.
chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root PIP_BREAK_SYSTEM_PACKAGES=1 \
  PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  python3 -m pip install --quiet "tensorflow==$TF_VERSION"
chroot "$root" env -i PATH=/usr/bin:/bin python3 -c "import tensorflow as tf; print('base: tensorflow', tf.__version__)"
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*
bh umount "$ctr" >/dev/null
bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  --workingdir / --cmd /bin/bash --label "headstart.stand-in=debian-bookworm+pypi-tensorflow-$TF_VERSION" "$ctr"
bh commit --quiet "$ctr" "$BASE_IMAGE"
echo "base: committed $BASE_IMAGE"

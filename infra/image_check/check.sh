#!/usr/bin/env bash
# `make image-check`: build the Dockerfile without a Docker daemon (buildah, chroot isolation,
# vfs storage) on the stand-in base (base.sh), then, inside the image and as the image's user:
# `headstart --help` and a tiny `headstart train --backbone tiny --weights none --image-size 32`.
#
# Proves: the Dockerfile parses and every step runs in order (two stages, the dependency layer
# from pyproject.toml alone, the --no-deps wheel install through a bind mount, pip check, the
# second-TensorFlow guard, the font cache as the job user); the installed package imports and
# trains with the base's TensorFlow version; no source is left in the image; the job user can
# write its caches. Only a real `docker build` on tensorflow/tensorflow:*-gpu proves the rest:
# the real base's Ubuntu/CUDA userland and its pip freeze (the constraints), GPU kernels,
# and BAKE_WEIGHTS downloads (they need internet; here BAKE_WEIGHTS="").
source "$(dirname "$0")/common.sh"
cd "$(dirname "$0")/../.."
TAG="${IMAGE_TAG:-localhost/headstart:image-check}"
"$(dirname "$0")/base.sh"

echo "== build $TAG (BAKE_WEIGHTS=\"\")"
start=$(date +%s)
bh build --isolation chroot --layers --build-arg BAKE_WEIGHTS="" -f Dockerfile -t "$TAG" . \
  >"$IMAGE_CACHE/build.log" 2>&1 || { tail -40 "$IMAGE_CACHE/build.log"; exit 1; }
echo "built in $(( $(date +%s) - start ))s; image $(bh inspect --type image --format '{{.FromImageDigest}}' "$TAG")"

work=$(mktemp -d)
ctr=""
cleanup() { [ -n "$ctr" ] && bh rm "$ctr" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
# A tiny flat dataset (2 labels x 12 images, 40 px) written on the host, mounted read-only.
python3 - "$work/data" <<'PY'
import struct, sys, zlib
from pathlib import Path
def png(w, h, rgb):
    raw = b"".join(b"\0" + bytes(rgb) * w for _ in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for label, base in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
    folder = Path(sys.argv[1]) / label
    folder.mkdir(parents=True)
    for i in range(12):
        (folder / f"{i}.png").write_bytes(png(40, 40, [min(255, c + 4 * i) for c in base]))
PY
mkdir -p "$work/runs" && chmod 0777 "$work/runs"
ctr=$(bh from --quiet "$TAG")
run() { bh run --isolation chroot -v "$work/data:/data:ro" -v "$work/runs:/runs" "$ctr" -- "$@"; }

echo "== user and layout"
run bash -c 'echo "uid=$(id -u) gid=$(id -g) home=$HOME MPLCONFIGDIR=$MPLCONFIGDIR"
  test "$(id -u)" = 10001 || { echo "not the image user"; exit 1; }
  test ! -e /opt/headstart || { echo "/opt/headstart still in the image"; exit 1; }
  loc=$(python3 -c "import headstart.jobs, os; print(os.path.dirname(headstart.jobs.__file__))")
  echo "package: $loc"; case "$loc" in */dist-packages/*|*/site-packages/*) ;; *) exit 1;; esac
  for d in "$MPLCONFIGDIR" "$XDG_CACHE_HOME"; do test -w "$d" || { echo "$d not writable"; exit 1; }; done
  ls "$MPLCONFIGDIR" | grep -q fontlist || { echo "no font cache in $MPLCONFIGDIR"; exit 1; }
  python3 -c "import tensorflow as tf; print(\"tensorflow\", tf.__version__)"'

echo "== headstart --help"
run headstart --help | head -5

echo "== headstart train --backbone tiny (as uid 10001)"
run headstart train /data --backbone tiny --weights none --image-size 32 --epochs 2 --out /runs/tiny \
  2>&1 | tee "$work/train.log" | tail -5
if grep -qi "building the font cache" "$work/train.log"; then echo "font cache rebuilt at run time"; exit 1; fi
test -s "$work/runs/tiny/model.keras" && test -s "$work/runs/tiny/manifest.json" \
  || { echo "train wrote no model.keras/manifest.json"; ls -la "$work/runs/tiny"; exit 1; }
echo "image-check: OK ($(ls "$work/runs/tiny" | tr '\n' ' '))"

#!/usr/bin/env bash
# GPU measurements in one script (< 8 min on one GPU): ResNet50@224 forward images/s in
# float32 and mixed precision + XLA, end-to-end `headstart train` wall on a generated
# 3.7k-image set, and decode images/s. Prints one JSON line last.
# Goals: forward (mixed) >= 5,000 img/s; train end to end <= 10 s.
#
#   bench/gpu.sh            # full
#   SMOKE=1 bench/gpu.sh    # tiny sizes: checks the script itself (CPU is fine)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
HS=${HS:-$(dirname "$PY")/headstart}
command -v "$HS" >/dev/null 2>&1 || HS="$PY -m headstart.shared.runtime.cli"
export TF_CPP_MIN_LOG_LEVEL=2
WORK=$(mktemp -d /tmp/gpu-bench-XXXX)
if [ "${SMOKE:-0}" = 1 ]; then PER_LABEL=6; FWD_N=64; FWD_BATCH=16; SIZE=64; else PER_LABEL=925; FWD_N=8192; FWD_BATCH=256; SIZE=224; fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1 > "$WORK/gpu.txt" || echo "no nvidia-smi" > "$WORK/gpu.txt"

# 1. Forward throughput of the frozen base, float32 then mixed + XLA (random pixels, weights
#    none: speed does not depend on the values). Timed after a warm-up batch each.
"$PY" - "$FWD_N" "$FWD_BATCH" "$SIZE" > "$WORK/forward.json" <<'PYEOF'
import json, sys, time
import numpy as np
from headstart.shared.model.accelerate import mixed_extractor
from headstart.shared.model.backbones import build_backbone, get_info
from headstart.shared.model.classifier import assemble
from headstart.shared.model.features import compiled_call
n, batch, size = map(int, sys.argv[1:4])
clf = assemble(build_backbone("resnet50", size, "none"), get_info("resnet50"), size, 5)
x = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)).astype("float32")
out = {}
for name, model, jit in [("float32", clf.extractor, False),
                         ("mixed_xla", mixed_extractor(clf.extractor, clf.backbone), True)]:
    fn = compiled_call(model, jit=jit)
    np.asarray(fn(x))  # trace / compile
    t0 = time.perf_counter()
    for _ in range(max(1, n // batch)):
        y = fn(x)
    np.asarray(y)
    out[name] = round(max(1, n // batch) * batch / (time.perf_counter() - t0), 1)
print(json.dumps(out))
PYEOF

# 2. A generated 3.7k-image set (4 shape labels x 925 JPEGs), decode img/s.
"$PY" - "$WORK/data" "$PER_LABEL" "$SIZE" > "$WORK/decode.json" <<'PYEOF'
import json, sys, time
from headstart.jobs.demo.workflow import generate_shapes
from headstart.shared.data.datasets import SplitConfig, discover
from headstart.shared.data.loading import load_split
from headstart.shared.storage.store import open_store
root, per_label, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
uri = generate_shapes(root, per_label)
index = discover(uri, SplitConfig())
store = open_store(uri)
t0 = time.perf_counter()
n = sum(len(load_split(store, name, items, index.labels, size)) for name, items in index.splits.items())
print(json.dumps({"images": n, "decode_images_per_s": round(n / (time.perf_counter() - t0), 1)}))
PYEOF

# 3. End to end: the whole command (imports, build, decode, features, head, outputs).
T0=$(date +%s.%N)
$HS train "$WORK/data" --out "$WORK/run" --backbone resnet50 --weights none --image-size "$SIZE" \
  > "$WORK/train.log" 2>&1 || { tail -20 "$WORK/train.log"; exit 1; }
T1=$(date +%s.%N)

"$PY" - "$WORK" "$T0" "$T1" <<'PYEOF'
import json, sys
work, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
fwd = json.load(open(f"{work}/forward.json"))
dec = json.load(open(f"{work}/decode.json"))
metrics = json.load(open(f"{work}/run/metrics.json"))
train_s = round(t1 - t0, 2)
print(json.dumps({"bench": "gpu", "gpu": open(f"{work}/gpu.txt").read().strip(),
                  "forward_images_per_s": fwd, "mixed_speedup": round(fwd["mixed_xla"] / fwd["float32"], 2),
                  **dec, "train_wall_s": train_s, "train_timing": metrics["timing"],
                  "targets": {"forward_images_per_s": ">= 5000 (mixed)", "train_wall_s": "<= 10"},
                  "met": {"forward": fwd["mixed_xla"] >= 5000, "train_wall": train_s <= 10}}, sort_keys=True))
PYEOF

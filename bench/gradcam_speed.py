"""Grad-CAM throughput: batched (one tape per batch) vs a per-image loop vs a plain forward pass.

Same model (MobileNetV2 at 160 px in the Headstart layout: nested backbone + head), same
images. The forward pass is the limit; target: batched Grad-CAM >= 0.8x the forward rate.
Prints one JSON line last.

    .venv/bin/python bench/gradcam_speed.py [--quick] [--backbone tiny --size 64]
"""
from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from _common import MOBILENET, emit, quiet

log = logging.getLogger("bench")


def _model(backbone: str, size: int):
    import keras

    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble

    keras.utils.set_random_seed(0)
    weights = str(MOBILENET) if backbone == "mobilenet_v2" and size == 160 and MOBILENET.is_file() else "none"
    return assemble(build_backbone(backbone, size, weights), get_info(backbone), size, 5).model, weights


def _seconds(fn, images: np.ndarray, batch: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, len(images), batch):
        fn(images[start:start + batch])
    return time.perf_counter() - t0


def _rates(fns: dict, images: np.ndarray, batch: int, repeats: int) -> dict[str, float]:
    """Best images/s of each fn; rounds alternate between them so a busy machine slows all
    alike rather than whichever ran during the busy spell."""
    for fn in fns.values():
        fn(images[:batch])  # warm-up: trace and compile
    best = dict.fromkeys(fns, 0.0)
    for _ in range(repeats):
        for name, fn in fns.items():
            best[name] = max(best[name], len(images) / _seconds(fn, images, batch))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer images (under a minute)")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    quiet()
    import tensorflow as tf

    from headstart.shared.explain.camgraph import build_cam_graph
    from headstart.shared.explain.gradcam import make_cam

    n, n_loop = (64, 8) if args.quick else (256, 32)
    model, weights = _model(args.backbone, args.size)
    images = np.random.default_rng(0).uniform(0, 255, (n, args.size, args.size, 3)).astype("float32")
    forward = tf.function(lambda x: model(x, training=False),
                          input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    cam = make_cam("gradcam", build_cam_graph(model))
    rates = _rates({"forward": lambda x: forward(tf.convert_to_tensor(x)).numpy(),
                    "batched": lambda x: cam(x)}, images, args.batch, 3)
    fwd, batched = rates["forward"], rates["batched"]
    loop = _rates({"loop": lambda x: [cam(x[i:i + 1]) for i in range(len(x))]},
                  images[:n_loop], n_loop, 1)["loop"]
    emit({"bench": "gradcam_speed", "backbone": args.backbone, "size": args.size, "weights": weights,
          "images": n, "batch": args.batch, "forward_img_s": round(fwd, 1),
          "gradcam_batched_img_s": round(batched, 1), "gradcam_loop_img_s": round(loop, 1),
          "batched_vs_forward": round(batched / fwd, 3), "batched_vs_loop": round(batched / loop, 2),
          "target_batched_vs_forward": 0.8, "quick": args.quick})


if __name__ == "__main__":
    main()

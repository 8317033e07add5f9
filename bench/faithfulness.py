"""Are the heatmaps faithful? Grad-CAM vs Grad-CAM++ vs the activation mean vs two controls.

Trains (or reuses) MobileNetV2 at 160 px with the handed offline weights on flowers5, then
over the test split computes RISE-style deletion and insertion AUCs of each method's maps
against the mean of several random maps and a model-free centre prior, with 95% bootstrap
intervals of the margins (:mod:`headstart.shared.explain.faithfulness`). Also reports the
single-point drop when the top 20% is blurred. Skips cleanly (one JSON line with "skipped")
when ../shared is absent. Prints one JSON line last.

    .venv/bin/python bench/faithfulness.py [--quick] [--run DIR]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import FLOWERS, MOBILENET, emit, have_material, quiet

log = logging.getLogger("bench")
METHODS = ("gradcam", "gradcam++", "activation")


def _train(run: str, per_label: int, epochs: int) -> float:
    """Train into ``run`` (a no-op when the same spec is already published there)."""
    from headstart.shared.runtime.cli import main

    t0 = time.monotonic()
    code = main(["train", str(FLOWERS), "--backbone", "mobilenet_v2", "--image-size", "160",
                 "--weights", str(MOBILENET), "--max-per-label", str(per_label), "--epochs",
                 str(epochs), "--out", run])
    if code != 0:
        raise SystemExit(f"training failed with exit code {code}")
    return time.monotonic() - t0


def _test_split(trained, limit: int | None):
    from headstart.shared.data.datasets import discover
    from headstart.shared.data.loading import load_split
    from headstart.shared.storage.store import open_store

    index = discover(str(FLOWERS), trained.split_config())
    items = index.splits["test"][:limit] if limit else index.splits["test"]
    return load_split(open_store(str(FLOWERS)), "test", items, trained.labels, trained.image_size)


def _score(trained, split, method: str, fraction: float, layer: str | None, steps: int,
           random_maps: int) -> dict:
    from headstart.shared.explain.camgraph import build_cam_graph
    from headstart.shared.explain.faithfulness import faithfulness, model_predictor, summarize

    from headstart.shared.explain.gradcam import make_cam

    result = make_cam(method, build_cam_graph(trained.model, layer)).run(split.images, None, 32)
    base = result.probs[np.arange(len(result)), result.targets]
    faith = faithfulness(model_predictor(trained.model), split.images, result.heatmaps,
                         result.targets, base, fraction, seed=0, steps=steps, random_maps=random_maps)
    doc = summarize(faith.deletion, faith.insertion)
    return {"drop_top": round(float(faith.drop_top.mean()), 4),
            "drop_random": round(float(faith.drop_random.mean()), 4),
            "drop_centre": round(float(faith.drop_centre.mean()), 4),
            "auc": doc["auc"],
            "margin": {k: [m["mean"], m["low"], m["high"]] for k, m in doc["margin"].items()},
            "beats_controls": doc["beats_controls"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small model and test set (under a minute)")
    parser.add_argument("--run", help="train run folder to create or reuse (default: a temp cache)")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of pixels masked")
    parser.add_argument("--steps", type=int, default=6, help="points inside each deletion/insertion curve")
    parser.add_argument("--random-maps", type=int, default=3, help="random maps averaged per image")
    parser.add_argument("--layers", default=None,
                        help="target layers to compare (default auto,block_12_add; quick: auto); auto = "
                             "the last conv feature map (out_relu, 5x5); block_12_add = the last "
                             "ImageNet block before the dog-tuned ones")
    args = parser.parse_args()
    quiet()
    if not have_material():
        emit({"bench": "faithfulness", "skipped": True,
              "reason": f"handed material not found at {FLOWERS.parents[1]}"})
        return
    per_label, epochs, limit = (30, 3, 30) if args.quick else (200, 8, None)
    if args.quick:
        args.steps, args.random_maps = min(args.steps, 3), min(args.random_maps, 2)
    args.layers = args.layers or ("auto" if args.quick else "auto,block_12_add")
    run = args.run or str(Path(tempfile.gettempdir()) / f"headstart-bench/flowers5-mnv2-{per_label}-{epochs}")
    train_s = _train(run, per_label, epochs)
    from headstart.shared.model.trained import load_trained

    trained = load_trained(run)
    split = _test_split(trained, limit)
    accuracy = float(np.mean(np.asarray(trained.model.predict(split.images.astype("float32"), verbose=0))
                             .argmax(axis=1) == split.labels))
    layers = {}
    for layer in args.layers.split(","):
        layers[layer] = {m: _score(trained, split, m, args.fraction, None if layer == "auto" else layer,
                                   args.steps, args.random_maps) for m in METHODS}
    emit({"bench": "faithfulness", "dataset": "flowers5", "backbone": "mobilenet_v2@160",
          "max_per_label": per_label, "epochs": epochs, "test_images": len(split),
          "test_accuracy": round(accuracy, 4), "mask_fraction": args.fraction, "mask": "blur",
          "steps": args.steps, "random_maps": args.random_maps,
          "layers": layers, "train_s": round(train_s, 1), "quick": args.quick})

if __name__ == "__main__":
    main()

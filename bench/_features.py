"""One backbone pass per image for a whole benchmark: cached flowers5 feature maps.

The maps of every image (MobileNetV2 at 160, the offline weights) are computed once and kept
in a local ``.npz`` under ``~/.cache/headstart`` (``HEADSTART_BENCH_CACHE`` overrides), keyed
by dataset path and backbone, so every configuration, seed and k of a benchmark, and every
later run of any benchmark, reuses them: a warm ``--quick`` spends no time in the backbone.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger("bench")


def cached_maps(dataset: str, weights: str, backbone: str = "mobilenet_v2", size: int = 160,
                limit_per_label: int | None = None) -> dict:
    """{"maps": float16 (n, h, w, c), "labels": int (n,), "keys": [...], "names": [...]}."""
    tag = hashlib.sha256(f"{dataset}|{weights}|{backbone}|{size}|{limit_per_label}".encode()).hexdigest()[:12]
    folder = Path(os.environ.get("HEADSTART_BENCH_CACHE", Path.home() / ".cache" / "headstart"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"headstart-maps-{tag}.npz"
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        return {"maps": data["maps"], "labels": data["labels"], "keys": list(data["keys"]),
                "names": list(data["names"])}
    from headstart.shared.data.datasets import SplitConfig, discover
    from headstart.shared.data.loading import load_split
    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble
    from headstart.shared.model.features import extract_features
    from headstart.shared.storage.store import open_store

    index = discover(dataset, SplitConfig(valid_fraction=0.0, test_fraction=0.0, seed=0,
                                          max_per_label=limit_per_label, min_per_label=1))
    items = [i for split in index.splits.values() for i in split]
    clf = assemble(build_backbone(backbone, size, weights), get_info(backbone), size, len(index.labels))
    split = load_split(open_store(dataset), "all", items, index.labels, size)
    maps = extract_features(clf.extractor, split.images, 64, "bench features")[:, 0]
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # concurrent runs never share a temp file
    np.savez(tmp, maps=maps, labels=split.labels, keys=np.asarray(split.keys), names=np.asarray(index.labels))
    os.replace(tmp, path)
    log.info("cached %d feature maps in %s", len(maps), path)
    return {"maps": maps, "labels": split.labels, "keys": split.keys, "names": index.labels}


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import FLOWERS, MOBILENET, quiet
    quiet()
    d = cached_maps(str(FLOWERS), str(MOBILENET))
    print(d["maps"].shape, np.bincount(d["labels"]))

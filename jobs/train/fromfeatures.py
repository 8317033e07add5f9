"""``train --features``: the splits come from cached feature shards instead of decoded images.

The recipe (:mod:`headstart.shared.model.recipe`) caches features by running the classifier's
frozen ``extractor`` over each split's ``images``. From shards, a split's "images" are the
cached features themselves and the extractor is the identity over them, so head selection,
the epoch loop, scoring and the outputs run unchanged. The saved model still holds the real
backbone, built with the same weights (checked by digest), so evaluate, predict and export
use the run like any other. The default recipe trains on pooled means, held as ``(n, 1, 1, c)``
maps (pooling a 1x1 map is the value itself); ``--recipe reference`` needs the spatial maps
(shards written with ``--spatial``).
"""
from __future__ import annotations

import logging

import numpy as np

from headstart.jobs.train.spec import TrainSpec
from headstart.shared.data.datasets import DatasetIndex
from headstart.shared.data.loading import LoadedSplit
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.store import open_store

log = logging.getLogger("headstart.train")


def _wanted(spec: TrainSpec, size: int) -> dict:
    """The settings the shards must have been computed with, as features.json names them."""
    from headstart.shared.data.modelinput import preprocessing_tag

    return {"backbone": spec.backbone, "image_size": size, "weights": spec.weights,
            "resize": preprocessing_tag(),  # what the saved model will do to an image
            **{k: getattr(spec, k) for k in ("valid_fraction", "test_fraction", "seed", "max_per_label",
                                             "min_per_label", "min_side", "max_pixels")}}


def load_cached(spec: TrainSpec, size: int) -> tuple[TrainSpec, DatasetIndex, dict[str, LoadedSplit]]:
    """(spec, index, splits) from the shards at ``spec.features``; exit 2 on any mismatch."""
    from headstart.shared.model.featureshards import check_matches, read_feature_set

    assert spec.features is not None
    fs = read_feature_set(spec.features, spatial=spec.recipe == "reference", cache_dir=spec.cache_dir)
    check_matches(fs.meta, _wanted(spec, size), spec.features)
    dataset = open_store(spec.dataset).uri
    if fs.meta["dataset"] != dataset:
        raise UserError(f"the feature shards at {spec.features!r} are of dataset {fs.meta['dataset']!r}, "
                        f"this run trains on {dataset!r}")
    index = fs.index
    keys = {name: [item.key for item in items] for name, items in index.splits.items()}
    if spec.exclude:  # the keep-list of `headstart audit`, applied to the cached rows
        from headstart.shared.audit.keeplist import apply_exclude

        index = apply_exclude(index, spec.exclude)
    splits = {}
    for name, items in index.splits.items():
        kept = {item.key for item in items}
        mask = np.asarray([k in kept for k in keys[name]], bool)
        feats = fs.spatial[name] if spec.recipe == "reference" else fs.pooled[name][:, None, None, :]
        if not mask.all():
            feats = feats[mask]
        splits[name] = LoadedSplit(name, feats, fs.labels[name][mask], [item.key for item in items],
                                   fs.skipped.get(name, []))
    if spec.accelerate != "off":
        log.info("--features: no backbone pass to accelerate (accelerate off)")
    return spec.model_copy(update={"accelerate": "off"}), index, splits


def use_cached(clf, spec: TrainSpec, splits: dict[str, LoadedSplit]) -> None:
    """Check the freshly built backbone is the shards' one, then make ``clf``'s extractor the
    identity over the cached features (see the module docstring)."""
    import keras

    from headstart.shared.model.featureshards import META_FILE, find_shards, weights_digest

    assert spec.features is not None
    import json

    meta = json.loads(find_shards(open_store(spec.features))[0].read_text(META_FILE))
    digest = weights_digest(clf.backbone)
    if digest != meta.get("digest"):
        hint = " (with --weights none the backbone is random: use the features job's --seed)" \
            if spec.weights == "none" else ""
        raise UserError(f"the {spec.backbone} backbone built from --weights {spec.weights} differs from "
                        f"the one the feature shards at {spec.features!r} were computed with (weights "
                        f"digest {digest} vs {meta.get('digest')}){hint}")
    shape = tuple(int(d) for d in splits["train"].images.shape[1:])
    inp = keras.Input(shape, name="cached_features")
    clf.extractor = keras.Model(inp, keras.layers.Identity(name="cached")(inp), name="cached_extractor")

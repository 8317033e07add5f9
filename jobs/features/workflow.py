"""Features workflow: dataset -> this shard's images -> streamed decode -> frozen backbone ->
feature shard (pooled [+ spatial] float16, keys, labels) -> manifest last.

The backbone pass is embarrassingly parallel: an AWS Batch array job of N children
(``--shard-count N``, ``AWS_BATCH_JOB_ARRAY_INDEX``) or N ``--shard I/N`` runs each take the
deterministic share :mod:`headstart.shared.data.sharding` gives them, of every split, and
``headstart train --features OUT`` trains the head on one node from all of them
(:mod:`headstart.shared.model.featureshards` holds the format).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time

from headstart.jobs.features.spec import FeaturesSpec
from headstart.shared.data.modelinput import preprocessing_tag
from headstart.shared.data.datasets import SplitConfig, discover
from headstart.shared.runtime import preflight
from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.manifest import is_published
from headstart.shared.storage.store import open_store

log = logging.getLogger("headstart.features")

# Settings that do not change the features (a rerun may differ in these).
_NON_SEMANTIC = {"out", "overwrite", "shard", "shard_count", "batch_size", "workers"}


def fingerprint(spec: FeaturesSpec) -> str:
    data = {k: v for k, v in spec.dump().items() if k not in _NON_SEMANTIC}
    data["dataset"] = open_store(spec.dataset).uri
    data["resize"] = preprocessing_tag()  # shards of an older decode/resize are not these
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _summary(uri: str, images: int, shard: int, count: int) -> Summary:
    return Summary(job="features", out=uri, produced=f"feature shard {shard}/{count}",
                   metric="images", value=images, details={"shard": shard, "shard_count": count})


def _already_done(spec: FeaturesSpec, fp: str) -> Summary | None:
    """The summary of an identical published shard (a retried array child), else None."""
    from headstart.shared.data.sharding import resolve_shard, shard_name
    from headstart.shared.model.featureshards import META_FILE

    index, count = resolve_shard(spec.shard, count=spec.shard_count)
    root = open_store(spec.out)
    store = root.child(shard_name(index, count)) if count > 1 else root
    if not is_published(store):
        return None
    meta = json.loads(store.read_text(META_FILE)) if store.exists(META_FILE) else {}
    if meta.get("fingerprint") == fp and not spec.overwrite:
        log.info("%s already holds this shard with these settings: nothing to do", store.uri)
        return _summary(store.uri, int(meta.get("rows", 0)), index, count)
    if not spec.overwrite:
        raise UserError(f"{store.uri!r} already holds a published shard computed with other "
                        "settings; pass --overwrite or choose another --out")
    return None


def features(spec: FeaturesSpec) -> Summary:
    """Run the features job described by ``spec``."""
    from headstart.shared.model.backbones import get_info, resolve_size

    info = get_info(spec.backbone)  # argument checks first: fail before touching data
    size = resolve_size(info, spec.image_size)
    preflight.check_input(spec.dataset, "dataset")
    preflight.check_output(spec.out)
    preflight.check_backbone(spec.backbone, spec.weights, size)
    fp = fingerprint(spec)
    done = _already_done(spec, fp)
    if done is not None:
        return done
    from headstart.shared.data.sharding import select, shard_output

    index = discover(spec.dataset, SplitConfig.from_spec(spec))
    rows = [(split, position, item) for split, items in index.splits.items()
            for position, item in enumerate(items)]
    out, shard, count = shard_output(spec.out, "features", spec.shard, spec.shard_count)
    mine = select(rows, shard, count, key=lambda row: row[2].key)
    log.info("features: shard %d/%d holds %d of %d images (%s)", shard, count, len(mine), len(rows),
             ", ".join(f"{k} {len(v)}" for k, v in index.splits.items()))
    meta = {"dataset": index.uri, "labels": index.labels, "layout": index.layout,
            "backbone": spec.backbone, "image_size": size, "weights": spec.weights,
            "preprocess": info.preprocess, "resize": preprocessing_tag(), "fingerprint": fp,
            "shard": shard, "shard_count": count,
            **{k: getattr(spec, k) for k in ("valid_fraction", "test_fraction", "seed",
                                             "max_per_label", "min_per_label", "min_side", "max_pixels")}}
    return _run_pass(spec, info, size, index, mine, out, meta)


def _run_pass(spec: FeaturesSpec, info, size: int, index, mine: list, out, meta: dict) -> Summary:
    """Build the frozen extractor, stream this shard through it, publish the shard."""
    import keras

    from headstart.shared.data.images import Skipped, read_image
    from headstart.shared.data.modelinput import resizer
    from headstart.shared.model import accelerate
    from headstart.shared.model.backbones import build_backbone
    from headstart.shared.model.classifier import assemble
    from headstart.shared.model.featureshards import ShardWriter, weights_digest
    from headstart.shared.model.predict import stream_batches
    from headstart.shared.runtime.logs import Progress

    keras.utils.set_random_seed(spec.seed)  # as train does: a weights=none base is the same one
    backbone = build_backbone(spec.backbone, size, spec.weights)
    clf = assemble(backbone, info, size, len(index.labels))  # train's extractor, exactly
    extractor = clf.extractor
    mixed = accelerate.wanted(spec.accelerate)
    if mixed:
        extractor = accelerate.mixed_extractor(clf.extractor, clf.backbone)
        log.info("frozen backbone pass: mixed precision (float16)")
    maps_shape = tuple(int(d) for d in clf.extractor.output.shape[1:])
    writer = ShardWriter(out, maps_shape[-1], maps_shape if spec.spatial else None)
    store = open_store(spec.dataset)
    resize = resizer(size)

    def decode(row):
        split, _, item = row
        image = read_image(store, item.key, item.label, target=size, max_pixels=spec.max_pixels,
                           min_side=spec.min_side)
        return image if isinstance(image, Skipped) else (resize(image), None)

    split_of = {item.key: split for split, _, item in mine}  # skipped.csv names the split
    progress = Progress(len(mine), "features", "img", log)
    t0 = time.monotonic()
    for rows, maps, _, failed in stream_batches(extractor, mine, decode, spec.batch_size,
                                                workers=spec.workers):
        writer.add(rows, maps)
        for s in failed:
            log.warning("skipping %s: %s (%s)", s.key, s.status, s.reason)
            writer.skip(split_of.get(s.key, ""), s)
        progress.update(len(rows) + len(failed), failed=len(failed))
    progress.close()
    seconds = time.monotonic() - t0
    n = len(writer.rows)
    meta.update(digest=weights_digest(clf.backbone), mixed_precision=mixed,
                images_per_s=round(n / max(seconds, 1e-9), 2), seconds=round(seconds, 3))
    writer.publish(meta, shard=meta["shard"], shard_count=meta["shard_count"])
    log.info("features: %d images (%d skipped) in %.1fs (%.1f img/s) -> %s", n, len(writer.skipped),
             seconds, meta["images_per_s"], out.uri)
    return _summary(out.uri, n, meta["shard"], meta["shard_count"])


"""Audit workflow: dataset -> decode (+ health facts, thumbnails) streamed into the backbone
(or ``--features`` shards) -> findings -> outputs.

Outputs: audit.csv (one row per image), keep.csv (the keep-list ``train --exclude`` reads),
summary.json, report.html (thumbnail galleries per finding), spec.yaml; manifest last.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from headstart.jobs.audit.spec import AuditSpec
from headstart.shared.data.datasets import Item, SplitConfig, discover
from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.logs import Progress
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.storage.store import Store, open_store

log = logging.getLogger("headstart.audit")
THUMB = 72


@dataclass
class Decoded:
    item: Item
    split: str
    array: np.ndarray | None   # float32, through the model's own resize; None when unreadable or used
    thumb: bytes | None        # PNG thumbnail for the report
    width: int = 0
    height: int = 0
    std: float = 0.0
    error: str = ""


def _decode(store: Store, item: Item, split: str, size: int, max_pixels: int,
            resize: Callable[[np.ndarray], np.ndarray] | None) -> Decoded:
    """Health facts and thumbnail of one image; with ``resize``, also what the backbone sees:
    the one decode path (scaled decode) and the model's own resize, as every job feeds it."""
    from PIL import Image

    from headstart.shared.data.images import ImageRejected, decode_image, encode_png, inspect_image

    try:
        data = store.read_bytes(item.key)
        info = inspect_image(data, max_pixels, 1)
        array = decode_image(data, target=size, max_pixels=max_pixels, min_side=1)  # tiny ones are a finding
    except (OSError, ImageRejected) as exc:
        return Decoded(item, split, None, None, error=f"{type(exc).__name__}: {exc}")
    img = Image.fromarray(array)
    thumb = img.copy()
    thumb.thumbnail((THUMB, THUMB))
    small = np.asarray(img.resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    model_in = resize(array) if resize is not None else None
    return Decoded(item, split, model_in, encode_png(np.asarray(thumb)), info.width, info.height,
                   float(small.std()))


def decode_stream(spec: AuditSpec, index, size: int, resize, into: list[Decoded]) -> Iterator[Decoded]:
    """Every image of every split, decoded in order on threads (reads dominate on object
    stores) with a bounded window; each one is appended to ``into`` and yielded."""
    from headstart.shared.model.predict import ordered_map

    store = open_store(spec.dataset)
    jobs = [(item, split) for split, items in index.splits.items() for item in items]
    progress = Progress(len(jobs), "decode", "img", log)
    for d in ordered_map(lambda j: _decode(store, j[0], j[1], size, spec.max_pixels, resize), jobs,
                         workers=8, window=4 * max(spec.batch_size, 64)):
        into.append(d)
        progress.update(1, failed=int(d.array is None and d.thumb is None))
        yield d
    progress.close()


def _batches(decoded: Iterator[Decoded], batch_size: int) -> Iterator[np.ndarray]:
    """Model inputs of the readable images, ``batch_size`` at a time; pixels are dropped once
    batched, so memory holds a window of images, not the dataset."""
    batch: list[np.ndarray] = []
    for d in decoded:
        if d.array is None:
            continue
        batch.append(d.array)
        d.array = None
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def embed(spec: AuditSpec, index, n_labels: int, size: int) -> tuple[list[Decoded], np.ndarray]:
    """(every image's Decoded, pooled backbone features (n_readable, d) in order): decoding
    streams into the backbone pass."""
    from headstart.shared.data.modelinput import resizer
    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble
    from headstart.shared.model.features import extract_batches
    from headstart.shared.model.selection import pooled

    clf = assemble(build_backbone(spec.backbone, size, spec.weights), get_info(spec.backbone), size,
                   max(n_labels, 2))
    decoded: list[Decoded] = []
    total = sum(len(items) for items in index.splits.values())
    stream = decode_stream(spec, index, size, resizer(size, clf.model), decoded)
    # Pooled as they come (the same bits as pooling the float16 maps): h x w times less cache.
    maps = extract_batches(clf.extractor, _batches(stream, spec.batch_size), total, spec.batch_size,
                           "features", cache_dir=spec.cache_dir, pool=True)
    return decoded, pooled(maps[:, 0])


def from_shards(spec: AuditSpec, size: int):
    """(index, every image's Decoded, pooled features) with the features of ``--features``
    shards: no backbone pass; images are decoded for health facts and thumbnails only."""
    from headstart.shared.data.modelinput import preprocessing_tag
    from headstart.shared.model.featureshards import check_matches, read_feature_set

    assert spec.features is not None
    fs = read_feature_set(spec.features, spatial=False, cache_dir=spec.cache_dir)
    check_matches(fs.meta, {"backbone": spec.backbone, "image_size": size, "weights": spec.weights,
                            "resize": preprocessing_tag()}, spec.features)
    dataset = open_store(spec.dataset).uri
    if fs.meta["dataset"] != dataset:
        raise UserError(f"the feature shards at {spec.features!r} are of dataset {fs.meta['dataset']!r}, "
                        f"this audit is of {dataset!r}")
    index = fs.index
    decoded: list[Decoded] = []
    for _ in decode_stream(spec, index, size, None, decoded):
        pass
    row = {(split, item.key): r for split, items in index.splits.items() for r, item in enumerate(items)}
    feats = [np.asarray(fs.pooled[d.split][row[(d.split, d.item.key)]], np.float32)
             for d in decoded if d.thumb is not None]
    for split, skipped in fs.skipped.items():  # what the features job could not read: findings too
        decoded.extend(Decoded(Item(s.key, s.label), split, None, None, error=f"{s.status}: {s.reason}")
                       for s in skipped)
    return index, decoded, np.stack(feats) if feats else np.zeros((0, 1), np.float32)


def audit(spec: AuditSpec):
    """Run the audit job described by ``spec``."""
    from headstart.shared.audit import findings
    from headstart.shared.model.backbones import get_info, resolve_size

    t0 = time.monotonic()
    findings.require_cleanlab()  # before any slow part
    size = resolve_size(get_info(spec.backbone), spec.image_size)
    if spec.valid_fraction + spec.test_fraction >= 0.9:
        raise UserError(f"valid_fraction + test_fraction must be below 0.9, got {spec.valid_fraction} + "
                        f"{spec.test_fraction}")
    out = RunOutput(open_store(spec.out), "audit")
    if spec.features:
        index, decoded, feats = from_shards(spec, size)
        out.unpublish()
    else:
        index = discover(spec.dataset, SplitConfig(valid_fraction=spec.valid_fraction,
                                                   test_fraction=spec.test_fraction, seed=spec.seed,
                                                   max_per_label=None, min_per_label=1))
        out.unpublish()
        decoded, feats = embed(spec, index, len(index.labels), size)
    ok = [d for d in decoded if d.thumb is not None]
    if len(ok) < 2:
        raise UserError(f"{spec.dataset!r}: {len(ok)} readable image(s); an audit needs at least 2")
    labels = index.labels
    lab_index = {name: i for i, name in enumerate(labels)}
    y = np.asarray([lab_index[d.item.label] for d in ok])
    from headstart.shared.explain.similarity import normalize

    emb = normalize(feats)
    splits = [d.split for d in ok]
    scanned = findings.similarity_scan(emb, splits, spec.duplicate_threshold, spec.leakage_threshold,
                                       k=min(spec.neighbours, len(ok) - 1))
    issues = findings.label_issues(feats, y, len(labels), seed=spec.seed, folds=spec.folds,
                                    neighbours=scanned.neighbours, min_given_prob=spec.min_given_prob,
                                    rule=spec.label_rule)
    out_score, out_flag = findings.outlier_scores(emb, y, spec.outlier_mads)
    dups = findings.duplicates(emb, y, splits, spec.duplicate_threshold, spec.leakage_threshold, scanned)
    from headstart.jobs.audit.outputs import write_outputs

    return write_outputs(spec, out, index, decoded, ok, y, issues, (out_score, out_flag), dups, time.monotonic() - t0)

"""Audit workflow: dataset -> decode (+ health facts, thumbnails) -> features -> findings -> outputs.

Outputs: audit.csv (one row per image), keep.csv (the keep-list ``train --exclude`` reads),
summary.json, report.html (thumbnail galleries per finding), spec.yaml; manifest last.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
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
    array: np.ndarray | None   # resized to the model's input size; None when unreadable
    thumb: bytes | None        # PNG thumbnail for the report
    width: int = 0
    height: int = 0
    std: float = 0.0
    error: str = ""


def _decode(store: Store, item: Item, split: str, size: int, max_pixels: int) -> Decoded:
    from PIL import Image

    from headstart.shared.data.images import ImageRejected, decode_image, encode_png

    try:
        data = store.read_bytes(item.key)
        array = decode_image(data, max_pixels=max_pixels, min_side=1)  # tiny ones are a finding, not a skip
    except (OSError, ImageRejected) as exc:
        return Decoded(item, split, None, None, error=f"{type(exc).__name__}: {exc}")
    h, w = array.shape[:2]
    img = Image.fromarray(array)
    thumb = img.copy()
    thumb.thumbnail((THUMB, THUMB))
    small = np.asarray(img.resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    model_in = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), np.uint8)
    return Decoded(item, split, model_in, encode_png(np.asarray(thumb)), w, h, float(small.std()))


def decode_all(spec: AuditSpec, index, size: int) -> list[Decoded]:
    """Every image of every split, decoded once (threads: reads dominate on object stores)."""
    store = open_store(spec.dataset)
    jobs = [(item, split) for split, items in index.splits.items() for item in items]
    progress = Progress(len(jobs), "decode", "img", log)
    out = []
    with ThreadPoolExecutor(8) as pool:
        for d in pool.map(lambda j: _decode(store, j[0], j[1], size, spec.max_pixels), jobs):
            out.append(d)
            progress.update(1, failed=int(d.array is None))
    progress.close()
    return out


def embed(spec: AuditSpec, decoded: list[Decoded], n_labels: int, size: int) -> np.ndarray:
    """Pooled backbone features (n_ok, d) of the readable images, in order."""
    from headstart.shared.model.backbones import build_backbone, get_info
    from headstart.shared.model.classifier import assemble
    from headstart.shared.model.features import extract_features
    from headstart.shared.model.selection import pooled

    clf = assemble(build_backbone(spec.backbone, size, spec.weights), get_info(spec.backbone), size,
                   max(n_labels, 2))
    images = np.stack([d.array for d in decoded if d.array is not None])
    maps = extract_features(clf.extractor, images, spec.batch_size, "features", cache_dir=spec.cache_dir)
    return pooled(maps[:, 0])


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
    index = discover(spec.dataset, SplitConfig(valid_fraction=spec.valid_fraction, test_fraction=spec.test_fraction,
                                               seed=spec.seed, max_per_label=None, min_per_label=1))
    out = RunOutput(open_store(spec.out), "audit")
    out.unpublish()
    decoded = decode_all(spec, index, size)
    ok = [d for d in decoded if d.array is not None]
    if len(ok) < 2:
        raise UserError(f"{spec.dataset!r}: {len(ok)} readable image(s); an audit needs at least 2")
    labels = index.labels
    lab_index = {name: i for i, name in enumerate(labels)}
    y = np.asarray([lab_index[d.item.label] for d in ok])
    feats = embed(spec, ok, len(labels), size)
    for d in ok:
        d.array = None  # the pixels are no longer needed: the thumbnails stay
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

"""Similarity workflow: trained model + images -> embeddings -> blocked all-pairs scan -> report.

Embeddings are computed chunk by chunk (decoded images never pile up); the all-pairs scan
then works on the (N, D) embedding matrix in bounded row blocks.
"""
from __future__ import annotations

import io
import json
import logging
import time

import numpy as np

from headstart.jobs.similarity.spec import SimilaritySpec
from headstart.shared.data.loading import skipped_csv
from headstart.shared.report import html as report
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.store import join, open_store

log = logging.getLogger("headstart.similarity")

CHUNK = 512


def embed_images(spec: SimilaritySpec, trained, refs):
    """(embeddings (n, d) float32, kept refs, skipped) for ``refs``, chunk by chunk."""
    from headstart.shared.data.imagesets import iter_chunks
    from headstart.shared.model.predict import predict_arrays
    from headstart.shared.explain.similarity import embedder

    model = embedder(trained.model)
    parts, kept, skipped = [], [], []
    from headstart.shared.runtime.logs import Progress

    overall = Progress(len(refs), "embed all", "img", log, every=30.0)  # chunks log their own lines
    for chunk in iter_chunks(refs, trained.image_size, None, CHUNK, spec.min_side, model=trained.model):
        skipped += chunk.skipped
        if chunk.refs:
            parts.append(predict_arrays(model, chunk.model, spec.batch_size, "embed"))
            kept += chunk.refs
        overall.update(len(chunk.refs) + len(chunk.skipped), failed=len(chunk.skipped))
    overall.close()
    if not kept:
        raise UserError(f"no usable images in {spec.images!r} (split {spec.split}): "
                        f"{len(skipped)} skipped")
    return np.concatenate(parts).astype(np.float32), kept, skipped


def similarity(spec: SimilaritySpec) -> Summary:
    """Run the similarity job described by ``spec``."""
    from headstart.shared.data.imagesets import resolve_images
    from headstart.shared.explain.similarity import normalize, scan
    from headstart.shared.model.trained import load_trained

    from headstart.shared.runtime import preflight

    preflight.check_output(spec.out)  # before the model loads and any image is decoded
    started = time.monotonic()
    out = RunOutput(open_store(spec.out), "similarity")
    out.unpublish()
    trained = load_trained(spec.model)
    refs = resolve_images(spec.images, spec.split, trained.split_config())
    log.info("embedding %d images", len(refs))
    emb, kept, skipped = embed_images(spec, trained, refs)
    emb = normalize(emb)
    splits = [r.split for r in kept]
    groups = np.asarray([s or "" for s in splits]) if len(set(splits) - {None}) > 1 else None
    result = scan(emb, spec.neighbours, spec.duplicate_threshold, groups, spec.leakage_threshold,
                  spec.block_rows, spec.max_pairs)
    return _write(spec, out, trained, emb, kept, skipped, result, time.monotonic() - started)


def _thumbs(kept, indices: list[int], size: int) -> dict[int, bytes]:
    """Re-decode only the images of the listed pairs (embedding does not keep pixels)."""
    from headstart.shared.data.imagesets import iter_chunks
    from headstart.shared.explain.simreport import thumbnail

    refs = [kept[i] for i in indices]
    out: dict[int, bytes] = {}
    by_uri = {kept[i].uri: i for i in indices}
    for chunk in iter_chunks(refs, size, 96, CHUNK):
        for ref, image in zip(chunk.refs, chunk.display):
            out[by_uri[ref.uri]] = thumbnail(image)
    return out


def _write(spec, out: RunOutput, trained, emb, kept, skipped, result, seconds: float) -> Summary:
    from headstart.shared.explain import simreport as sr

    names = [r.uri for r in kept]
    labels = [r.label for r in kept]
    splits = [r.split for r in kept]
    buf = io.BytesIO()
    np.savez_compressed(buf, embeddings=emb, images=np.asarray(names),
                        labels=np.asarray([x or "" for x in labels]),
                        splits=np.asarray([x or "" for x in splits]))
    out.write_bytes("embeddings.npz", buf.getvalue())
    out.write_text("neighbours.jsonl", "".join(json.dumps(r) + "\n" for r in
                                               sr.neighbour_rows(result, names, labels, splits)))
    out.write_text("duplicates.csv", sr.pairs_csv(sr.pair_rows(result.duplicates, names, labels, splits)))
    if result.leakage is not None:
        out.write_text("leakage.csv", sr.pairs_csv(sr.pair_rows(result.leakage, names, labels, splits)))
    figure = sr.matrix_png(emb, names, labels, spec.per_class)
    out.write_bytes("similarity_matrix.png", figure)
    summary = {"images": len(kept), "skipped": len(skipped), "dimensions": int(emb.shape[1]),
               "duplicates": result.duplicates.total, "duplicate_threshold": spec.duplicate_threshold,
               "leakage": None if result.leakage is None else result.leakage.total,
               "leakage_threshold": spec.leakage_threshold,
               "neighbour_label_agreement": sr.neighbour_agreement(result, labels)}
    out.write_json("summary.json", summary)
    out.write_text("skipped.csv", skipped_csv({None: skipped}))
    out.write_text("spec.yaml", spec.to_yaml())
    rep = report.Report(f"Similarity: {trained.meta.get('backbone')} on {spec.images}",
                        f"model {spec.model} · split {spec.split} · {len(kept)} images")
    rep.add("Summary", report.cards({k: v for k, v in summary.items() if v is not None}))
    for heading, body in sr.sections(result, names, labels, splits, figure,
                                     _thumbs(kept, sr.shown_indices(result), trained.image_size)):
        rep.add(heading, body)
    rep.add("Configuration", report.configuration(spec.dump(), {
        "images": spec.images, "model": spec.model, "backbone": trained.meta.get("backbone"),
        "image size": trained.image_size, "seconds": seconds}))
    out.write_text("report.html", rep.render())
    out.publish(images=len(kept), duplicates=result.duplicates.total,
                leakage=summary["leakage"])
    log.info("%d images: %d near-duplicate pairs, leakage %s -> %s", len(kept),
             result.duplicates.total, summary["leakage"], out.uri)
    metric, value = (("leaking pairs", summary["leakage"]) if summary["leakage"] is not None
                     else ("near-duplicate pairs", result.duplicates.total))
    return Summary(job="similarity", out=out.uri, produced=f"embeddings of {len(kept)} images + report",
                   metric=metric, value=value, report=join(out.uri, "report.html"), details=summary)

"""Predict workflow: trained model + images -> streamed decode/forward -> predictions -> manifest.

Decoding runs on a bounded thread pool ahead of the model (:func:`stream_batches`), so the
next batch decodes during the forward pass and at most a window of decoded images waits in
memory. With ``--shard I/N`` (or an AWS Batch array) each shard predicts a deterministic
share into ``OUT/shard-0000I-of-0000N/``; ``headstart predict-merge --out OUT`` joins them.
"""
from __future__ import annotations

import logging
import time

from headstart.jobs.predict.spec import PredictSpec
from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.storage.store import join

log = logging.getLogger("headstart.predict")

THUMB = 96  # side of the gallery thumbnails


def _output(spec: PredictSpec) -> tuple[RunOutput, int, int]:
    from headstart.shared.data.sharding import shard_output

    return shard_output(spec.out, "predict", spec.shard, spec.shard_count)


def predict(spec: PredictSpec) -> Summary:
    """Run the predict job described by ``spec``; returns its summary line."""
    from headstart.jobs.predict.outputs import Predictions
    from headstart.shared.data.imagesets import image_decoder, resolve_images
    from headstart.shared.data.sharding import select
    from headstart.shared.model.calibration import Calibration
    from headstart.shared.model.predict import stream_batches
    from headstart.shared.model.trained import load_trained
    from headstart.shared.runtime import preflight
    from headstart.shared.runtime.logs import Progress

    preflight.check_output(spec.out)  # before the model loads and any image is decoded
    out, shard, count = _output(spec)
    trained = load_trained(spec.model)
    refs = select(resolve_images(spec.images, spec.split, trained.split_config()), shard, count,
                  key=lambda r: r.key)
    if not refs:
        raise UserError(f"shard {shard}/{count} of {spec.images!r} holds no images")
    calibration = trained.calibration if spec.calibrate else Calibration()
    log.info("predicting %d images (shard %d/%d, tta %s, temperature %.3g)", len(refs), shard,
             count, spec.tta, calibration.temperature)
    results = Predictions(trained.labels, calibration, spec.top_k, spec.min_confidence,
                          spec.gallery_per_label, thumb_size=THUMB)
    progress = Progress(len(refs), "predict", "img", log)
    t0 = time.monotonic()
    try:
        # display_size 0: the decoded images themselves; thumbnails only of those the gallery keeps
        decode = image_decoder(trained.image_size, 0, model=trained.model, min_side=spec.min_side,
                               batch_resize=True)  # the full model resizes batches itself
        for batch_refs, probs, thumbs, skipped in stream_batches(
                trained.model, refs, decode, spec.batch_size, spec.tta, spec.workers):
            for s in skipped:
                log.warning("skipping %s: %s (%s)", s.key, s.status, s.reason)
            results.add(batch_refs, probs, thumbs, skipped)
            progress.update(len(batch_refs) + len(skipped), failed=len(skipped))
        progress.close()
        if results.n == 0:
            raise UserError(f"no usable images in {spec.images!r} (shard {shard}/{count}): "
                            f"{len(results.skipped)} skipped")
        seconds = time.monotonic() - t0
        summary = results.publish(
            out, spec.to_yaml(), f"Predictions: {trained.meta.get('backbone')} on {spec.images}",
            f"model {spec.model} · {results.n} images · tta {spec.tta} · temperature "
            f"{calibration.temperature:.3g}", shard=shard, shard_count=count, tta=spec.tta,
            images_per_s=round(results.n / max(seconds, 1e-9), 2))
    finally:
        results.discard()
    acc = f", accuracy {summary['accuracy']:.4f}" if "accuracy" in summary else ""
    log.info("predicted %d images (%d skipped, %d low confidence%s) in %.1fs -> %s", summary["images"],
             summary["skipped"], summary["low_confidence"], acc, seconds, out.uri)
    return Summary(job="predict", out=out.uri, produced=f"predictions of {summary['images']} images + report",
                   metric="accuracy" if "accuracy" in summary else "low confidence",
                   value=summary["accuracy"] if "accuracy" in summary else summary["low_confidence"],
                   report=join(out.uri, "report.html"),
                   details={"images": summary["images"], "skipped": summary["skipped"],
                            "images_per_s": summary["images_per_s"]})

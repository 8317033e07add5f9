"""Gradcam workflow: trained model + images -> batched heatmaps, overlays, scores -> manifest.

Images stream through in chunks (decode -> CAM per batch -> faithfulness -> overlays), so
memory stays flat however many images a shard holds. With ``--shard I/N`` (or an AWS Batch
array) each shard explains a deterministic share and publishes its own run under
``OUT/shard-0000I-of-0000N/``.
"""
from __future__ import annotations

import logging

import numpy as np

from headstart.jobs.gradcam.spec import GradcamSpec
from headstart.shared.runtime.errors import UserError
from headstart.shared.data.imagesets import ImageRef
from headstart.shared.storage.manifest import RunOutput

log = logging.getLogger("headstart.gradcam")

CHUNK = 256  # images decoded at a time


def target_resolver(target: str, labels: list[str]):
    """``refs -> targets`` for ``--target``: None (predicted), true labels, or one named label."""
    if target == "predicted":
        return lambda refs: None
    index = {label: i for i, label in enumerate(labels)}
    if target == "true":
        def true_targets(refs: list[ImageRef]) -> np.ndarray:
            bad = [r.uri for r in refs if r.label not in index]
            if bad:
                raise UserError(f"--target true needs images labelled with the model's labels "
                                f"{labels}; {bad[0]!r} has label {_label_of(refs, bad[0])!r}")
            return np.asarray([index[r.label] for r in refs], np.int32)
        return true_targets
    if target not in index:
        raise UserError(f"`target` must be 'predicted', 'true' or one of the model's labels "
                        f"{labels}. Received: target={target!r}")
    return lambda refs: np.full(len(refs), index[target], np.int32)


def _label_of(refs: list[ImageRef], uri: str) -> str | None:
    return next(r.label for r in refs if r.uri == uri)


def _output(spec: GradcamSpec) -> tuple[RunOutput, int, int]:
    from headstart.shared.data.sharding import shard_output

    return shard_output(spec.out, "gradcam", spec.shard, spec.shard_count)


def gradcam(spec: GradcamSpec):
    """Run the gradcam job described by ``spec``."""
    from headstart.jobs.gradcam.outputs import Collector
    from headstart.shared.explain.camgraph import build_cam_graph
    from headstart.shared.explain.faithfulness import faithfulness, model_predictor
    from headstart.shared.explain.gradcam import make_cam
    from headstart.shared.data.imagesets import iter_chunks, resolve_images
    from headstart.shared.runtime.stop import STOP
    from headstart.shared.data.sharding import select
    from headstart.shared.model.trained import load_trained

    from headstart.shared.runtime import preflight

    preflight.check_output(spec.out)  # before the model loads and any image is decoded
    out, shard, count = _output(spec)
    trained = load_trained(spec.model)
    targets_for = target_resolver(spec.target, trained.labels)
    # Shard on the key relative to the dataset root: the same dataset shards the same way
    # wherever it is stored.
    refs = select(resolve_images(spec.images, spec.split, trained.split_config()), shard, count,
                  key=lambda r: r.key)
    log.info("explaining %d images (shard %d/%d) with %s", len(refs), shard, count, spec.method)
    graph = build_cam_graph(trained.model, spec.layer)
    graph.check(trained.model)
    cam = make_cam(spec.method, graph)
    predict = model_predictor(trained.model, spec.batch_size) if spec.faithfulness else None
    collector = Collector(spec, trained, graph.layer_name)
    display = max(spec.overlay_size, 16)
    from headstart.shared.runtime.logs import Progress

    overall = Progress(len(refs), f"gradcam shard {shard}/{count}", "img", log, every=30.0)
    for chunk in iter_chunks(refs, trained.image_size, display, CHUNK, spec.min_side, model=trained.model):
        STOP.check()
        collector.skip(chunk.skipped)
        if not chunk.refs:
            overall.update(len(chunk.skipped), failed=len(chunk.skipped))
            continue
        result = cam.run(chunk.model, targets_for(chunk.refs), spec.batch_size)
        faith = None
        if predict is not None:
            base = result.probs[np.arange(len(result)), result.targets]
            faith = faithfulness(predict, chunk.model, result.heatmaps, result.targets, base,
                                 spec.mask_fraction, spec.seed + collector.count,
                                 spec.faithfulness_steps, spec.random_maps)
        collector.add(chunk, result, faith)
        collector.flush(out)  # overlays go out per chunk: memory stays flat
        overall.update(len(chunk.refs) + len(chunk.skipped), failed=len(chunk.skipped))
    overall.close()
    if collector.count == 0:
        raise UserError(f"no usable images in {spec.images!r} (split {spec.split}, shard "
                        f"{shard}/{count}): {len(collector.skipped)} skipped")
    return collector.publish(out, shard=shard, shard_count=count)

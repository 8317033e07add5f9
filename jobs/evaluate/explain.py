"""Explanations inside the evaluate report: Grad-CAM of the worst errors and a similarity section.

Cost stays bounded: Grad-CAM runs on the worst ``N`` images only, and the similarity scan
embeds at most :data:`SIMILARITY_CAP` images of the evaluated split. An explanation that
cannot be computed (e.g. a model without a convolutional feature map) is logged and left
out; it never fails the evaluation itself.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image

from headstart.shared.runtime.errors import UserError
from headstart.shared.data.loading import LoadedSplit
from headstart.shared.data.modelinput import to_uint8
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.model.trained import TrainedModel

log = logging.getLogger("headstart.evaluate")

SIMILARITY_CAP = 2000   # images embedded for the similarity section
DISPLAY = 192           # minimum side of the Grad-CAM overlays
DUPLICATE_THRESHOLD = 0.98


def gradcam_worst(out: RunOutput, trained: TrainedModel, split: LoadedSplit,
                  worst: list[dict[str, Any]], batch_size: int = 32) -> dict[str, bytes]:
    """Write ``gradcam/<n>.png`` for each worst error (map of the wrong prediction), name it in
    ``worst`` and return the PNGs by name (the report embeds them: it must work once copied)."""
    from headstart.shared.explain.camgraph import build_cam_graph
    from headstart.shared.explain.gradcam import make_cam, upsample
    from headstart.shared.explain.overlay import overlay_png

    if not worst:
        return {}
    images = np.stack([split.images[w["index"]] for w in worst])
    graph = build_cam_graph(trained.model)
    result = make_cam("gradcam", graph).run(images, None, batch_size)
    side = max(DISPLAY, images.shape[1])
    heat = upsample(result.heatmaps, side, side)
    overlays: dict[str, bytes] = {}
    for n, w in enumerate(worst):
        shown = np.asarray(Image.fromarray(to_uint8(images[n])).resize((side, side), Image.Resampling.BILINEAR))
        text = f"true {w['true']}, predicted {w['predicted']} {w['probability']:.2f}"
        png = overlay_png(shown, heat[n], text)
        out.write_bytes(f"gradcam/{n}.png", png)
        w["gradcam"] = f"gradcam/{n}.png"
        overlays[w["gradcam"]] = png
    log.info("Grad-CAM of the %d worst errors (layer %s)", len(worst), graph.layer_name)
    return overlays


def similarity_sections(out: RunOutput, trained: TrainedModel, split: LoadedSplit,
                        batch_size: int = 64) -> list[tuple[str, str]]:
    """Embed (a capped sample of) the split; write the matrix figure and duplicates.csv."""
    from headstart.shared.explain import simreport as sr
    from headstart.shared.model.predict import predict_arrays
    from headstart.shared.explain.similarity import embedder, normalize, scan

    n = len(split)
    idx = np.linspace(0, n - 1, min(n, SIMILARITY_CAP)).round().astype(int) if n else np.zeros(0, int)
    idx = np.unique(idx)
    emb = normalize(predict_arrays(embedder(trained.model), split.images[idx], batch_size, "embed"))
    names = [split.keys[i] for i in idx]
    labels = [trained.labels[int(split.labels[i])] for i in idx]
    result = scan(emb, 1, DUPLICATE_THRESHOLD)
    figure = sr.matrix_png(emb, names, labels, 2)
    out.write_bytes("similarity_matrix.png", figure)
    out.write_text("duplicates.csv", sr.pairs_csv(sr.pair_rows(result.duplicates, names, labels,
                                                             [split.name] * len(names))))
    note = (f"<p class='muted'>{len(idx)} of {n} images embedded; "
            "run <code>headstart similarity</code> for every image and the train/test leakage report.</p>")
    thumbs = {k: sr.thumbnail(split.images[idx[k]]) for k in sr.shown_indices(result)}
    sections = sr.sections(result, names, labels, [split.name] * len(names), figure, thumbs)
    agreement = sr.neighbour_agreement(result, labels)
    if agreement is not None:
        note += f"<p>Nearest neighbour has the same label for {agreement:.1%} of the images.</p>"
    return [(f"Similarity: {h.lower()}" if i else "Similarity", b + (note if i == 0 else ""))
            for i, (h, b) in enumerate(sections)]


def explain(out: RunOutput, trained: TrainedModel, split: LoadedSplit,
            worst: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], dict[str, bytes]]:
    """Both explanations: (extra report sections, Grad-CAM overlay PNGs by name). Failures are
    logged, not raised."""
    overlays: dict[str, bytes] = {}
    try:
        overlays = gradcam_worst(out, trained, split, worst)
    except (UserError, RuntimeError, ValueError) as exc:
        log.warning("no Grad-CAM for the worst errors: %s", exc)
    try:
        return similarity_sections(out, trained, split), overlays
    except (UserError, RuntimeError, ValueError) as exc:
        log.warning("no similarity section: %s", exc)
        return [], overlays

"""``--auto``: resolve a train spec into concrete parameters, with the evidence as outputs.

The choice is kept under ``checkpoint/`` until the run is published, so a rerun after an
interruption trains exactly what was chosen instead of searching again (timings differ
between runs, and so could a budget-bound choice).
"""
from __future__ import annotations

import json
import logging
import time

from headstart.jobs.train.spec import TrainSpec
from headstart.shared.storage.manifest import RunOutput

log = logging.getLogger("headstart.train")

CHOICE = "checkpoint/auto.json"
CHOICE_HTML = "checkpoint/auto_report.html"
# Fields auto mode sets, unless the user set them too (then the user's value is kept).
PINNABLE = ("head_width", "dropout", "learning_rate", "epochs", "class_weights",
            "fine_tune_layers", "fine_tune_epochs")


def _request(spec: TrainSpec, budget_s: float):
    from headstart.shared.auto.scoring import Candidate, parse_candidates
    from headstart.shared.auto.plan import AutoRequest
    from headstart.shared.model.backbones import get_info, resolve_size
    from headstart.shared.data.datasets import SplitConfig

    given = spec.model_fields_set
    extra = []
    if given & {"backbone", "weights", "image_size"}:  # the user's own backbone competes too
        size = resolve_size(get_info(spec.backbone), spec.image_size)
        extra = [Candidate(spec.backbone, size, spec.weights)]
    return AutoRequest.from_spec(
        spec, split=SplitConfig.from_spec(spec), candidates=parse_candidates(spec.candidates, extra),
        budget_s=budget_s, batch_size=spec.batch_size or 32,  # train size unknown yet: the full-data default
        pinned={k: getattr(spec, k) for k in PINNABLE if k in given})


def _choose(spec: TrainSpec, out: RunOutput, fp: str, t_start: float) -> tuple[dict, str]:
    """(auto.json document, report HTML): the stored choice of this spec, or a new search."""
    from headstart.shared.auto.plan import choose
    from headstart.shared.auto.report import auto_report

    if out.store.exists(CHOICE):
        doc = json.loads(out.store.read_text(CHOICE))
        if doc.get("fingerprint") == fp:
            log.info("auto: reusing the choice stored in %s (interrupted run)", CHOICE)
            return doc, out.store.read_text(CHOICE_HTML)
    budget_s = spec.budget * 60 - (time.monotonic() - t_start)
    result = choose(_request(spec, budget_s))
    doc = {**result.doc, "fingerprint": fp}
    html = auto_report(doc, result.lr_png, spec.dataset)
    out.store.write_text(CHOICE_HTML, html)
    out.store.write_text(CHOICE, json.dumps(doc, default=str))  # the commit point
    return doc, html


def resolve_auto(spec: TrainSpec, out: RunOutput, fp: str, t_start: float) -> TrainSpec:
    """The concrete spec auto mode chose (``auto`` off); writes auto.json and auto_report.html."""
    doc, html = _choose(spec, out, fp, t_start)
    out.write_json("auto.json", doc)
    out.write_text("auto_report.html", html)
    resolved = TrainSpec(**{**spec.dump(), **doc["chosen"], "auto": False})
    log.info("auto: resolved spec %s", {k: getattr(resolved, k) for k in doc["chosen"]})
    return resolved

"""Evaluate workflow: trained model + dataset split -> metrics, figures, report -> manifest."""
from __future__ import annotations

import logging
import time


from headstart.jobs.evaluate.spec import EvaluateSpec
from headstart.shared.data.datasets import Item, discover
from headstart.shared.runtime.errors import UserError
from headstart.shared.data.loading import LoadedSplit, load_split
from headstart.shared.storage.manifest import RunOutput
from headstart.shared.storage.store import open_store

log = logging.getLogger("headstart.evaluate")


def _pick_items(index, split: str) -> tuple[str, list[Item]]:
    if split == "all":
        return "all", [item for items in index.splits.values() for item in items]
    if split in index.splits:
        return split, index.splits[split]
    for fallback in ("test", "valid"):
        if fallback in index.splits:
            log.warning("dataset has no %s split; evaluating %s instead", split, fallback)
            return fallback, index.splits[fallback]
    raise UserError(f"dataset {index.uri!r} has no {split!r} split (it has {sorted(index.splits)})")


def _check_labels(dataset_labels: list[str], model_labels: list[str], uri: str) -> None:
    unknown = sorted(set(dataset_labels) - set(model_labels))
    if unknown:
        raise UserError(f"dataset {uri!r} has labels the model was not trained on: {unknown}; "
                        f"the model knows {model_labels}")


def evaluate(spec: EvaluateSpec):
    """Run the evaluate job described by ``spec``."""
    from headstart.jobs.evaluate.outputs import write_outputs
    from headstart.shared.report.metrics import summarize
    from headstart.shared.model.predict import predict_arrays
    from headstart.shared.model.trained import load_trained

    from headstart.shared.runtime import preflight

    preflight.check_output(spec.out)  # before the model loads and any image is decoded
    started = time.monotonic()
    out = RunOutput(open_store(spec.out), "evaluate")
    out.unpublish()
    trained = load_trained(spec.model)
    index = discover(spec.dataset, trained.split_config())
    _check_labels(index.labels, trained.labels, spec.dataset)
    split_name, items = _pick_items(index, spec.split)
    split: LoadedSplit = load_split(open_store(spec.dataset), split_name, items, trained.labels,
                                    trained.image_size, spec.min_side, model=trained.model)
    if len(split) == 0:
        raise UserError(f"no usable images in split {split_name!r} of {spec.dataset!r}")
    probs = predict_arrays(trained.model, split.images, spec.batch_size, f"evaluate {split_name}")
    summary = summarize(split.labels, probs, trained.labels)
    from headstart.shared.model.calibration import summary as calibration_summary

    summary["calibration"] = calibration_summary(probs, split.labels, trained.calibration)
    result = write_outputs(spec=spec, out=out, trained=trained, split=split, probs=probs,
                           summary=summary, seconds=time.monotonic() - started)
    log.info("%s: accuracy %.4f on %d images (%d skipped) -> %s", split_name, summary["accuracy"],
             summary["n"], len(split.skipped), out.uri)
    return result

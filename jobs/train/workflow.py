"""Train workflow: dataset -> decode -> backbone + head -> fit -> outputs -> manifest."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import numpy as np

from headstart.jobs.train.run import TrainRun
from headstart.jobs.train.spec import TrainSpec
from headstart.shared.data.datasets import DatasetIndex, SplitConfig, check_label_sizes, class_weight_list, discover
from headstart.shared.runtime import preflight
from headstart.shared.runtime.errors import UserError
from headstart.shared.data.loading import Prefetch, load_split
from headstart.jobs.train.stage import Clock, import_outputs_in_background, start_decode, streamed_pass, streams
from headstart.shared.storage.manifest import RunOutput, is_published
from headstart.shared.runtime.stop import STOP
from headstart.shared.runtime.summary import Summary
from headstart.shared.storage.store import open_store

log = logging.getLogger("headstart.train")

# Spec fields that do not change what is trained (a resume may differ in these).
_NON_SEMANTIC = {"out", "overwrite", "cache_dir"}


def fingerprint(spec: TrainSpec) -> str:
    data = {k: v for k, v in spec.dump().items() if k not in _NON_SEMANTIC}
    data["dataset"] = open_store(spec.dataset).uri  # ./data and /abs/data are the same dataset
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _prepare_output(spec: TrainSpec, fp: str) -> RunOutput | None:
    """Open the output; None when an identical run is already published there."""
    out = RunOutput(open_store(spec.out), "train")
    if is_published(out.store):
        previous = json.loads(out.store.read_text("manifest.json")).get("fingerprint")
        if previous == fp and not spec.overwrite:
            return None
        if not spec.overwrite:
            raise UserError(f"{spec.out!r} already holds a published run of a different spec; "
                            "pass --overwrite or choose another --out")
    if spec.overwrite:
        from headstart.shared.model.checkpoints import CheckpointStore  # training follows: TF is due

        out.unpublish()
        CheckpointStore(out.store, fp).clear()
    out.store.delete("_FAILURE.json")
    return out


def _published(spec: TrainSpec, fp: str) -> bool:
    """True when ``spec.out`` already holds a published run of this spec (and no --overwrite)."""
    store = open_store(spec.out)
    if spec.overwrite or not is_published(store):
        return False
    return json.loads(store.read_text("manifest.json")).get("fingerprint") == fp


def _done(spec: TrainSpec) -> Summary:
    from headstart.jobs.train.outputs import run_summary

    log.info("%s already holds a published run of this spec: nothing to do", spec.out)
    done = open_store(spec.out)
    return run_summary(done.uri, json.loads(done.read_text("manifest.json")).get("metrics", {}))


def _index(spec: TrainSpec):
    index = discover(spec.dataset, SplitConfig.from_spec(spec))
    if spec.exclude:  # the keep-list of `headstart audit`
        from headstart.shared.audit.keeplist import apply_exclude

        index = apply_exclude(index, spec.exclude)
    class_weight_list(spec.class_weights, index.labels)  # an unknown label: exit 2 before decoding
    return index


def _load(spec: TrainSpec, index, size: int, source=None):
    """Decode every split into arrays (the paths that feed pixels to the base again)."""
    store = open_store(spec.dataset)
    return {name: load_split(store, name, items, index.labels, size, spec.min_side,
                             spec.max_pixels, cache_dir=spec.cache_dir, source=source)
            for name, items in index.splits.items()}


def _check_counts(spec: TrainSpec, index, splits) -> None:
    for name, split in splits.items():
        counts = {label: int(np.sum(split.labels == i)) for i, label in enumerate(index.labels)}
        needed = spec.min_per_label if name == "train" else 1
        check_label_sizes(counts, needed, f"{spec.dataset} {name} split after skipping unusable images")


def _build(spec: TrainSpec, info, size: int, n_labels: int, clock: Clock):
    """The classifier (under the distribution strategy), seeded: a weights file that does not
    fit fails here, before any output changes. Times the TensorFlow import and the build."""
    t0 = time.monotonic()
    import keras

    from headstart.shared.model.backbones import build_backbone
    from headstart.shared.model.classifier import assemble
    from headstart.shared.model.distribute import get_strategy

    clock.add("import_s", time.monotonic() - t0)
    t0 = time.monotonic()
    keras.utils.set_random_seed(spec.seed)
    strategy = get_strategy()
    with strategy.scope():
        backbone = build_backbone(spec.backbone, size, spec.weights)
        clf = assemble(backbone, info, size, n_labels, spec.head_width, spec.dropout)
    clock.add("build_s", time.monotonic() - t0)
    return clf, strategy


def train(spec: TrainSpec) -> Summary:
    """Run the train job described by ``spec``."""
    from headstart.shared.model.backbones import get_info, resolve_size

    clock = Clock()
    info = get_info(spec.backbone)  # argument checks first: fail before touching data
    size = resolve_size(info, spec.image_size)
    preflight.check_input(spec.dataset, "dataset")
    preflight.check_output(spec.out)
    source: Prefetch | None = None
    built: tuple[Any, Any] | None = None
    index: DatasetIndex | None = None
    splits: dict[str, Any] = {}
    if not spec.features and _published(spec, fingerprint(spec)):
        return _done(spec)  # nothing to do: no model to build, nothing to decode
    if spec.features:  # cached shards of `headstart features`: no decode, no backbone pass
        from headstart.jobs.train.fromfeatures import load_cached

        preflight.check_backbone(spec.backbone, spec.weights, size, build=False)
        t0 = time.monotonic()
        spec, index, splits = load_cached(spec, size)
        class_weight_list(spec.class_weights, index.labels)
        clock.add("shards_s", time.monotonic() - t0)
    elif not spec.auto:  # auto checks each candidate's weights itself
        # Cheap checks only: the build below proves the weights fit (once, not twice).
        preflight.check_backbone(spec.backbone, spec.weights, size, build=False)
        index = _index(spec)
        source = start_decode(spec, index, size)  # decodes while TensorFlow loads
    try:
        if index is not None:
            built = _build(spec, info, size, len(index.labels), clock)
        fp = fingerprint(spec)
        out = _prepare_output(spec, fp)
        if out is None:
            return _done(spec)
        STOP.cooperative = True  # SIGTERM now waits for a batch end and keeps the checkpoint
        if spec.auto:  # resolve into concrete parameters (auto off); evidence in auto.json
            from headstart.jobs.train.autostep import resolve_auto

            spec = resolve_auto(spec, out, fp, clock.started)
            info = get_info(spec.backbone)
            size = resolve_size(info, spec.image_size)
            index = _index(spec)
            built = _build(spec, info, size, len(index.labels), clock)
        assert built is not None and index is not None, "built above, in one of the two branches"
        clf, strategy = built
        maps, choice = None, None
        if spec.features:  # the recipe's extractor becomes the identity over the cached features
            from headstart.jobs.train.fromfeatures import use_cached

            use_cached(clf, spec, splits)
        elif source is not None and streams(spec):
            import_outputs_in_background()
            splits, maps, choice = streamed_pass(spec, index, clf, source, size, clock)
        else:
            t0 = time.monotonic()
            splits = _load(spec, index, size, source)
            clock.add("decode_s", time.monotonic() - t0)
            if source is not None:
                clock.at("first_image_s", source.first_at)
    finally:
        if source is not None:
            source.close()
    _check_counts(spec, index, splits)
    if spec.batch_size is None:  # resolved here, so spec.yaml records the value used
        from headstart.shared.model.recipe import default_batch_size

        spec = spec.model_copy(update={"batch_size": default_batch_size(len(splits["train"]))})
        log.info("batch size %d for %d training images", spec.batch_size, len(splits["train"]))
    run = TrainRun(spec=spec, out=out, fingerprint=fp, index=index, splits=splits,
                   decode_s=clock.stages.get("decode_s", 0.0), started=clock.started, clock=clock)
    return _fit_and_write(run, clf, strategy, maps, choice)


def _fit_and_write(run: TrainRun, clf, strategy, maps, choice=None) -> Summary:
    """Run the recipe (resuming from checkpoints) on the built classifier, write the outputs."""
    from headstart.shared.model import recipe
    from headstart.shared.model.checkpoints import CheckpointStore

    spec, out, fp, index = run.spec, run.out, run.fingerprint, run.index
    ckpt = CheckpointStore(out.store, fp)
    state = ckpt.load_state()
    if state and state.get("fingerprint") != fp:
        raise UserError(f"{spec.out!r} holds a checkpoint of a different spec; pass --overwrite "
                        "or choose another --out")
    cfg = recipe.RecipeConfig.from_spec(spec, class_weights=class_weight_list(spec.class_weights, index.labels))
    with strategy.scope():  # optimizer state lives with the replicas on several GPUs
        result = recipe.fit(clf, run.splits, cfg, ckpt, maps, choice)
    from headstart.jobs.train.outputs import write_outputs

    summary = write_outputs(run, clf, result)
    ckpt.clear()  # published: the run no longer needs its resume state
    _remove_empty_folders(out.store, "checkpoint")
    return summary


def _remove_empty_folders(store, prefix: str) -> None:
    """A published local run has no empty ``checkpoint/`` folder (S3 has no folders)."""
    import os

    local = store.local_path()
    root = local / prefix if local is not None else None
    if root is None or not root.is_dir():
        return
    for path, _dirs, _files in sorted(os.walk(root), key=lambda t: -len(t[0])):
        try:
            os.rmdir(path)
        except OSError:  # not empty: something else lives there; leave it
            pass

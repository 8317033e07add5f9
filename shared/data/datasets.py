"""Dataset discovery, splitting and validation.

Two layouts on any store:

* ImageNet style: ``train/<label>/*``, optional ``valid/<label>/*`` and ``test/<label>/*``;
* flat: ``<label>/*``, split stratified and seeded into train/valid/test.

Labels come from folder names. Images themselves are decoded in :mod:`headstart.shared.data.loading`.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from headstart.shared.data import splits as splitting
from headstart.shared.runtime.config import FromSpec
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.store import Store, open_store

log = logging.getLogger(__name__)

SPLITS = splitting.SPLITS
# Files that live in dataset folders but are not images (reports written by our own jobs).
_IGNORED_NAMES = {"manifest.json", "_FAILURE.json", "scrape_report.csv", "scrape_summary.json",
                  "spec.yaml", "README.md", "README.txt", "LICENSE", "LICENSE.txt"}

_OWN_FOLDERS = {"_scrape", "checkpoint"}


@dataclass(frozen=True)
class Item:
    key: str    # relative to the dataset root
    label: str


@dataclass
class DatasetIndex:
    """Which files belong to which split and label, before decoding."""

    uri: str
    layout: str  # "imagenet" | "flat"
    labels: list[str]
    splits: dict[str, list[Item]] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for split, items in self.splits.items():
            per = dict.fromkeys(self.labels, 0)
            for item in items:
                per[item.label] += 1
            out[split] = per
        return out


@dataclass(frozen=True, kw_only=True)
class SplitConfig(FromSpec):
    """How a dataset is split and capped. These defaults are the train spec's too (its fields
    take them from here); jobs build it with ``SplitConfig.from_spec(spec)``."""

    valid_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 1337
    max_per_label: int | None = None
    min_per_label: int = 2

    def __post_init__(self) -> None:
        splitting.check_fractions(self.valid_fraction, self.test_fraction)

    def required_per_label(self) -> int:
        """Images a label needs so a flat dataset puts at least one in every split."""
        return max(self.min_per_label, 1 + int(self.valid_fraction > 0) + int(self.test_fraction > 0))


def check_label_sizes(counts: dict[str, int], needed: int, where: str) -> None:
    """Raise a clear error naming every label with fewer than ``needed`` images."""
    small = {label: n for label, n in sorted(counts.items()) if n < needed}
    if small:
        listed = ", ".join(f"{label!r} has {n}" for label, n in small.items())
        raise UserError(f"too few images per label in {where}: {listed}; each label needs at "
                        f"least {needed} usable images")


def _is_candidate(key: str) -> bool:
    parts = key.split("/")
    # Hidden folders too: a local store never lists them, so S3 must not either.
    # Our own working folders (the scrape job's ``_scrape/`` records and objects, a run's
    # ``checkpoint/``) sit beside the labels and are never images of a label.
    return (not any(p.startswith(".") for p in parts) and parts[-1] not in _IGNORED_NAMES
            and parts[0] not in _OWN_FOLDERS)


def _list_keys(store: Store, uri: str) -> tuple[list[str], set[str]]:
    """Candidate image keys, and the split folders present (even when they hold no images)."""
    local = store.local_path()
    if local is not None and not local.is_dir():
        what = "a file" if local.exists() else "missing"
        raise UserError(f"dataset must be a folder of <label>/ folders or train/valid/test; "
                        f"{uri!r} is {what}")
    all_keys = list(store.list())
    keys = [k for k in all_keys if _is_candidate(k)]
    if not keys:
        raise UserError(f"no images found in dataset {uri!r}: expected <label>/<image> files "
                        "or train/<label>/<image>")
    split_folders = {k.split("/")[0] for k in all_keys if "/" in k and k.split("/")[0] in SPLITS}
    if local is not None:
        split_folders |= {s for s in SPLITS if (local / s).is_dir()}
    return keys, split_folders


def stratified_split(items: list[Item], valid_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, list[Item]]:
    """Split per label (see :mod:`headstart.shared.data.splits`): every split keeps the label proportions,
    and the assignment depends only on the keys, the fractions and the seed — so the scrape
    job and the train job split the same files the same way."""
    by_label: dict[str, list[str]] = {}
    for item in items:
        by_label.setdefault(item.label, []).append(item.key)
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for label, assignment in splitting.stratified_split(by_label, valid_fraction, test_fraction, seed).items():
        for key in sorted(assignment):
            out[assignment[key]].append(Item(key, label))
    return out


def cap_per_label(items: list[Item], cap: int | None, seed: int, salt: str = "cap") -> list[Item]:
    """At most ``cap`` items per label, a seeded sample (the same for the same seed and salt)."""
    if cap is None:
        return items
    by_label: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda i: i.key):
        by_label.setdefault(item.label, []).append(item)
    out: list[Item] = []
    for label, group in sorted(by_label.items()):
        random.Random(f"{salt}:{seed}:{label}").shuffle(group)
        out += group[:cap]
    return out


def _empty_label_dirs(store: Store) -> list[str]:
    """Label folders with no files at all (only local stores have empty folders)."""
    root = store.local_path()
    if root is None:
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and not any(p.rglob("*.*")))


def _imagenet_items(keys: list[str], uri: str) -> dict[str, list[Item]]:
    splits: dict[str, list[Item]] = {}
    for key in keys:
        parts = key.split("/")
        if parts[0] not in SPLITS:
            continue
        if len(parts) < 3:
            log.warning("ignoring %s: expected %s/<label>/<image>", key, parts[0])
            continue
        splits.setdefault(parts[0], []).append(Item(key, parts[1]))
    extra = sorted({k.split("/")[0] for k in keys if k.split("/")[0] not in SPLITS and "/" in k})
    if extra:
        log.warning("ignoring folders next to train/: %s", ", ".join(extra))
    if not splits.get("train"):
        raise UserError(f"dataset {uri!r} has a split folder but train/ holds no images")
    return splits


def _check_labels(splits: dict[str, list[Item]], uri: str) -> list[str]:
    labels = sorted({i.label for i in splits["train"]})
    for split, items in splits.items():
        if not items:
            raise UserError(f"split {split!r} of dataset {uri!r} is empty: each split needs at "
                            "least one image per label")
        found = sorted({i.label for i in items})
        if found != labels:
            missing = sorted(set(labels) - set(found))
            extra = sorted(set(found) - set(labels))
            raise UserError(f"labels differ across splits in {uri!r}: {split}/ is missing "
                            f"{missing or 'nothing'} and has extra {extra or 'nothing'} "
                            f"compared with train/ {labels}")
    if len(labels) < 2:
        raise UserError(f"dataset {uri!r} has {len(labels)} label(s) {labels}; a classifier "
                        "needs at least 2 label folders")
    return labels


def _imagenet_splits(keys: list[str], split_folders: set[str], uri: str,
                     config: SplitConfig) -> dict[str, list[Item]]:
    splits = _imagenet_items(keys, uri)
    for split in sorted(split_folders - set(splits)):
        # A valid/ or test/ folder without images is a mistake, not "no such split".
        raise UserError(f"split {split!r} of dataset {uri!r} is empty: {split}/ holds no "
                        "images; add <label>/<image> files or remove the folder")
    splits = {s: cap_per_label(v, config.max_per_label, config.seed) for s, v in splits.items()}
    if "valid" not in splits and config.valid_fraction > 0:
        # Early stopping needs a validation set: carve it from train, stratified.
        carved = stratified_split(splits["train"], config.valid_fraction, 0.0, config.seed)
        splits["train"], splits["valid"] = carved["train"], carved["valid"]
    return splits


def _flat_splits(keys: list[str], store: Store, uri: str, config: SplitConfig) -> dict[str, list[Item]]:
    items = [Item(k, k.split("/")[0]) for k in keys if "/" in k]
    stray = [k for k in keys if "/" not in k]
    if stray:
        log.warning("ignoring %d file(s) at the dataset root (expected <label>/<image>): %s",
                    len(stray), ", ".join(stray[:5]))
    if not items:
        raise UserError(f"no images found in dataset {uri!r}: expected <label>/<image> files")
    items = cap_per_label(items, config.max_per_label, config.seed)
    counts: dict[str, int] = dict.fromkeys(_empty_label_dirs(store), 0)
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    check_label_sizes(counts, config.required_per_label(), uri)
    splits = stratified_split(items, config.valid_fraction, config.test_fraction, config.seed)
    wanted = {"train", *(["valid"] if config.valid_fraction > 0 else []),
              *(["test"] if config.test_fraction > 0 else [])}
    return {s: v for s, v in splits.items() if s in wanted}


def discover(uri: str, config: SplitConfig = SplitConfig()) -> DatasetIndex:
    """Index a dataset: detect its layout, split a flat one, and check labels per split."""
    store = open_store(uri)
    keys, split_folders = _list_keys(store, uri)
    if any(k.split("/")[0] in SPLITS and k.count("/") >= 1 for k in keys):
        layout, splits = "imagenet", _imagenet_splits(keys, split_folders, uri, config)
    else:
        layout, splits = "flat", _flat_splits(keys, store, uri, config)
    labels = _check_labels(splits, uri)
    train_counts = dict.fromkeys(labels, 0)
    for item in splits["train"]:
        train_counts[item.label] += 1
    check_label_sizes(train_counts, 1 if layout == "flat" else config.min_per_label, f"{uri} train/")
    index = DatasetIndex(uri=store.uri, layout=layout, labels=labels, splits=splits)
    log.info("dataset %s (%s layout): %d labels, %s", store.uri, layout, len(labels),
             ", ".join(f"{s}={len(v)}" for s, v in splits.items()))
    return index


def class_weight_list(weights: dict[str, float] | None, labels: list[str]) -> list[float] | None:
    """Per-index loss weights from a ``label -> weight`` mapping (unlisted labels weigh 1); a
    label the dataset does not have is a user error (checked once the labels are known, before
    any image is decoded)."""
    if not weights:
        return None
    unknown = sorted(set(weights) - set(labels))
    if unknown:
        raise UserError(f"`class_weights` names labels not in the dataset: {unknown}; labels are "
                        f"{labels}. Received: class_weights={weights}")
    return [float(weights.get(label, 1.0)) for label in labels]

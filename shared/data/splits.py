"""Deterministic, stratified train/valid/test splits.

Within each label, items are ordered by a seeded hash of their key (not by arrival order),
and the first ``round(n * test_fraction)`` go to test, the next ``round(n * valid_fraction)``
to valid, the rest to train. The result depends only on the set of keys per label, the
fractions and the seed: the same dataset built in any order, on any number of shards, splits
identically, and adding an item moves at most a few others.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

from headstart.shared.runtime.errors import UserError

SPLITS = ("train", "valid", "test")


class FractionError(UserError, ValueError):
    """Bad split fractions. A ``ValueError`` too, so a spec's validator reports it as its own."""


def check_fractions(valid_fraction: float | None, test_fraction: float | None) -> None:
    """The one split-fraction rule (every spec and :func:`stratified_split` use it): each
    fraction in [0, 1) and together below 1, so train keeps a share. ``None`` (not given
    yet) counts as 0. Raises :class:`FractionError`."""
    pairs = (("valid_fraction", valid_fraction), ("test_fraction", test_fraction))
    for name, value in pairs:
        if value is not None and not 0 <= value < 1:
            raise FractionError(f"{name} must be in [0, 1). Received: {name}={value}")
    if (valid_fraction or 0) + (test_fraction or 0) >= 1:
        raise FractionError("valid_fraction + test_fraction must be below 1 to leave a training "
                            f"split. Received: {valid_fraction} + {test_fraction}")


def split_sizes(n: int, valid_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, valid, test) counts for ``n`` items of one label.

    Each requested split gets at least one item when there is room (a label absent from
    valid/ or test/ breaks per-label metrics), and train always keeps at least one.
    """
    n_test = round(n * test_fraction) if test_fraction > 0 else 0
    n_valid = round(n * valid_fraction) if valid_fraction > 0 else 0
    if test_fraction > 0 and n_test == 0 and n >= 3:
        n_test = 1
    if valid_fraction > 0 and n_valid == 0 and n - n_test >= 2:
        n_valid = 1
    while n_test + n_valid >= n and n_test + n_valid > 0:
        if n_valid >= n_test and n_valid > 0:
            n_valid -= 1
        else:
            n_test -= 1
    return n - n_valid - n_test, n_valid, n_test


def order_key(key: str, seed: int) -> str:
    """The seeded position of ``key``: uniform, stable across runs and machines."""
    return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()


def assign_split(keys: Iterable[str], valid_fraction: float, test_fraction: float,
                 seed: int) -> dict[str, str]:
    """Split the keys of *one* label: key -> ``"train"`` / ``"valid"`` / ``"test"``."""
    ordered = sorted(set(keys), key=lambda k: (order_key(k, seed), k))
    _, n_valid, n_test = split_sizes(len(ordered), valid_fraction, test_fraction)
    out = {}
    for i, key in enumerate(ordered):
        out[key] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    return out


def stratified_split(keys_by_label: Mapping[str, Iterable[str]], valid_fraction: float,
                     test_fraction: float, seed: int) -> dict[str, dict[str, str]]:
    """Split every label separately: label -> {key -> split}."""
    check_fractions(valid_fraction, test_fraction)
    return {label: assign_split(keys, valid_fraction, test_fraction, seed)
            for label, keys in sorted(keys_by_label.items())}

"""Deterministic stratified splits: order- and shard-independent, every split populated."""
from __future__ import annotations

import random

import pytest

from headstart.shared.runtime.errors import UserError
from headstart.shared.data.splits import assign_split, split_sizes, stratified_split


def test_sizes_follow_fractions_and_keep_every_split_populated() -> None:
    assert split_sizes(100, 0.1, 0.2) == (70, 10, 20)
    assert split_sizes(3, 0.1, 0.1) == (1, 1, 1)
    assert split_sizes(2, 0.1, 0.1) == (1, 1, 0)
    assert split_sizes(1, 0.5, 0.4) == (1, 0, 0)
    assert split_sizes(10, 0.0, 0.0) == (10, 0, 0)
    for n in range(50):
        train, valid, test = split_sizes(n, 0.3, 0.3)
        assert train + valid + test == n and (n == 0 or train >= 1)


def test_assignment_ignores_input_order_and_depends_on_the_seed() -> None:
    keys = [f"k{i}" for i in range(200)]
    shuffled = keys[:]
    random.Random(1).shuffle(shuffled)
    assert assign_split(keys, 0.1, 0.1, seed=7) == assign_split(shuffled, 0.1, 0.1, seed=7)
    assert assign_split(keys, 0.1, 0.1, seed=7) != assign_split(keys, 0.1, 0.1, seed=8)


def test_split_is_stratified_per_label() -> None:
    out = stratified_split({"a": [f"a{i}" for i in range(50)], "b": [f"b{i}" for i in range(10)]},
                           0.2, 0.1, seed=0)
    for label, n in (("a", 50), ("b", 10)):
        counts = {s: sum(1 for v in out[label].values() if v == s) for s in ("train", "valid", "test")}
        assert (counts["train"], counts["valid"], counts["test"]) == split_sizes(n, 0.2, 0.1)


def test_adding_an_item_moves_few_others() -> None:
    before = assign_split([f"k{i}" for i in range(1000)], 0.1, 0.1, seed=3)
    after = assign_split([f"k{i}" for i in range(1001)], 0.1, 0.1, seed=3)
    moved = sum(before[k] != after[k] for k in before)
    assert moved <= 2


def test_bad_fractions_name_the_value() -> None:
    with pytest.raises(UserError, match="valid_fraction"):
        stratified_split({}, 1.2, 0.0, seed=0)
    with pytest.raises(UserError, match="below 1"):
        stratified_split({}, 0.5, 0.5, seed=0)

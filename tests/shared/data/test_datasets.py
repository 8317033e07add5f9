"""Dataset discovery: layouts, seeded stratified splits, caps and clear errors (local + S3)."""
from __future__ import annotations

from collections import Counter

import pytest

from headstart.shared.data.datasets import SplitConfig, discover
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.store import open_store


def write(uri: str, keys: list[str], data: bytes = b"\xff\xd8\xff fake jpeg") -> None:
    """Create objects (content does not matter: discovery never decodes)."""
    store = open_store(uri)
    for key in keys:
        store.write_bytes(key, data)


def flat(labels: dict[str, int]) -> list[str]:
    return [f"{label}/img{i:03d}.jpg" for label, n in labels.items() for i in range(n)]


def imagenet(split: str, labels: dict[str, int]) -> list[str]:
    return [f"{split}/{key}" for key in flat(labels)]


def per_split_counts(index) -> dict[str, dict[str, int]]:
    return {split: dict(Counter(item.label for item in items)) for split, items in index.splits.items()}


def keysets(index) -> dict[str, set[str]]:
    return {split: {item.key for item in items} for split, items in index.splits.items()}


# --------------------------------------------------------------------------- flat layout


def test_flat_split_is_stratified_with_every_label_in_every_split(store_uri):
    write(store_uri, flat({"cat": 20, "dog": 20, "fox": 10}))
    index = discover(store_uri, SplitConfig(valid_fraction=0.15, test_fraction=0.15, seed=1))
    assert index.layout == "flat"
    assert index.labels == ["cat", "dog", "fox"]
    assert index.uri == open_store(store_uri).uri
    counts = per_split_counts(index)
    assert set(counts) == {"train", "valid", "test"}
    assert counts["test"] == {"cat": 3, "dog": 3, "fox": 2}   # round(20 * .15), round(10 * .15)
    assert counts["valid"] == {"cat": 3, "dog": 3, "fox": 2}
    assert counts["train"] == {"cat": 14, "dog": 14, "fox": 6}
    assert index.counts() == {s: {label: c.get(label, 0) for label in index.labels}
                              for s, c in counts.items()}
    # Labels come from folder names and every key lands in exactly one split.
    sets = keysets(index)
    assert sets["train"].isdisjoint(sets["valid"]) and sets["train"].isdisjoint(sets["test"])
    assert sets["valid"].isdisjoint(sets["test"])
    assert set().union(*sets.values()) == set(flat({"cat": 20, "dog": 20, "fox": 10}))
    for items in index.splits.values():
        assert all(item.key.split("/")[0] == item.label for item in items)


def test_flat_split_same_seed_same_split_other_seed_other_split(tmp_path):
    write(str(tmp_path), flat({"a": 30, "b": 30}))
    first = discover(str(tmp_path), SplitConfig(seed=7))
    again = discover(str(tmp_path), SplitConfig(seed=7))
    other = discover(str(tmp_path), SplitConfig(seed=8))
    assert keysets(first) == keysets(again)
    assert [i.key for i in first.splits["train"]] == [i.key for i in again.splits["train"]]
    assert keysets(first) != keysets(other)
    assert per_split_counts(first) == per_split_counts(other)  # same proportions


def test_flat_small_label_still_gets_one_image_per_split(tmp_path):
    write(str(tmp_path), flat({"a": 3, "b": 12}))
    counts = per_split_counts(discover(str(tmp_path)))
    assert counts["test"]["a"] == 1 and counts["valid"]["a"] == 1 and counts["train"]["a"] == 1


def test_flat_zero_fractions_drop_those_splits(tmp_path):
    write(str(tmp_path), flat({"a": 4, "b": 4}))
    index = discover(str(tmp_path), SplitConfig(valid_fraction=0.2, test_fraction=0.0))
    assert set(index.splits) == {"train", "valid"}
    index = discover(str(tmp_path), SplitConfig(valid_fraction=0.0, test_fraction=0.0))
    assert set(index.splits) == {"train"}
    assert len(index.splits["train"]) == 8


def test_flat_max_per_label_caps_before_splitting(tmp_path):
    write(str(tmp_path), flat({"a": 25, "b": 8}))
    index = discover(str(tmp_path), SplitConfig(max_per_label=10, seed=3))
    totals = Counter(item.label for items in index.splits.values() for item in items)
    assert totals == {"a": 10, "b": 8}
    again = discover(str(tmp_path), SplitConfig(max_per_label=10, seed=3))
    assert keysets(index) == keysets(again)


# --------------------------------------------------------------------------- imagenet layout


def test_imagenet_layout_with_valid_and_test_is_used_as_is(store_uri):
    keys = (imagenet("train", {"cat": 5, "dog": 4}) + imagenet("valid", {"cat": 2, "dog": 2})
            + imagenet("test", {"cat": 1, "dog": 3}))
    write(store_uri, keys)
    index = discover(store_uri)
    assert index.layout == "imagenet"
    assert index.labels == ["cat", "dog"]
    assert per_split_counts(index) == {"train": {"cat": 5, "dog": 4}, "valid": {"cat": 2, "dog": 2},
                                       "test": {"cat": 1, "dog": 3}}
    assert keysets(index)["valid"] == set(imagenet("valid", {"cat": 2, "dog": 2}))


def test_imagenet_without_valid_carves_it_from_train(tmp_path):
    write(str(tmp_path), imagenet("train", {"cat": 20, "dog": 10}) + imagenet("test", {"cat": 2, "dog": 2}))
    index = discover(str(tmp_path), SplitConfig(valid_fraction=0.2, seed=5))
    counts = per_split_counts(index)
    assert counts["valid"] == {"cat": 4, "dog": 2}
    assert counts["train"] == {"cat": 16, "dog": 8}
    assert counts["test"] == {"cat": 2, "dog": 2}
    sets = keysets(index)
    assert all(k.startswith("train/") for k in sets["valid"])
    assert sets["valid"].isdisjoint(sets["train"])
    # Seeded like the flat split.
    assert keysets(discover(str(tmp_path), SplitConfig(valid_fraction=0.2, seed=5))) == sets


def test_imagenet_without_valid_or_test(tmp_path):
    write(str(tmp_path), imagenet("train", {"cat": 6, "dog": 6}))
    index = discover(str(tmp_path))
    assert set(index.splits) == {"train", "valid"}
    assert per_split_counts(index)["valid"] == {"cat": 1, "dog": 1}
    index = discover(str(tmp_path), SplitConfig(valid_fraction=0.0))
    assert set(index.splits) == {"train"}


def test_imagenet_max_per_label_caps_each_split(tmp_path):
    write(str(tmp_path), imagenet("train", {"cat": 12, "dog": 5}) + imagenet("valid", {"cat": 6, "dog": 6}))
    index = discover(str(tmp_path), SplitConfig(max_per_label=4))
    assert per_split_counts(index) == {"train": {"cat": 4, "dog": 4}, "valid": {"cat": 4, "dog": 4}}


# --------------------------------------------------------------------------- ignored files


def test_ignored_and_hidden_files_are_not_images(store_uri):
    keys = flat({"cat": 4, "dog": 4}) + [
        "manifest.json", "_FAILURE.json", "README.md", "spec.yaml", "cat/.DS_Store",
        "dog/._img000.jpg", "cat/manifest.json", ".thumbnails/cat/t1.jpg", ".hidden/x.jpg",
    ]
    write(store_uri, keys)
    index = discover(store_uri)
    assert index.labels == ["cat", "dog"]
    found = set().union(*keysets(index).values())
    assert found == set(flat({"cat": 4, "dog": 4}))


def test_imagenet_ignores_manifest_at_root(tmp_path):
    write(str(tmp_path), imagenet("train", {"a": 3, "b": 3}) + ["manifest.json", "train/.DS_Store"])
    index = discover(str(tmp_path), SplitConfig(valid_fraction=0.0))
    assert len(index.splits["train"]) == 6


def test_stray_files_at_root_of_flat_dataset_are_ignored(tmp_path):
    write(str(tmp_path), flat({"a": 3, "b": 3}) + ["notes.txt"])
    index = discover(str(tmp_path))
    assert index.labels == ["a", "b"]
    assert "notes.txt" not in set().union(*keysets(index).values())


# --------------------------------------------------------------------------- errors


def test_missing_path_is_a_user_error(tmp_path):
    missing = tmp_path / "no-such-dataset"
    with pytest.raises(UserError, match="missing") as info:
        discover(str(missing))
    assert str(missing) in str(info.value)


def test_file_instead_of_folder_is_a_user_error(tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(UserError, match="is a file") as info:
        discover(str(path))
    assert "data.zip" in str(info.value)


def test_empty_folder_is_a_user_error(store_uri, tmp_path):
    if not store_uri.startswith("s3://"):
        (tmp_path / "store").mkdir()
    with pytest.raises(UserError, match="no images found"):
        discover(store_uri)


def test_only_ignored_files_is_no_images(tmp_path):
    write(str(tmp_path), ["manifest.json", ".DS_Store", "README.md"])
    with pytest.raises(UserError, match="no images found"):
        discover(str(tmp_path))


def test_only_root_files_is_no_images(tmp_path):
    write(str(tmp_path), ["a.jpg", "b.jpg"])
    with pytest.raises(UserError, match="no images found"):
        discover(str(tmp_path))


def test_label_with_too_few_images_is_named(store_uri):
    write(store_uri, flat({"cat": 10, "dog": 2, "emu": 1}))
    with pytest.raises(UserError, match="too few images") as info:
        discover(store_uri)
    message = str(info.value)
    assert "'dog' has 2" in message and "'emu' has 1" in message
    assert "'cat'" not in message
    assert "at least 3" in message


def test_too_few_images_respects_min_per_label(tmp_path):
    write(str(tmp_path), flat({"cat": 10, "dog": 4}))
    with pytest.raises(UserError, match="'dog' has 4"):
        discover(str(tmp_path), SplitConfig(min_per_label=5))


def test_imagenet_train_label_with_too_few_images(tmp_path):
    write(str(tmp_path), imagenet("train", {"cat": 5, "dog": 1}) + imagenet("valid", {"cat": 1, "dog": 1}))
    with pytest.raises(UserError, match="'dog' has 1"):
        discover(str(tmp_path))


def test_empty_split_folder_is_a_user_error(tmp_path):
    write(str(tmp_path), imagenet("train", {"cat": 5, "dog": 5}) + imagenet("test", {"cat": 1, "dog": 1}))
    (tmp_path / "valid" / "cat").mkdir(parents=True)
    (tmp_path / "valid" / "dog").mkdir(parents=True)
    with pytest.raises(UserError, match="'valid'.*empty"):
        discover(str(tmp_path))


def test_split_folder_with_only_ignored_files_is_empty(store_uri):
    write(store_uri, imagenet("train", {"cat": 5, "dog": 5}) + ["test/cat/.DS_Store", "test/dog/.DS_Store"])
    with pytest.raises(UserError, match="'test'.*empty"):
        discover(store_uri)


def test_train_folder_without_images_is_a_user_error(tmp_path):
    write(str(tmp_path), imagenet("valid", {"cat": 2, "dog": 2}) + ["train/.DS_Store"])
    with pytest.raises(UserError, match="train/ holds no images"):
        discover(str(tmp_path))


def test_labels_differing_across_splits_are_named(store_uri):
    write(store_uri, imagenet("train", {"cat": 4, "dog": 4}) + imagenet("valid", {"cat": 1, "dog": 1})
          + imagenet("test", {"cat": 1, "bird": 1}))
    with pytest.raises(UserError, match="labels differ across splits") as info:
        discover(store_uri)
    message = str(info.value)
    assert "test/" in message and "['dog']" in message and "['bird']" in message


def test_single_label_is_a_user_error(store_uri):
    write(store_uri, flat({"cat": 10}))
    with pytest.raises(UserError, match="at least 2 label") as info:
        discover(store_uri)
    assert "'cat'" in str(info.value)


def test_single_label_imagenet_is_a_user_error(tmp_path):
    write(str(tmp_path), imagenet("train", {"cat": 6}))
    with pytest.raises(UserError, match="1 label"):
        discover(str(tmp_path))


def test_missing_s3_prefix_is_no_images(s3_bucket):
    with pytest.raises(UserError, match="no images found") as info:
        discover(s3_bucket + "/nothing-here")
    assert "nothing-here" in str(info.value)


def test_own_working_folders_are_not_labels(tmp_path, caplog) -> None:
    """A scraped dataset keeps `_scrape/` beside the splits; a run may hold `checkpoint/`."""
    from headstart.shared.data.datasets import SplitConfig, discover

    for label in ("cat", "dog"):
        for i in range(4):
            p = tmp_path / "train" / label / f"{i}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
    for junk in ("_scrape/objects/ab/abc.jpg", "_scrape/shards/00000-of-00001/records.jsonl",
                 "checkpoint/state.json"):
        (tmp_path / junk).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / junk).write_bytes(b"x")
    index = discover(str(tmp_path), SplitConfig())
    assert index.labels == ["cat", "dog"] and index.layout == "imagenet"
    assert not [r for r in caplog.records if r.levelname == "WARNING"], "no warning about our own folders"

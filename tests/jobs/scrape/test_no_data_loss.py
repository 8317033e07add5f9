"""Scraping never deletes what it did not write: foreign files are refused up front or kept."""
from __future__ import annotations

from pathlib import Path

import pytest

from headstart.jobs.scrape.workflow import scrape
from headstart.shared.runtime.errors import UserError
from tests.helpers import dataset, spec, write_list


def _urls(server, tmp_path: Path, n: int = 6) -> str:
    return write_list(tmp_path / "u.csv", [(server.url(f"/img/k{i}.jpg"), "cat") for i in range(n)])


def test_a_non_empty_out_that_no_scrape_wrote_is_refused_before_downloading(image_server, tmp_path):
    out = tmp_path / "o"
    (out / "train" / "cat").mkdir(parents=True)
    (out / "train" / "cat" / "mine.jpg").write_bytes(b"precious")
    with pytest.raises(UserError, match="no scrape wrote") as info:
        scrape(spec(image_server, _urls(image_server, tmp_path), out))
    assert "train/cat/mine.jpg" in str(info.value) and "--overwrite" in str(info.value)
    assert sum(image_server.httpd.hits.values()) == 0
    assert (out / "train" / "cat" / "mine.jpg").read_bytes() == b"precious"


def test_overwrite_scrapes_into_it_and_replaces_the_split_folders(image_server, tmp_path):
    out = tmp_path / "o"
    (out / "train" / "cat").mkdir(parents=True)
    (out / "train" / "cat" / "mine.jpg").write_bytes(b"old")
    (out / "notes.txt").write_text("kept: outside the split folders")
    manifest = scrape(spec(image_server, _urls(image_server, tmp_path), out, overwrite=True))
    assert manifest["images"] == 6
    assert not (out / "train" / "cat" / "mine.jpg").exists()
    assert (out / "notes.txt").exists()


def test_files_added_after_a_scrape_survive_a_rerun_and_a_remerge(image_server, tmp_path):
    out = tmp_path / "o"
    urls = _urls(image_server, tmp_path)
    scrape(spec(image_server, urls, out))
    before = dataset(out)
    (out / "train" / "cat" / "mine.jpg").write_bytes(b"precious")
    scrape(spec(image_server, urls, out, seed=7))  # new split: earlier images move, mine stays
    assert (out / "train" / "cat" / "mine.jpg").read_bytes() == b"precious"
    after = {k: v for k, v in dataset(out).items() if not k.endswith("mine.jpg")}
    assert sorted(v for v in after.values()) == sorted(before.values())
    placed = (out / "_scrape" / "placed.txt").read_text().split()
    assert "train/cat/mine.jpg" not in placed and sorted(placed) == sorted(after)

"""Every job writes skipped.csv with the one csv-quoting writer."""
from __future__ import annotations

import csv
import io
import pathlib

from headstart.shared.data.loading import SKIPPED_COLUMNS, Skipped, skipped_csv

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_keys_with_commas_quotes_and_newlines_keep_their_columns() -> None:
    hostile = Skipped('cat/a,"b"\nc.png', 'la,bel', "decode_error", 'said "no", twice')
    text = skipped_csv({"train": [hostile], None: [Skipped("x.png", None, "unreadable", "gone")]})
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(SKIPPED_COLUMNS)
    assert rows[1] == ["train", 'cat/a,"b"\nc.png', "la,bel", "decode_error", 'said "no", twice']
    assert rows[2] == ["", "x.png", "", "unreadable", "gone"]


def test_no_job_hand_builds_skipped_csv() -> None:
    for path in (ROOT / "jobs").rglob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if 'write_text("skipped.csv"' in line or "write_text(SKIPPED_FILE" in line:
                assert "skipped_csv(" in line, f"{path}: {line.strip()}"
        if "def skipped_csv(" in text:  # a job's own name for it must hand over to the one writer
            body = text.split("def skipped_csv(", 1)[1].split("\ndef ", 1)[0]
            assert "shared_skipped_csv(" in body, f"{path}: a second skipped.csv writer"

"""Hostile URL lists: one clear line naming the file and line, or a per-row bad_row."""
from __future__ import annotations

from pathlib import Path

import pytest

from headstart.shared.net.urllists import describe, iter_urls
from headstart.shared.runtime.errors import UserError


def _csv(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "urls.csv"
    path.write_bytes(data)
    return str(path)


def test_a_field_over_the_csv_limit_is_a_user_error(tmp_path):
    big = b"url,label\nhttp://a/1.jpg,cat\n\"http://a/" + b"x" * 200_000 + b"\",cat\n"
    with pytest.raises(UserError, match="line 3") as info:
        describe(_csv(tmp_path, big))
    assert "urls.csv" in str(info.value) and "at most" in str(info.value)
    medium = b"url,label\nhttp://a/" + b"x" * 100_000 + b",cat\n"
    with pytest.raises(UserError, match="line 2: a field of"):
        describe(_csv(tmp_path, medium))


def test_a_line_without_end_is_bounded(tmp_path):
    with pytest.raises(UserError, match="longer than"):
        describe(_csv(tmp_path, b"url,label\n" + b"y" * (2 << 20)))


@pytest.mark.parametrize("data, looks", [
    ("url,label\nhttp://a/1.jpg,cat\nhttp://a/2.jpg,café\n".encode("latin-1"), "Latin-1"),
    ("url,label\nhttp://a/1.jpg,cat\n".encode("utf-16"), "UTF-16"),
])
def test_a_non_utf8_list_names_the_line_and_encoding(tmp_path, data, looks):
    with pytest.raises(UserError, match="not UTF-8") as info:
        describe(_csv(tmp_path, data))
    message = str(info.value)
    assert looks in message and "line" in message and "\n" not in message
    if looks == "Latin-1":
        assert "line 3" in message and "0xe9" in message


def test_a_utf8_bom_is_accepted(tmp_path):
    assert describe(_csv(tmp_path, b"\xef\xbb\xbfurl,label\nhttp://a/1.jpg,caf\xc3\xa9\n")) == (1, {"café": 1})


@pytest.mark.parametrize("label, why", [("a" * 200 + "é" * 30, "bytes"), ("CON", "reserved"),
                                        ("nul.txt", "reserved"), ("lpt1", "reserved"), ("cats.", "trailing")])
def test_labels_that_cannot_be_folder_names(tmp_path, label, why):
    data = f"url,label\nhttp://a/1.jpg,{label}\n".encode()
    with pytest.raises(UserError, match=why) as info:
        describe(_csv(tmp_path, data))
    assert "line 2" in str(info.value)


def test_label_files_named_like_devices_are_refused(tmp_path):
    (tmp_path / "aux.txt").write_text("http://a/1.jpg\n")
    with pytest.raises(UserError, match="reserved"):
        describe(str(tmp_path))


def test_a_row_with_more_fields_than_the_header_is_a_bad_row(tmp_path):
    data = b"url,label\nhttp://a/1.jpg,cat\nhttp://a/x,b.jpg,dog\nhttp://a/3.jpg,dog\n"
    entries = list(iter_urls(_csv(tmp_path, data)))
    assert [(e.index, e.label, bool(e.problem)) for e in entries] == [
        (0, "cat", False), (1, "", True), (2, "dog", False)]
    assert "line 3" in entries[1].problem and "3 fields" in entries[1].problem
    assert describe(_csv(tmp_path, data)) == (3, {"cat": 1, "": 1, "dog": 1})

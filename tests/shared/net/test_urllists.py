"""URL lists: a url,label CSV or a folder of <label>.txt/.csv files, local or S3, streamed."""
from __future__ import annotations

from pathlib import Path

import pytest

from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.store import open_store
from headstart.shared.net.urllists import describe, iter_urls


def test_csv_with_url_and_label_columns_in_any_order(tmp_path: Path) -> None:
    (tmp_path / "urls.csv").write_text("label,extra,url\ncat,1,http://a/1.jpg\n\ndog,2, http://a/2.jpg \n")
    entries = list(iter_urls(str(tmp_path / "urls.csv")))
    assert [(e.index, e.url, e.label) for e in entries] == [(0, "http://a/1.jpg", "cat"), (1, "http://a/2.jpg", "dog")]


def test_folder_of_label_files_is_numbered_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "dog.txt").write_text("http://a/d1.jpg\n# a comment\n\nhttp://a/d2.jpg\n")
    (tmp_path / "cat.csv").write_text("url\n\"http://a/c1.jpg\"\n")
    (tmp_path / "notes.md").write_text("ignored")
    entries = list(iter_urls(str(tmp_path)))
    assert [(e.index, e.label, e.url) for e in entries] == [
        (0, "cat", "http://a/c1.jpg"), (1, "dog", "http://a/d1.jpg"), (2, "dog", "http://a/d2.jpg")]
    assert describe(str(tmp_path)) == (3, {"cat": 1, "dog": 2})


def test_lists_on_s3(s3_bucket: str) -> None:
    store = open_store(s3_bucket)
    store.write_text("lists/cat.txt", "http://a/1.jpg\nhttp://a/2.jpg\n")
    store.write_text("lists/dog.txt", "http://a/3.jpg\n")
    store.write_text("one.csv", "url,label\nhttp://a/4.jpg,bird\n")
    assert [e.label for e in iter_urls(f"{s3_bucket}/lists")] == ["cat", "cat", "dog"]
    assert [e.url for e in iter_urls(f"{s3_bucket}/one.csv")] == ["http://a/4.jpg"]


@pytest.mark.parametrize("content,match", [
    ("link,label\nhttp://a,cat\n", "'url' and 'label' columns"),
    ("url,label\nhttp://a,../etc\n", "invalid label"),
    ("url,label\nhttp://a,.hidden\n", "invalid label"),
    ("url,label\nhttp://a\n", "line 2"),
])
def test_bad_csv_names_the_problem(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "urls.csv").write_text(content)
    with pytest.raises(UserError, match=match):
        list(iter_urls(str(tmp_path / "urls.csv")))


def test_missing_list_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no URL list"):
        list(iter_urls(str(tmp_path / "nothing-here")))

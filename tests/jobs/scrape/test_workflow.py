"""headstart scrape end to end against a loopback server: statuses, layout, dedupe, failures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from headstart.jobs.scrape import main as scrape_main
from headstart.jobs.scrape.spec import ScrapeSpec
from headstart.jobs.scrape.workflow import resolve_shard, scrape
from headstart.shared.runtime.errors import UserError
from headstart.shared.runtime.runner import run_job
from tests.helpers import dataset, report, spec, write_list

BAD_CASES = {
    "/status/404": ("http_error", "404"), "/status/503": ("http_error", "503"),
    "/slow": ("timeout", "200"), "/reset": ("connection_error", ""), "/html": ("not_image", "200"),
    "/truncated.jpg": ("decode_error", "200"), "/huge.png": ("too_large", "200"),
    "/tiny.png": ("too_small", "200"), "/big": ("too_large", "200"), "/big-nolength": ("too_large", "200"),
    "/loop": ("too_many_redirects", "302"),
}


def test_every_failure_becomes_a_status_in_the_report(image_server, tmp_path: Path) -> None:
    port = image_server.port
    rows = [(image_server.url(p), "bad") for p in BAD_CASES]
    rows += [(image_server.url(f"/redirect?to=http://127.0.0.1:{port}/img/a.jpg"), "bad"),
             (image_server.url("/redirect?to=http://169.254.169.254/latest/meta-data/"), "bad"),
             (image_server.url(f"/redirect?to=http://localhost:{port + 1}/img/a.jpg"), "bad"),
             ("http://0x7f000001/", "bad"), ("ftp://example.com/a.jpg", "bad"),
             (image_server.url("/flaky/f.jpg"), "good"), (image_server.url("/flaky429/g.jpg"), "good"),
             (image_server.url("/redirect?to=/img/r.jpg"), "good")]
    rows += [(image_server.url(f"/img/{i}.jpg"), "good") for i in range(4)]
    out = tmp_path / "out"
    scrape(spec(image_server, write_list(tmp_path / "u.csv", rows), out, max_bytes=1_000_000))
    got = {r["url"]: r for r in report(out)}
    for path, (status, code) in BAD_CASES.items():
        assert (got[image_server.url(path)]["status"], got[image_server.url(path)]["http_code"]) == (status, code), path
    statuses = [r["status"] for r in report(out)]
    assert statuses[len(BAD_CASES):len(BAD_CASES) + 5] == ["blocked", "blocked", "blocked", "blocked", "bad_url"]
    assert image_server.httpd.hits["/img/a.jpg"] == 0  # redirects to refused targets never connect
    flaky = got[image_server.url("/flaky/f.jpg")]
    assert (flaky["status"], flaky["attempts"]) == ("ok", "3")
    assert got[image_server.url("/status/404")]["attempts"] == "1"
    assert all(r["status"] == "ok" for r in report(out) if r["label"] == "good")
    summary = json.loads((out / "scrape_summary.json").read_text())
    assert summary["by_status"]["ok"] == 7 and summary["empty_labels"] == ["bad"]
    assert (out / "manifest.json").exists()


def test_layout_names_files_by_content_and_stores_duplicates_once(image_server, tmp_path: Path) -> None:
    rows = [(image_server.url(f"/img/c{i}.jpg"), "cat") for i in range(10)]
    rows += [(image_server.url(f"/img/d{i}.png"), "dog") for i in range(10)]
    rows += [(image_server.url("/same/1"), "cat"), (image_server.url("/same/2"), "cat"),
             (image_server.url("/same/3"), "dog"), (image_server.url("/img/c0.jpg"), "cat")]
    out = tmp_path / "out"
    manifest = scrape(spec(image_server, write_list(tmp_path / "u.csv", rows), out, seed=1))
    files = dataset(out)
    assert len(files) == 21 and manifest["images"] == 21
    for key in files:
        split, label, name = key.split("/")
        assert split in ("train", "valid", "test") and label in ("cat", "dog") and len(name.split(".")[0]) == 32
    statuses = [r["status"] for r in report(out)]
    assert statuses[20:] == ["ok", "duplicate", "conflict", "duplicate"]
    assert {k.split("/")[0] for k in files} == {"train", "valid", "test"}
    assert set(manifest["files"]) >= set(files) | {"scrape_report.csv", "scrape_summary.json"}
    assert not list((out / "_scrape").rglob("objects/*/*"))  # staging is cleaned up


def test_conflicts_can_be_dropped(image_server, tmp_path: Path) -> None:
    rows = [(image_server.url(f"/img/x{i}.jpg"), "a") for i in range(3)]
    rows += [(image_server.url("/same/1"), "a"), (image_server.url("/same/2"), "b"),
             (image_server.url("/img/y.jpg"), "b")]
    out = tmp_path / "out"
    scrape(spec(image_server, write_list(tmp_path / "u.csv", rows), out, on_conflict="drop"))
    assert [r["status"] for r in report(out)][3:] == ["conflict", "conflict", "ok"]
    assert len(dataset(out)) == 4


def test_folder_of_label_lists_and_resize(image_server, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "cat.txt").write_text("".join(image_server.url(f"/img/k{i}.jpg?size=200x100") + "\n" for i in range(3)))
    (lists / "dog.txt").write_text(image_server.url("/img/z.png?size=100x300") + "\n")
    out = tmp_path / "out"
    scrape(spec(image_server, str(lists), out, resize=50, decode_workers=1))
    from PIL import Image
    sizes = sorted(Image.open(out / k).size for k in dataset(out))
    assert sizes == [(17, 50), (50, 25), (50, 25), (50, 25)]
    assert all(k.endswith(".jpg") for k in dataset(out))


def test_below_min_success_exits_2_with_a_report_and_no_manifest(image_server, tmp_path: Path) -> None:
    rows = [(image_server.url("/img/ok.jpg"), "a")] + [(image_server.url("/status/404"), "b")] * 3
    out = tmp_path / "out"
    code = run_job("scrape", spec(image_server, write_list(tmp_path / "u.csv", rows), out, min_success=0.5),
                   scrape_main.run)
    assert code == 2
    assert len(report(out)) == 4 and (out / "scrape_summary.json").exists()
    assert not (out / "manifest.json").exists()
    assert "min-success" in json.loads((out / "_FAILURE.json").read_text())["message"]


def test_rerun_skips_finished_urls_and_gives_the_same_dataset(image_server, tmp_path: Path) -> None:
    rows = [(image_server.url(f"/img/r{i}.jpg"), "ab"[i % 2]) for i in range(12)]
    urls, out = write_list(tmp_path / "u.csv", rows), tmp_path / "out"
    scrape(spec(image_server, urls, out))
    first, hits = dataset(out), sum(image_server.httpd.hits.values())
    scrape(spec(image_server, urls, out))
    assert dataset(out) == first and sum(image_server.httpd.hits.values()) == hits
    with pytest.raises(UserError, match="other settings"):
        scrape(spec(image_server, urls, out, resize=64))


def test_shard_comes_from_the_flag_or_the_batch_array_environment(tmp_path: Path) -> None:
    base = dict(urls="u.csv", out=str(tmp_path))
    assert resolve_shard(ScrapeSpec(**base), env={}) == (0, 1)
    assert resolve_shard(ScrapeSpec(**base, shard="2/5"), env={}) == (2, 5)
    assert resolve_shard(ScrapeSpec(**base, shard_count=4), env={"AWS_BATCH_JOB_ARRAY_INDEX": "3"}) == (3, 4)
    with pytest.raises(UserError, match="shard-count"):
        resolve_shard(ScrapeSpec(**base), env={"AWS_BATCH_JOB_ARRAY_INDEX": "3"})
    with pytest.raises(UserError, match=r"must be an integer in \[0, 2\)"):
        resolve_shard(ScrapeSpec(**base, shard_count=2), env={"AWS_BATCH_JOB_ARRAY_INDEX": "2"})

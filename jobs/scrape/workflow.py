"""``headstart scrape``: URL lists -> staged images + per-URL records -> split dataset.

Steps: resolve the shard, check the output belongs to this scrape, skip URLs already
recorded (resume), download the rest, mark the shard done; an unsharded run then merges
(``headstart.jobs.scrape.merge``) into ``train/valid/test/<label>/<sha>.<ext>`` + report + manifest.
"""
from __future__ import annotations

import logging

from headstart.jobs.scrape import records
from headstart.jobs.scrape.merge import REPORT, SUMMARY, finalize
from headstart.jobs.scrape.spec import ScrapeSpec, SplitSettings
from headstart.jobs.scrape.workers import fetch_share, processes_for, run_processes
from headstart.shared.data import sharding
from headstart.shared.runtime.errors import Interrupted, UserError
from headstart.shared.runtime.logs import Progress
from headstart.shared.storage.manifest import FAILURE, MANIFEST, RunOutput, to_json
from headstart.shared.runtime.stop import STOP
from headstart.shared.storage.store import Store, open_store
from headstart.shared.net.urllists import describe
from headstart.shared.net.urlsafety import AllowList

log = logging.getLogger(__name__)

# Settings that change what is stored: a resumed shard must use the same ones.
_STORED_AS = ("urls", "resize", "reencode", "jpeg_quality", "min_side", "max_pixels", "max_bytes")


def resolve_shard(spec: ScrapeSpec, env: dict[str, str] | None = None) -> tuple[int, int]:
    """(index, count) from ``--shard``, else the AWS Batch array index + ``--shard-count``."""
    return sharding.resolve_shard(spec.shard, env, spec.shard_count)


def _check_shard_spec(store: Store, folder: str, spec: ScrapeSpec) -> None:
    """Refuse to resume a shard written with other inputs or storage settings."""
    mine = {k: getattr(spec, k) for k in _STORED_AS}
    previous = records.read_json(store, f"{folder}/{records.SHARD_SPEC}")
    if previous is None:
        store.write_text(f"{folder}/{records.SHARD_SPEC}", to_json(spec.dump()))
        return
    changed = {k: (previous.get(k), v) for k, v in mine.items() if previous.get(k) != v}
    if changed:
        what = ", ".join(f"{k}: was {old!r}, now {new!r}" for k, (old, new) in changed.items())
        raise UserError(f"{spec.out} already holds a scrape with other settings ({what}); "
                        "rerun with the same settings to resume, or use a new --out")


def _fetch_shard(spec: ScrapeSpec, store: Store, shard: tuple[int, int]) -> None:
    folder = records.shard_dir(*shard)
    total, per_label = describe(spec.urls)  # validates the whole list before any download
    if per_label.get(""):
        log.warning("%d malformed rows in %s are recorded as bad_row (see the report)",
                    per_label.pop(""), spec.urls)
    mine = len(range(shard[0], total, shard[1]))
    log.info("scrape %s: %d URLs in %d labels; shard %d/%d has %d", spec.urls, total,
             len(per_label), shard[0], shard[1], mine)
    bits, already = records.done_indices(store, folder, total)
    if already:
        log.info("resuming: %d of this shard's URLs are already done", already)
    allow = AllowList.parse(spec.allow_loopback)  # a bad endpoint: exit 2 here, not in a child
    todo = mine - already
    processes = processes_for(spec.processes, todo, spec.concurrency)
    progress = Progress(todo, f"scrape {shard[0]}/{shard[1]}", unit="url")
    if processes == 1:
        fetch_share(spec, store, shard, bits, (0, 1), allow, progress)
    else:
        run_processes(spec, shard, bits, processes, allow, progress)
    progress.close()
    if STOP.requested:
        raise Interrupted(f"received {STOP.signal_name or 'stop request'}; {progress.done} URLs "
                          "recorded, rerun the same command to resume")
    store.write_text(f"{folder}/{records.DONE}", to_json(
        {"shard": shard[0], "count": shard[1], "urls": mine, "failed_this_run": progress.failed}))


# What a scrape writes at the top of its --out (besides _scrape/ and the split folders).
_OWN_FILES = {MANIFEST, FAILURE, REPORT, SUMMARY}


def check_output_is_ours(store: Store, overwrite: bool) -> None:
    """Refuse a non-empty ``--out`` that no scrape wrote, before anything is downloaded:
    merging into it would move or delete the files already there."""
    if overwrite or next(iter(store.list(f"{records.ROOT}/")), None) is not None:
        return  # an earlier scrape of this output (it knows what it placed), or asked for
    foreign = []
    for key in store.list():
        if key not in _OWN_FILES:
            foreign.append(key)
            if len(foreign) > 5:
                break
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise UserError(f"--out {store.uri} already holds files that no scrape wrote ({shown}); "
                        "use an empty or new --out, or pass --overwrite to scrape into it anyway "
                        "(files in its train/valid/test folders are then replaced)")


def scrape(spec: ScrapeSpec) -> dict | None:
    """Run the scrape job; return the manifest (None for one shard of several)."""
    shard = resolve_shard(spec)
    store = open_store(spec.out)
    check_output_is_ours(store, spec.overwrite)
    RunOutput(store, "scrape").unpublish()
    folder = records.shard_dir(*shard)
    _check_shard_spec(store, folder, spec)
    _fetch_shard(spec, store, shard)
    if shard[1] > 1:
        log.info("shard %d/%d done; when all %d are, run: headstart scrape-merge --out %s",
                 shard[0], shard[1], shard[1], spec.out)
        return None
    settings = SplitSettings(**{k: getattr(spec, k) for k in SplitSettings.model_fields})
    return finalize(store, settings, shard_count=1, overwrite=spec.overwrite)

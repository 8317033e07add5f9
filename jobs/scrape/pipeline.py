"""The download pipeline of one shard: bounded concurrency, CPU work off the network threads.

Download threads fetch (``headstart.shared.net.fetch``), hand the bytes to a pool of decode processes
(``headstart.shared.data.imageprep``), stage the result in the store and return one record. The main thread
keeps at most ``concurrency`` URLs in flight and writes records as they finish, so memory is
flat in the length of the list.
"""
from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable

from headstart.jobs.scrape.budget import BudgetCancelled, PixelBudget, declared_pixels
from headstart.jobs.scrape.records import RecordWriter, object_key
from headstart.shared.net.fetch import FetchConfig, fetch
from headstart.shared.data.imageprep import PrepOptions, Prepared, prepare_image
from headstart.shared.runtime.cpus import usable_cpus
from headstart.shared.runtime.logs import Progress
from headstart.shared.runtime.stop import STOP
from headstart.shared.storage.store import Store
from headstart.shared.net.urllists import UrlEntry

log = logging.getLogger(__name__)


@dataclass
class Context:
    """Everything one URL needs, shared by all download threads."""

    store: Store
    fetch_config: FetchConfig
    prep: PrepOptions
    prepare: Callable[[bytes], Prepared]
    budget: PixelBudget | None = None  # decodes wait for pixels (None: unbounded)


def process_entry(entry: UrlEntry, ctx: Context) -> dict:
    """Fetch, check and stage one URL; every per-URL problem becomes the record's status."""
    start = time.monotonic()
    if entry.problem:  # a malformed row of the list: reported, never fetched
        return {"index": entry.index, "url": entry.url, "label": entry.label, "status": "bad_row",
                "error": entry.problem, "attempts": 0, "seconds": 0.0}
    result = fetch(entry.url, ctx.fetch_config)
    record = {"index": entry.index, "url": entry.url, "label": entry.label, "status": result.status,
              "http_code": result.http_code or "", "attempts": result.attempts,
              "final_url": result.final_url if result.final_url != entry.url else "",
              "error": result.error, "bytes": len(result.data) if result.data else ""}
    if result.status == "ok":
        if ctx.budget is None:
            prepared = ctx.prepare(result.data)
        else:
            try:
                with ctx.budget.hold(declared_pixels(result.data, ctx.prep.max_pixels),
                                     cancelled=ctx.fetch_config.cancelled):
                    prepared = ctx.prepare(result.data)
            except BudgetCancelled:  # not recorded (like a cancelled fetch): a rerun redoes it
                record.update(status="cancelled", error="stop requested while waiting to decode")
                return record
        result.data = None  # the download can go before the (slow) store write
        record.update(status=prepared.status, error=prepared.error, sha=prepared.sha,
                      format=prepared.format, width=prepared.width or "", height=prepared.height or "")
        if prepared.status == "ok":
            ctx.store.stage_bytes(object_key(prepared.sha, prepared.ext), prepared.data)
            record.update(ext=prepared.ext, stored_bytes=len(prepared.data),
                          stored_sha256=prepared.stored_sha256)
    record["seconds"] = round(time.monotonic() - start, 3)
    return record


def _ignore_sigint() -> None:
    # Workers leave signal handling to the parent, which stops them cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def decode_pool(workers: int | None) -> ProcessPoolExecutor | None:
    """Processes for decoding/resizing (None = decode in the download threads)."""
    if workers is None:
        # Measured on 2 cores: decode processes next to the download threads oversubscribe the
        # CPU (115 vs 154 img/s), so small machines decode in the threads.
        cpus = usable_cpus()  # the container's share, not the host's core count
        workers = 0 if cpus <= 2 else cpus - 1
    if workers == 0:
        return None
    # forkserver: the parent runs many threads, and fork() with threads can deadlock.
    ctx = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_ignore_sigint)


def make_prepare(pool: Executor | None, opts: PrepOptions) -> Callable[[bytes], Prepared]:
    if pool is None:
        return lambda data: prepare_image(data, opts)
    return lambda data: pool.submit(prepare_image, data, opts).result()


def run_pipeline(entries: Iterable[UrlEntry], ctx: Context, concurrency: int,
                 writer: RecordWriter, progress: Progress) -> int:
    """Process ``entries`` with ``concurrency`` URLs in flight; return how many finished.

    On SIGTERM/SIGINT it stops taking new URLs, lets those in flight finish and writes their
    records, so a rerun resumes exactly where this one stopped.
    """
    STOP.cooperative = True
    pending: set[Future] = set()
    # Finished futures arrive on a queue (one callback each): wait(FIRST_COMPLETED) over the
    # whole in-flight set cost O(concurrency) lock round-trips per URL.
    finished_q: queue.SimpleQueue[Future] = queue.SimpleQueue()
    finished = 0

    def collect() -> None:
        nonlocal finished
        future = finished_q.get()
        pending.discard(future)
        record = future.result()  # a storage error here is a crash, not a per-URL failure
        if record["status"] == "cancelled":
            return  # cut short by a stop request: no record, so a rerun fetches it again
        writer.add(record)
        finished += 1
        progress.update(1, failed=int(record["status"] != "ok"))

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch") as pool:
        try:
            for entry in entries:
                if STOP.requested:
                    break
                while len(pending) >= concurrency:
                    collect()
                future = pool.submit(process_entry, entry, ctx)
                pending.add(future)
                future.add_done_callback(finished_q.put)
            while pending:
                collect()
        finally:
            for future in pending:
                future.cancel()
            writer.flush()
    return finished

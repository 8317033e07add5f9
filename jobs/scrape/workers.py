"""One shard's downloads on this machine: in this process, or split over several processes.

One Python process is bound to one core by its interpreter lock (fetching, checking,
re-encoding and staging cost ~4 ms of CPU per small image here), so a shard can run as
``--processes`` children, each with its own share of the URLs (``index // shards mod
processes``), its own download threads and decodes, and its own record parts in the shard's
one folder (part names carry the pid). Resume reads every part, so a rerun may use another
process count. The parent shows one progress line over all children, forwards a stop
request as one SIGTERM each (they finish what is in flight and write its records, as one
process does), and reports a child's failure as the job's.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import traceback
from contextlib import contextmanager
from typing import Any, Iterator

from headstart.jobs.scrape import records
from headstart.jobs.scrape.budget import PixelBudget
from headstart.jobs.scrape.pipeline import Context, decode_pool, make_prepare, run_pipeline
from headstart.jobs.scrape.spec import ScrapeSpec
from headstart.shared.data.imageprep import PrepOptions
from headstart.shared.net.fetch import FetchConfig
from headstart.shared.net.urllists import UrlEntry, iter_urls
from headstart.shared.net.urlsafety import AllowList
from headstart.shared.runtime.cpus import usable_cpus
from headstart.shared.runtime.logs import Progress, setup_logging
from headstart.shared.runtime.stop import STOP
from headstart.shared.storage.store import Store, open_store

log = logging.getLogger(__name__)

# Below this many URLs to fetch, one process: a child costs ~0.3 s to start and import.
PARALLEL_MIN_URLS = 1000


def processes_for(requested: int | None, todo: int, concurrency: int) -> int:
    """How many processes fetch ``todo`` URLs: ``--processes``, else one per usable CPU for
    long lists; never more than the downloads in flight or the URLs left."""
    n = requested if requested is not None else (usable_cpus() if todo >= PARALLEL_MIN_URLS else 1)
    return max(1, min(n, concurrency, max(todo, 1)))


def _todo(spec: ScrapeSpec, shard: tuple[int, int], bits: bytearray,
          share: tuple[int, int]) -> Iterator[UrlEntry]:
    index, count = shard
    part, parts = share
    for entry in iter_urls(spec.urls):
        if (entry.index % count == index and (entry.index // count) % parts == part
                and not records.is_done(bits, entry.index)):
            yield entry


def _share(total: int, share: tuple[int, int]) -> int:
    """This process's whole share of ``total`` in-flight downloads (at least one)."""
    part, parts = share
    return max(1, total // parts + (1 if part < total % parts else 0))


def fetch_share(spec: ScrapeSpec, store: Store, shard: tuple[int, int], bits: bytearray,
                share: tuple[int, int], allow: AllowList, progress: Any) -> None:
    """Fetch this process's share of the shard's unrecorded URLs, writing records as they
    finish. ``allow`` is parsed (and its warning logged) once, by the parent."""
    concurrency = _share(spec.concurrency, share)
    ctx = Context(store, FetchConfig(
        timeout=spec.timeout, max_bytes=spec.max_bytes, max_redirects=spec.max_redirects,
        retries=spec.retries, backoff=spec.backoff, user_agent=spec.user_agent,
        allow=allow, cancelled=lambda: STOP.requested),
        PrepOptions.from_spec(spec),
        prepare=lambda data: None,  # replaced below once the pool exists
        budget=PixelBudget(int(spec.decode_budget_mpx / share[1] * 1e6)))
    writer = records.RecordWriter(store, records.shard_dir(*shard), spec.checkpoint_every)
    # Several processes already use the cores: they decode in their download threads.
    pool = decode_pool(spec.decode_workers if share[1] == 1 else (spec.decode_workers or 0))
    try:
        ctx.prepare = make_prepare(pool, ctx.prep)
        run_pipeline(_todo(spec, shard, bits, share), ctx, concurrency, writer, progress)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class _Counts:
    """A child's progress: finished and failed URLs in its two slots of a shared array."""

    def __init__(self, counts: Any, part: int) -> None:
        self.counts, self.slot = counts, 2 * part

    def update(self, n: int = 1, failed: int = 0) -> None:
        self.counts[self.slot] += n  # one writer per slot: no lock needed
        self.counts[self.slot + 1] += failed


def _child(spec: ScrapeSpec, shard: tuple[int, int], bits: bytearray, share: tuple[int, int],
           allow: AllowList, counts: Any, results: Any, level: int, env: dict[str, str]) -> None:
    # The forkserver's environment is the parent's when the forkserver started: take the
    # parent's as of now (a store endpoint or credentials set since).
    os.environ.clear()
    os.environ.update(env)
    # The parent decides how to stop: Ctrl-C reaches the whole process group, so children
    # ignore SIGINT and take the parent's one forwarded SIGTERM as a request, never raising.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, STOP.note)
    setup_logging(level)
    try:
        fetch_share(spec, open_store(spec.out), shard, bits, share, allow, _Counts(counts, share[0]))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the job
        log.debug("scrape process %d/%d failed:\n%s", *share, traceback.format_exc())
        results.put((share[0], f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    results.put((share[0], None))


class WorkerFailed(RuntimeError):
    """A scrape child process failed (a crash of the job: exit 1; its records are kept)."""


def run_processes(spec: ScrapeSpec, shard: tuple[int, int], bits: bytearray, processes: int,
                  allow: AllowList, progress: Progress) -> None:
    """Fetch the shard's unrecorded URLs in ``processes`` children; return when all are done
    or have stopped (a stop request is forwarded; ``STOP.requested`` says so afterwards)."""
    mp = multiprocessing.get_context("forkserver")  # this process may run threads: no fork()
    counts = mp.Array("q", 2 * processes, lock=False)
    results = mp.SimpleQueue()
    level = logging.getLogger().getEffectiveLevel()
    env = dict(os.environ)
    children = [mp.Process(target=_child, name=f"scrape-{i}", args=(
        spec, shard, bits, (i, processes), allow, counts, results, level, env)) for i in range(processes)]
    STOP.cooperative = True  # a first signal asks the children to finish; a second kills them
    errors: dict[int, str] = {}
    forwarded = False
    try:
        with _main_hidden():
            for child in children:
                child.start()
        log.info("scrape %d/%d: %d processes (pids %s)", *shard, processes,
                 ", ".join(str(c.pid) for c in children))
        while any(c.is_alive() for c in children):
            multiprocessing.connection.wait([c.sentinel for c in children if c.is_alive()], 0.25)
            _collect(results, errors)
            _sync(progress, counts)
            if (STOP.requested or errors) and not forwarded:
                forwarded = True
                for child in children:
                    if child.is_alive():
                        os.kill(child.pid, signal.SIGTERM)  # type: ignore[arg-type]
    except BaseException:  # a second signal, or a crash here: stop the children now
        for child in children:
            if child.is_alive():
                child.kill()
        raise
    finally:
        for child in children:
            if child.pid is not None:  # a failed start leaves the later ones unstarted
                child.join()
    _collect(results, errors)
    _sync(progress, counts)
    for i, child in enumerate(children):
        # A child still importing when the stop was forwarded ends by the signal: stopped.
        stopped = forwarded and child.exitcode == -signal.SIGTERM
        if child.exitcode != 0 and not stopped and i not in errors:
            errors[i] = f"exited with code {child.exitcode}"
    if errors:
        i, why = min(errors.items())
        raise WorkerFailed(f"scrape process {i} of {processes} failed: {why} (the records written "
                           "so far are kept: rerun the same command to resume)")


@contextmanager
def _main_hidden() -> Iterator[None]:
    """Start children without re-running the caller's ``__main__`` in them: multiprocessing
    imports it in every child (to find pickled functions), so a script calling ``scrape()``
    without an ``if __name__ == "__main__":`` guard would run again in each. The children
    need only this module."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _collect(results: Any, errors: dict[int, str]) -> None:
    while not results.empty():
        part, error = results.get()
        if error is not None:
            errors[part] = error


def _sync(progress: Progress, counts: Any) -> None:
    done, failed = sum(counts[0::2]), sum(counts[1::2])
    if done > progress.done:
        progress.update(done - progress.done, failed=failed - progress.failed)

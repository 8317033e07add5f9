"""Batched prediction over decoded splits, with progress."""
from __future__ import annotations

import logging

import keras
import numpy as np

from headstart.shared.runtime.logs import Progress
from headstart.shared.runtime.stop import STOP

log = logging.getLogger(__name__)


def predict_arrays(model: keras.Model, data: np.ndarray, batch_size: int = 64,
                   desc: str = "predict") -> np.ndarray:
    """Probabilities for ``data`` (images or feature maps), batch by batch."""
    from headstart.shared.model.features import compiled_call

    fn = compiled_call(model)
    progress = Progress(len(data), desc, "img", log)
    out = []
    for start in range(0, len(data), batch_size):
        STOP.check()
        batch = np.asarray(data[start:start + batch_size], dtype=np.float32)
        out.append(np.asarray(fn(batch)))
        progress.update(len(batch))
    progress.close()
    n_out = int(model.output.shape[-1])
    return np.concatenate(out) if out else np.zeros((0, n_out), dtype=np.float32)


# --- streaming prediction over image files (the predict job, its benchmark) ---------------

from headstart.shared.runtime.cpus import usable_cpus  # noqa: E402,F401 - one helper (affinity + cgroup quota)


def ordered_map(fn, items, workers: int, window: int):
    """``map(fn, items)`` in order on a thread pool, at most ``window`` results in flight.

    The bound is what keeps memory flat: decoded images wait for the model only up to
    ``window`` deep, however long ``items`` is, while the threads keep decoding during the
    forward pass (Pillow, file and S3 reads and TensorFlow all release the GIL).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pending: deque = deque()
    it = iter(items)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # an early exit (error, SIGTERM) drops queued decodes
                future.cancel()


def tta_call(fn, tta: bool):
    """``fn`` itself, or the mean of ``fn`` on the batch and on its left-right mirror."""
    if not tta:
        return lambda x: np.asarray(fn(x))
    return lambda x: (np.asarray(fn(x)) + np.asarray(fn(x[:, :, ::-1]))) / 2


def _grouped(call, arrays: list[np.ndarray], n_out: int) -> np.ndarray:
    """``call`` over ``arrays`` stacked, one call per distinct shape (a model that resizes
    itself takes a batch of any one size), probabilities back in the arrays' order."""
    if not arrays:
        return np.zeros((0, n_out), np.float32)
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) == 1:
        return np.asarray(call(np.stack(arrays).astype(np.float32)), np.float32)
    out = np.zeros((len(arrays), n_out), np.float32)
    for shape in shapes:
        rows = [i for i, a in enumerate(arrays) if a.shape == shape]
        out[rows] = np.asarray(call(np.stack([arrays[i] for i in rows]).astype(np.float32)), np.float32)
    return out


def stream_batches(model: keras.Model, items, decode, batch_size: int = 64, tta: bool = False,
                   workers: int | None = None, window: int | None = None):
    """Decode ``items`` (``decode(item) -> (array, extra) | failure``) and predict them batch by batch.

    Yields ``(items, probs, extras, failures)`` per batch of ``batch_size`` decoded images, in
    input order; a failure is any non-tuple ``decode`` returns (kept, never raised). Arrays of
    different shapes go through ``model`` in one call per shape (for a model that resizes
    itself; other models need the decoder to resize).
    """
    from headstart.shared.model.features import compiled_call

    call = tta_call(compiled_call(model), tta)
    workers = workers or min(16, 2 * usable_cpus())
    window = window or max(2 * batch_size, 4 * workers)
    kept: list = []
    arrays: list[np.ndarray] = []
    extras: list = []
    failures: list = []
    n_out = int(model.output.shape[-1])

    def flush():
        probs = _grouped(call, arrays, n_out)
        out = (list(kept), np.asarray(probs, np.float32), list(extras), list(failures))
        kept.clear(), arrays.clear(), extras.clear(), failures.clear()
        return out

    for item, result in zip(items, ordered_map(decode, items, workers, window)):  # items: a sequence
        STOP.check()
        if not isinstance(result, tuple):
            failures.append(result)
            continue
        kept.append(item)
        arrays.append(result[0])
        extras.append(result[1])
        if len(arrays) >= batch_size:
            yield flush()
    if arrays or failures:
        yield flush()


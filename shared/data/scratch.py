"""Large arrays on local scratch disk: in memory below :data:`MEMMAP_BYTES`, else memory-mapped.

Decoded images (:mod:`headstart.shared.data.loading`) and cached feature maps
(:mod:`headstart.shared.model.features`) share this rule, so one limit decides when a run
stops holding its arrays in RAM.
"""
from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

log = logging.getLogger(__name__)

# Above this many bytes an array goes to a memory-mapped .npy file on local disk.
MEMMAP_BYTES = 2 * 1024**3


def allocate(shape: tuple[int, ...], dtype: np.dtype | type, cache_dir: str | None,
             what: str) -> np.ndarray:
    """An uninitialised array of ``shape``: in memory, or memory-mapped under ``cache_dir``
    (default: the temp dir) when it would exceed :data:`MEMMAP_BYTES`. ``what`` names it in
    the log line and the file name."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes < MEMMAP_BYTES:
        return np.empty(shape, dtype=dtype)
    directory = cache_dir or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f"{what}-", suffix=".npy", dir=directory)
    os.close(fd)
    log.info("%s: %.1f GiB -> memory-mapped %s", what, nbytes / 1024**3, path)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

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
             what: str, memmap: bool = False) -> np.ndarray:
    """An uninitialised array of ``shape``: in memory, or memory-mapped under ``cache_dir``
    (default: the temp dir) when it would exceed :data:`MEMMAP_BYTES`. ``what`` names it in
    the log line and the file name. ``memmap``: memory-mapped whatever the size."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes < MEMMAP_BYTES and not memmap or nbytes == 0:
        return np.empty(shape, dtype=dtype)
    directory = cache_dir or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f"{what}-", suffix=".npy", dir=directory)
    os.close(fd)
    log.log(logging.DEBUG if memmap else logging.INFO, "%s: %.2f GiB -> memory-mapped %s", what,
            nbytes / 1024**3, path)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    if memmap:  # a run's private scratch: the mapping outlives the name, nothing is left behind
        os.unlink(path)
    return array

"""numpy's BLAS thread count, set for a block (ctypes on the loaded OpenBLAS; no dependency).

Lives in ``model`` (not ``runtime``) because it loads numpy, which the runtime layer may not.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def _openblas_libs() -> list:
    """The OpenBLAS libraries loaded in this process (numpy's bundled one included), via ctypes."""
    import ctypes
    import re

    try:
        with open("/proc/self/maps") as fh:
            paths = sorted(set(re.findall(r"\S*openblas\S*\.so\S*", fh.read())))
    except OSError:  # not Linux: leave BLAS as it is
        return []
    libs = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    libs.append((get, put))
                    break
            else:
                continue
            break
    return libs


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with numpy's OpenBLAS on ``n`` threads (then restore its setting).

    Small full-batch products (the default head's cross-validation) are slower threaded: the
    threads spin for work on busy or shared cores (measured here: 40 rows 10.9 s on the
    default threads, 1.5 s on one). One thread also makes the sums' order, and so the bits of
    the result, the same on every machine. A no-op where OpenBLAS is not found."""
    import numpy  # noqa: F401 - loads the library we look for

    libs = _openblas_libs()
    before = [get() for get, _ in libs]
    for _, put in libs:
        put(n)
    try:
        yield
    finally:
        for (_, put), old in zip(libs, before):
            put(old)

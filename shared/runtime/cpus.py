"""How many CPUs this process may really use (affinity mask and cgroup CPU quota).

``os.cpu_count()`` is the host's count: a 2-vCPU container on a 96-core host would start 95
decode processes. Every place that sizes workers by CPUs uses :func:`usable_cpus` instead.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Iterator
from pathlib import Path

# cgroup v2 exposes ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD"); v1 has two files.
CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(v2: Path = CGROUP_V2_MAX, v1_quota: Path = CGROUP_V1_QUOTA,
                     v1_period: Path = CGROUP_V1_PERIOD) -> float | None:
    """The CPU quota in CPUs (e.g. 1.5), or None when unlimited or unknown."""
    text = _read(v2)
    if text:
        parts = text.split()
        if len(parts) == 2 and parts[0] != "max":
            try:
                quota, period = int(parts[0]), int(parts[1])
            except ValueError:
                return None
            return quota / period if quota > 0 and period > 0 else None
        return None
    v1q, v1p = _read(v1_quota), _read(v1_period)
    try:
        q, p = int(v1q or "-1"), int(v1p or "0")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def usable_cpus(**cgroup_paths: Path) -> int:
    """CPUs this process may use: the affinity mask, capped by the cgroup quota (rounded up,
    at least 1). ``cgroup_paths`` overrides the cgroup file locations (tests)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(**cgroup_paths)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


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

"""How many CPUs this process may really use (affinity mask and cgroup CPU quota).

``os.cpu_count()`` is the host's count: a 2-vCPU container on a 96-core host would start 95
decode processes. Every place that sizes workers by CPUs uses :func:`usable_cpus` instead.
"""
from __future__ import annotations

import math
import os
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


PROC_STAT = Path("/proc/stat")


def _cpu_times(path: Path) -> tuple[int, int] | None:
    """(idle + iowait, total) jiffies over all CPUs from ``/proc/stat``, or None."""
    text = _read(path)
    if not text or not text.startswith("cpu "):
        return None
    try:
        fields = [int(f) for f in text.split("\n", 1)[0].split()[1:]]
    except ValueError:
        return None
    if len(fields) < 5:
        return None
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    return fields[3] + fields[4], sum(fields[:8])


def idle_cpus(window: float = 0.05, path: Path = PROC_STAT) -> float | None:
    """How many CPUs of the host stood idle over the next ``window`` seconds (None if unknown).

    The head fit asks before it threads: its skinny products gain ~30% on a second idle core
    and lose ~40% on one another process keeps busy (spinning threads), so it threads only
    where a core is free now. Call while this process itself is quiet."""
    import time

    first = _cpu_times(path)
    if first is None:
        return None
    time.sleep(window)
    second = _cpu_times(path)
    if second is None or second[1] <= first[1]:
        return None
    cpus = os.cpu_count() or 1
    return cpus * (second[0] - first[0]) / (second[1] - first[1])

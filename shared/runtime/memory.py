"""How much memory this process may still take: the host's available memory, capped by the
cgroup memory limit (a container's ``free`` shows the host's).

Used to size bounded buffers that pay for themselves when larger (the train job's early
decode map) without reading the container's limit as the host's.
"""
from __future__ import annotations

from pathlib import Path

MEMINFO = Path("/proc/meminfo")
CGROUP_V2 = Path("/sys/fs/cgroup")
CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def _int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (v2) or missing: no limit


def _meminfo_available(path: Path) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes(meminfo: Path = MEMINFO, v2: Path = CGROUP_V2, v1: Path = CGROUP_V1) -> int | None:
    """Bytes this process may still allocate, or None when unknown: ``MemAvailable``, capped
    by the cgroup's limit minus its current use (v2 ``memory.max``/``memory.current``, v1
    ``memory.limit_in_bytes``/``memory.usage_in_bytes``). Paths are overridable for tests."""
    candidates = [_meminfo_available(meminfo)]
    for limit_file, used_file in ((v2 / "memory.max", v2 / "memory.current"),
                                  (v1 / "memory.limit_in_bytes", v1 / "memory.usage_in_bytes")):
        limit, used = _int(limit_file), _int(used_file)
        if limit is not None and used is not None and limit < 1 << 60:  # v1 "unlimited" is ~2**63
            candidates.append(max(0, limit - used))
    known = [c for c in candidates if c is not None]
    return min(known) if known else None

"""Available memory: the host's MemAvailable, capped by a container's cgroup limit."""
from __future__ import annotations

from headstart.shared.data import earlydecode
from headstart.shared.runtime import memory


def _files(tmp_path, meminfo=None, v2=None, v1=None):
    (tmp_path / "v2").mkdir(exist_ok=True)
    (tmp_path / "v1").mkdir(exist_ok=True)
    if meminfo is not None:
        (tmp_path / "meminfo").write_text(meminfo)
    for folder, pair, names in (("v2", v2, ("memory.max", "memory.current")),
                                ("v1", v1, ("memory.limit_in_bytes", "memory.usage_in_bytes"))):
        if pair is not None:
            for name, text in zip(names, pair):
                (tmp_path / folder / name).write_text(text + "\n")
    return {"meminfo": tmp_path / "meminfo", "v2": tmp_path / "v2", "v1": tmp_path / "v1"}


MEMINFO = "MemTotal:       24000000 kB\nMemFree:        1000 kB\nMemAvailable:   8000000 kB\n"


def test_host_available_without_a_limit(tmp_path):
    assert memory.available_bytes(**_files(tmp_path, MEMINFO, v2=("max", "12345"))) == 8_000_000 * 1024


def test_cgroup_v2_limit_minus_use_caps_it(tmp_path):
    assert memory.available_bytes(**_files(tmp_path, MEMINFO, v2=(str(2 << 30), str(1 << 30)))) == 1 << 30
    assert memory.available_bytes(**_files(tmp_path, MEMINFO, v2=(str(1 << 30), str(2 << 30)))) == 0  # over


def test_cgroup_v1_limit_and_its_unlimited_value(tmp_path):
    assert memory.available_bytes(**_files(tmp_path, MEMINFO, v1=(str(3 << 30), str(1 << 30)))) == 2 << 30
    unlimited = str(0x7FFFFFFFFFFFF000)
    assert memory.available_bytes(**_files(tmp_path, MEMINFO, v1=(unlimited, "100"))) == 8_000_000 * 1024


def test_unknown_is_none(tmp_path):
    assert memory.available_bytes(**_files(tmp_path)) is None
    other = tmp_path / "other"
    other.mkdir()
    assert memory.available_bytes(**_files(other, "garbage\n")) is None


def test_early_decode_room_is_an_eighth_of_it_within_bounds(monkeypatch):
    for free, room in ((None, earlydecode.EARLY_BYTES), (1 << 30, earlydecode.EARLY_BYTES),
                       (4 << 30, 512 << 20), (64 << 30, earlydecode.EARLY_BYTES_MAX)):
        monkeypatch.setattr(memory, "available_bytes", lambda free=free: free)
        assert earlydecode.early_room() == room

"""Worker counts follow the CPUs the process may use, not the host's core count."""
from __future__ import annotations

import os

from headstart.jobs.scrape import pipeline
from headstart.shared.runtime import cpus
from headstart.shared.runtime.cpus import cgroup_cpu_limit, usable_cpus


def _paths(tmp_path, v2=None, quota=None, period=None):
    files = {"v2": tmp_path / "cpu.max", "v1_quota": tmp_path / "quota", "v1_period": tmp_path / "period"}
    for key, text in (("v2", v2), ("v1_quota", quota), ("v1_period", period)):
        if text is not None:
            files[key].write_text(text + "\n")
    return files


def test_cgroup_v2_quota_caps_the_count(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(96)))
    monkeypatch.setattr(os, "cpu_count", lambda: 96)
    assert usable_cpus(**_paths(tmp_path, v2="200000 100000")) == 2
    assert usable_cpus(**_paths(tmp_path, v2="150000 100000")) == 2  # 1.5 CPUs round up
    assert usable_cpus(**_paths(tmp_path, v2="10000 100000")) == 1
    assert usable_cpus(**_paths(tmp_path, v2="max 100000")) == 96


def test_cgroup_v1_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert usable_cpus(**_paths(tmp_path, quota="400000", period="100000")) == 4
    assert usable_cpus(**_paths(tmp_path, quota="-1", period="100000")) == 64


def test_affinity_mask_wins_over_a_larger_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert usable_cpus(**_paths(tmp_path, v2="800000 100000")) == 3
    assert usable_cpus(**_paths(tmp_path)) == 3  # no cgroup files at all


def test_garbage_cgroup_files_are_ignored(tmp_path):
    assert cgroup_cpu_limit(**_paths(tmp_path, v2="lots of cpus")) is None
    assert cgroup_cpu_limit(**_paths(tmp_path, quota="x", period="y")) is None


def test_scrape_decode_pool_is_sized_by_usable_cpus(tmp_path, monkeypatch):
    """A 2-vCPU container on a 96-core host decodes in the threads, not in 95 processes."""
    monkeypatch.setattr(os, "cpu_count", lambda: 96)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(96)))
    fake = _paths(tmp_path, v2="200000 100000")
    monkeypatch.setattr(cpus, "cgroup_cpu_limit",
                        lambda **kw: cgroup_cpu_limit(v2=fake["v2"], v1_quota=fake["v1_quota"],
                                                      v1_period=fake["v1_period"]))
    assert usable_cpus() == 2
    assert pipeline.decode_pool(None) is None


def _stat(idle: int, busy: int) -> str:
    # user nice system idle iowait irq softirq steal guest guest_nice
    return f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def test_idle_cpus_reads_the_idle_share_over_the_window(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    samples = iter([_stat(1000, 1000), _stat(1150, 1050)])  # 200 jiffies: 150 idle

    def sleep(_seconds):  # the window passes: the host's counters move on
        stat.write_text(next(samples))

    stat.write_text(next(samples))
    monkeypatch.setattr("time.sleep", sleep)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert cpus.idle_cpus(0.1, path=stat) == 3.0  # 75% of 4 CPUs idle


def test_idle_cpus_unknown_is_none(tmp_path):
    stat = tmp_path / "stat"
    assert cpus.idle_cpus(0.01, path=stat) is None  # no such file
    stat.write_text("intr 1 2 3\n")
    assert cpus.idle_cpus(0.01, path=stat) is None  # not a cpu line
    stat.write_text(_stat(10, 10))
    assert cpus.idle_cpus(0.01, path=stat) is None  # counters did not move


def test_idle_cpus_on_this_host_is_between_zero_and_the_cpu_count():
    idle = cpus.idle_cpus(0.05)
    if os.path.exists("/proc/stat"):
        assert idle is not None and 0 <= idle <= (os.cpu_count() or 1)

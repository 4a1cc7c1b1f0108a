"""workers = "auto": CPUs from affinity and cgroup quota."""

from __future__ import annotations

from pathlib import Path

from gunrunner import _cpus


def test_parse_cpu_max() -> None:
    """cgroup v2 cpu.max: "max" is unlimited, "quota period" a fraction of CPUs."""
    assert _cpus.parse_cpu_max("max 100000\n") is None
    assert _cpus.parse_cpu_max("200000 100000\n") == 2.0
    assert _cpus.parse_cpu_max("150000 100000") == 1.5


def test_quota_takes_tightest_limit_on_path(tmp_path: Path) -> None:
    """The smallest quota between our cgroup and the root wins."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "a" / "cpu.max").write_text("300000 100000\n")
    (tmp_path / "a" / "b" / "cpu.max").write_text("150000 100000\n")
    assert _cpus.quota_cpus(tmp_path, "0::/a/b\n") == 1.5
    assert _cpus.quota_cpus(tmp_path, "0::/\n") is None


def test_available_cpus_is_at_least_one_and_at_most_affinity() -> None:
    """The real machine: between 1 and the affinity count."""
    assert 1 <= _cpus.available_cpus() <= _cpus.affinity_cpus()
    assert _cpus.resolve_workers("auto") == _cpus.available_cpus()
    assert _cpus.resolve_workers(3) == 3

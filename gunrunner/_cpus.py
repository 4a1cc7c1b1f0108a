"""How many CPUs this process may really use: affinity mask and cgroup CPU quota.

`os.cpu_count()` reports the host's CPUs; a container limited to 2 CPUs on a 64-core host
would start 64 workers. We take the smallest of: the affinity mask, and every cgroup
quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`) from our cgroup up to the root.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 `cpu.max` line ("max 100000" or "150000 100000")."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = int(parts[0]), int(parts[1])
    return quota / period if period > 0 and quota > 0 else None


def _cgroup_v2_dirs(proc_cgroup: str, root: Path) -> list[Path]:
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            rel = line[3:].strip().lstrip("/")
            here = root / rel if rel else root
            dirs = [here, *here.parents]
            return [d for d in dirs if d == root or root in d.parents]
    return []


def quota_cpus(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> float | None:
    """The tightest CPU quota on our cgroup path, in CPUs, or None when unlimited."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    limits: list[float] = []
    for directory in _cgroup_v2_dirs(proc_cgroup, root):
        try:
            limit = parse_cpu_max((directory / "cpu.max").read_text())
        except (OSError, ValueError):
            continue
        if limit is not None:
            limits.append(limit)
    # cgroup v1: one hierarchy mounted at cpu or cpu,cpuacct.
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota = int((v1 / "cpu.cfs_quota_us").read_text())
            period = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            limits.append(quota / period)
    return min(limits) if limits else None


def available_cpus() -> int:
    """CPUs this process may use: min(affinity, ceil(cgroup quota)), at least 1."""
    cpus = affinity_cpus()
    quota = quota_cpus()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def resolve_workers(value: int | str) -> int:
    """The worker count an option value stands for: "auto" is available_cpus()."""
    return available_cpus() if value == "auto" else int(value)

"""A process's memory, from /proc/<pid>/status (Linux): for "memory stays flat" checks.

Measure after the buffers have had time to fill (the only sleeps that are legitimate in
these tests: there is no event for "the kernel buffers are full now"), and compare with a
bound that leaves room for the kernel's and the server's documented buffers.
"""

from __future__ import annotations

from pathlib import Path

MIB = 1024 * 1024


def status_value(pid: int, key: str) -> int:
    """A kB value of /proc/<pid>/status (VmRSS, VmHWM, ...) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def rss(pid: int) -> int:
    """Resident set size of `pid` in bytes."""
    return status_value(pid, "VmRSS")


def peak_rss(pid: int) -> int:
    """The high-water mark of the resident set size of `pid` in bytes (VmHWM)."""
    return status_value(pid, "VmHWM")

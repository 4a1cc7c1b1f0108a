"""The heartbeat cell, written by one process and read by another, as the arbiter and a
worker use it (a real fork, no mocks)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from gunrunner.status import Heartbeat


@pytest.mark.timeout(30)
def test_a_reader_never_sees_a_stamp_half_written() -> None:
    """A worker stamping in a tight loop: the arbiter never reads an age beyond the loop's.

    Regression: struct.pack_into zero-filled the cell before writing it, so a read in
    between saw 0.0 (an age as long as the machine's uptime) and the arbiter killed a
    healthy worker as "silent". In a loop like this one, about 1 read in 40 saw it.
    """
    heartbeat = Heartbeat()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only stamps
        try:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                for _ in range(1000):
                    heartbeat.stamp()
        finally:
            os._exit(0)
    worst = 0.0
    reads = 0
    reaped = False
    try:
        while not reaped:
            for _ in range(1000):
                worst = max(worst, heartbeat.age())
            reads += 1000
            reaped = os.waitpid(pid, os.WNOHANG) != (0, 0)
    finally:
        if not reaped:  # (once reaped, its pid may already be another process's)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        heartbeat.close()
    assert reads >= 10_000, "the reader did not overlap the writer enough to tell"
    assert worst < 1.0, f"read an age of {worst:.1f}s from a cell stamped continuously"


def test_age_grows_while_nobody_stamps() -> None:
    heartbeat = Heartbeat()
    try:
        first = heartbeat.age()
        time.sleep(0.05)
        assert heartbeat.age() >= first + 0.05
        heartbeat.stamp()
        assert heartbeat.age() < 0.05
    finally:
        heartbeat.close()

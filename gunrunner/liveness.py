"""Is each worker alive, and has each one marked to die died: the arbiter's periodic checks.

Knows slots, pids and signals; nothing of HTTP.

Rules:
1. A READY worker whose heartbeat is older than `timeout` has a stuck event loop: it gets
   SIGUSR2 (it dumps its stack to the log), is moved to DRAINING, and gets KILL_GRACE
   seconds before SIGKILL.
2. A worker past its kill deadline gets SIGKILL; the deadline moves on, so a worker that
   survives even that is sent SIGKILL again rather than forgotten. Its SIGCHLD reaps it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

from gunrunner.slots import SlotState, SlotTable

log = logging.getLogger("gunrunner.arbiter")  # the arbiter acts: its lines keep its name

KILL_GRACE = 2.0  # seconds between the stack dump of a silent worker and its SIGKILL
KILL_RETRY = 5.0  # seconds before a SIGKILL is sent again to a worker not yet reaped


def kill_silent_workers(slots: SlotTable, timeout: float) -> None:
    """Rule 1; `timeout` <= 0 turns the check off."""
    if timeout <= 0:
        return
    for slot in slots.live():
        if slot.state is not SlotState.READY or slot.heartbeat is None:
            continue
        silent = slot.heartbeat.age()
        if silent > timeout:
            log.error(
                "worker %d (slot %d) silent for %.1fs (timeout %gs): its event loop is "
                "stuck; dumping its stack to the log and killing it",
                slot.pid,
                slot.index,
                silent,
                timeout,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGUSR2)
            slot.move(SlotState.DRAINING)
            slot.kill_deadline = time.monotonic() + KILL_GRACE


def enforce_kill_deadlines(slots: SlotTable) -> None:
    """Rule 2."""
    now = time.monotonic()
    for slot in slots.live():
        if slot.kill_deadline is not None and now >= slot.kill_deadline:
            log.warning(
                "worker %d (slot %d) did not stop in time; sending SIGKILL",
                slot.pid,
                slot.index,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGKILL)
            slot.kill_deadline = now + KILL_RETRY

"""What the arbiter tells /metrics, /livez and /readyz (metrics_bind): the worker rows
of the shared stats table, the start, exit and recycle counts, and once a loop turn its
own view (beat, drain, slot states, memory, listen queues).

The arbiter calls in at the events (fork, reap, recycle) and once a loop turn; this
module turns them into the table's fields (stats.py). Nothing of HTTP.
"""

from __future__ import annotations

import logging
import os
import signal
import socket

from gunrunner import exits, recycling
from gunrunner import stats as s
from gunrunner.admin import AdminProcess, bind_admin
from gunrunner.exits import Action
from gunrunner.net import Listeners
from gunrunner.slots import SlotState, SlotTable, WorkerSlot

log = logging.getLogger("gunrunner.arbiter")

STATS_ROWS = 512  # worker processes counted at once: current, successors, draining ones
_STATE_CODES = {
    SlotState.EMPTY: 0,
    SlotState.BOOTING: 1,
    SlotState.READY: 2,
    SlotState.DRAINING: 3,
}


class MetricsFeed:
    def __init__(self, address: str, sock: socket.socket | None = None) -> None:
        """`sock`: the admin socket, if bound already (before a drop of privileges)."""
        self.table = s.StatsTable(STATS_ROWS)
        self.admin = AdminProcess(sock if sock is not None else bind_admin(address), self.table)
        self._next_probe = 0.0
        self._memory: dict[int, int] = {}
        self._queue: dict[int, int] = {}

    # -- events ---------------------------------------------------------------------------
    def row_for(self, slot: WorkerSlot) -> tuple[int, memoryview] | None:
        """A row for the worker about to be forked on `slot` (None: the table is full)."""
        row = self.table.take()
        if row is None:
            log.warning("metrics: no free stats row; slot %d's worker is not counted", slot.index)
        return row

    def fork_failed(self, row: tuple[int, memoryview] | None) -> None:
        if row is not None:
            self.table.release(row[0])

    def started(self, worker: WorkerSlot, row: tuple[int, memoryview] | None) -> None:
        worker.stats_row = row[0] if row is not None else 0
        self.table.count(s.WORKER_STARTS)

    def exited(self, worker: WorkerSlot, decision: exits.ExitDecision, status: int) -> None:
        """A reaped worker: keep its counts in the totals, count its exit by cause."""
        if worker.stats_row:
            self.table.release(worker.stats_row)
            worker.stats_row = 0
        self.table.count(s.EXITS + s.EXIT_CAUSES.index(exit_cause(decision, status)))

    def recycled(self, cause: str) -> None:
        self.table.count(s.RECYCLES + s.RECYCLE_CAUSES.index(cause))

    # -- once a loop turn -----------------------------------------------------------------
    def publish(
        self,
        slots: SlotTable,
        listeners: Listeners,
        now: float,
        stopping: bool,
        sampled: dict[int, int],
    ) -> None:
        """`sampled`: pid -> USS the recycler read this round (max_worker_memory), so
        /proc is not read twice for one worker."""
        wanted = sorted(slots.wanted(), key=lambda slot: slot.index)
        if now >= self._next_probe:  # memory and queues: every few seconds
            self._next_probe = now + recycling.MEMORY_INTERVAL
            for slot in wanted:
                uss = sampled.get(slot.pid)
                if uss is None and slot.pid:
                    uss = recycling.unique_memory(slot.pid)
                self._memory[slot.index] = uss or 0
                self._queue[slot.index] = listeners.queued(slot.index)
        self.table.write_state(
            draining=stopping,
            states=[_STATE_CODES[slot.state] for slot in wanted],
            memory=[self._memory.get(slot.index, 0) for slot in wanted],
            queues=[self._queue.get(slot.index, 0) for slot in wanted],
        )


def exit_cause(decision: exits.ExitDecision, status: int) -> str:
    """The metrics label of a worker's exit."""
    action = decision.action
    if action in (Action.BOOT_FAILED, Action.RESPAWN_FAILED):
        return "boot_failed"
    if action is Action.REPLACED:
        return "replaced"
    if action is Action.STOPPED or (
        action is Action.SUCCESSOR_FAILED and decision.level == logging.INFO
    ):
        return "stopped"
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    return "crashed"

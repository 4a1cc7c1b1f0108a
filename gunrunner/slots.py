"""The worker-slot table: which worker serves which slot, and in what state.

A slot is a place for one worker: its index, its listening sockets (net.Listeners) and
the process currently serving it. Transitions (anything else is a bug):

    EMPTY    -> BOOTING    fork
    BOOTING  -> READY      the worker reported ready
    BOOTING  -> DRAINING   a stop (or retirement) during boot
    READY    -> DRAINING   a stop, a retirement, or a successor took over
    BOOTING, READY, DRAINING -> EMPTY   reaped

Rule 1: a slot has one current worker; its heartbeat cell belongs to that pid.
Rule 2: a restart gives a slot a *successor* (a second WorkerSlot with the same index,
serving the same sockets). Once the successor is READY it becomes the current worker
and the old one is marked `replaced` and drained. A successor that fails to boot is
dropped and the current worker serves on: the last good code keeps serving.
Rule 3: the arbiter learns of exits only by reaping; a worker goes back to EMPTY then.
Knows pids and times, nothing of HTTP or signals.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from gunrunner.status import Heartbeat


class SlotState(enum.Enum):
    #: No process: never started, exited, or waiting for its respawn time.
    EMPTY = "empty"
    #: Forked; importing the app and starting up. Not accepting yet.
    BOOTING = "booting"
    #: Reported ready: serving the slot's sockets.
    READY = "ready"
    #: Told to stop (TERM/QUIT, retired, replaced): finishing what it has, then exits.
    DRAINING = "draining"


_ALLOWED = {
    (SlotState.EMPTY, SlotState.BOOTING),
    (SlotState.BOOTING, SlotState.READY),
    (SlotState.BOOTING, SlotState.DRAINING),
    (SlotState.BOOTING, SlotState.EMPTY),
    (SlotState.READY, SlotState.DRAINING),
    (SlotState.READY, SlotState.EMPTY),
    (SlotState.DRAINING, SlotState.EMPTY),
}


@dataclass(slots=True)
class WorkerSlot:
    index: int
    state: SlotState = SlotState.EMPTY
    pid: int = 0
    started: float = 0.0
    status_fd: int = -1  # read end of the worker's status pipe
    heartbeat: Heartbeat | None = None
    kill_deadline: float | None = None  # when DRAINING: KILL after this time
    retired: bool = False  # the slot goes away when its worker exits (TTOU)
    replaced: bool = False  # an old worker draining after its successor took over
    booted: bool = False  # reported ready at some point
    failures: int = 0  # consecutive early exits, for respawn backoff
    boot_error: str = ""  # the last boot failure logged for this slot (logged once)
    next_spawn: float = 0.0
    status_buffer: bytearray = field(default_factory=bytearray)
    # Recycling (recycling.py): when this worker's lifetime ends (0: never), and once a
    # limit is reached, why and from when it may be replaced.
    lifetime_end: float = 0.0
    recycle_cause: str = ""
    recycle_detail: str = ""
    recycle_at: float = 0.0
    stats_row: int = 0  # its row of the shared stats table (0: none)

    def move(self, new: SlotState) -> None:
        if (self.state, new) not in _ALLOWED:
            raise RuntimeError(f"slot {self.index}: bad transition {self.state} -> {new}")
        self.state = new


class SlotTable:
    """Slots by index, and the pid -> slot map the reaper needs."""

    def __init__(self) -> None:
        self.slots: dict[int, WorkerSlot] = {}  # current worker of each slot
        self.successors: dict[int, WorkerSlot] = {}  # booting replacements
        self.by_pid: dict[int, WorkerSlot] = {}  # every live worker process

    def add(self, index: int) -> WorkerSlot:
        slot = self.slots.setdefault(index, WorkerSlot(index))
        slot.retired = False
        return slot

    def started(self, slot: WorkerSlot, pid: int, status_fd: int, heartbeat: Heartbeat) -> None:
        slot.move(SlotState.BOOTING)
        slot.booted = False
        slot.pid = pid
        slot.started = time.monotonic()
        slot.status_fd = status_fd
        slot.heartbeat = heartbeat
        slot.status_buffer.clear()
        self.by_pid[pid] = slot

    def exited(self, pid: int) -> WorkerSlot | None:
        slot = self.by_pid.pop(pid, None)
        if slot is None:
            return None
        slot.move(SlotState.EMPTY)
        slot.pid = 0
        slot.kill_deadline = None
        if slot.heartbeat is not None:
            slot.heartbeat.close()
            slot.heartbeat = None
        return slot

    def remove(self, index: int) -> None:
        del self.slots[index]

    def live(self) -> list[WorkerSlot]:
        """Every worker process: current, successors and replaced ones still draining."""
        return list(self.by_pid.values())

    def serving(self) -> list[WorkerSlot]:
        """Current workers that run (not successors, not replaced ones)."""
        return [s for s in self.slots.values() if s.state is not SlotState.EMPTY]

    def add_successor(self, index: int) -> WorkerSlot:
        successor = WorkerSlot(index)
        self.successors[index] = successor
        return successor

    def is_successor(self, worker: WorkerSlot) -> bool:
        return self.successors.get(worker.index) is worker

    def promote(self, successor: WorkerSlot) -> WorkerSlot | None:
        """Make a READY successor the slot's current worker; return the old one if live."""
        del self.successors[successor.index]
        old = self.slots.get(successor.index)
        successor.retired = old.retired if old is not None else False
        self.slots[successor.index] = successor
        if old is not None and old.state is not SlotState.EMPTY:
            old.replaced = True
            return old
        return None

    def wanted(self) -> list[WorkerSlot]:
        return [s for s in self.slots.values() if not s.retired]

"""The worker-slot table: which worker serves which slot, and in what state.

A slot is a place for one worker: its index, its listening sockets (net.Listeners) and
the process currently serving it. Transitions (anything else is a bug):

    EMPTY ----fork----> BOOTING ----ready----> READY
      ^                    |                     |
      |                    +------exit-----+     +--stop--> DRAINING --exit--+
      +--------------------<---------------+-----------<---------------------+

Rule 1: a slot has at most one live pid; its heartbeat cell belongs to that pid.
Rule 2: the arbiter learns of exits only by reaping; a slot goes back to EMPTY then.
Knows pids and times, nothing of HTTP or signals.
"""

from __future__ import annotations

import enum
import mmap
import struct
import time
from dataclasses import dataclass, field


class SlotState(enum.Enum):
    EMPTY = "empty"
    BOOTING = "booting"
    READY = "ready"
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


class Heartbeat:
    """A shared-memory cell the worker's event loop stamps and the arbiter reads.

    Created in the arbiter before fork, so both processes map the same page. The stamp is
    CLOCK_MONOTONIC, which is the same clock in every process of the machine.
    """

    _FORMAT = struct.Struct("d")

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, self._FORMAT.size)
        self.stamp()

    def stamp(self) -> None:
        self._FORMAT.pack_into(self._map, 0, time.monotonic())

    def age(self) -> float:
        (last,) = self._FORMAT.unpack_from(self._map, 0)
        return float(time.monotonic() - last)

    def close(self) -> None:
        self._map.close()


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
    failures: int = 0  # consecutive early exits, for respawn backoff
    next_spawn: float = 0.0
    status_buffer: bytearray = field(default_factory=bytearray)

    def move(self, new: SlotState) -> None:
        if (self.state, new) not in _ALLOWED:
            raise RuntimeError(f"slot {self.index}: bad transition {self.state} -> {new}")
        self.state = new


class SlotTable:
    """Slots by index, and the pid -> slot map the reaper needs."""

    def __init__(self) -> None:
        self.slots: dict[int, WorkerSlot] = {}
        self.by_pid: dict[int, WorkerSlot] = {}

    def add(self, index: int) -> WorkerSlot:
        slot = self.slots.setdefault(index, WorkerSlot(index))
        slot.retired = False
        return slot

    def started(self, slot: WorkerSlot, pid: int, status_fd: int, heartbeat: Heartbeat) -> None:
        slot.move(SlotState.BOOTING)
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
        return [s for s in self.slots.values() if s.state is not SlotState.EMPTY]

    def wanted(self) -> list[WorkerSlot]:
        return [s for s in self.slots.values() if not s.retired]

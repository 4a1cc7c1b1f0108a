"""The worker-slot table (gunrunner/slots.py): its transitions and its bookkeeping.

No processes: pids are plain numbers, the status fd is never read, and the heartbeat is a
real (in-memory) cell. The transitions are spelled out here, not read from the module,
so that a change to the table has to change this test too.
"""

from __future__ import annotations

import itertools
import time

import pytest

from gunrunner.slots import SlotState, SlotTable, WorkerSlot
from gunrunner.status import Heartbeat

EMPTY, BOOTING, READY, DRAINING = (
    SlotState.EMPTY,
    SlotState.BOOTING,
    SlotState.READY,
    SlotState.DRAINING,
)
# The module docstring's table.
ALLOWED = [
    (EMPTY, BOOTING),  # fork
    (BOOTING, READY),  # the worker reported ready
    (BOOTING, DRAINING),  # a stop (or retirement) during boot
    (READY, DRAINING),  # a stop, a retirement, or a successor took over
    (BOOTING, EMPTY),  # reaped
    (READY, EMPTY),
    (DRAINING, EMPTY),
]
FORBIDDEN = [pair for pair in itertools.product(SlotState, repeat=2) if pair not in ALLOWED]


def ids(pair: tuple[SlotState, SlotState]) -> str:
    return f"{pair[0].value}-{pair[1].value}"


# -- transitions ---------------------------------------------------------------------------


@pytest.mark.parametrize("pair", ALLOWED, ids=ids)
def test_allowed_transition(pair: tuple[SlotState, SlotState]) -> None:
    """Every transition of the table is allowed."""
    old, new = pair
    slot = WorkerSlot(3, state=old)
    slot.move(new)
    assert slot.state is new


@pytest.mark.parametrize("pair", FORBIDDEN, ids=ids)
def test_forbidden_transition_raises_and_keeps_the_state(
    pair: tuple[SlotState, SlotState],
) -> None:
    """Anything else is a bug: RuntimeError naming the slot and the transition; the
    state is unchanged (staying put is a transition too: READY -> READY is a bug)."""
    old, new = pair
    slot = WorkerSlot(3, state=old)
    with pytest.raises(RuntimeError, match=r"slot 3: bad transition .*") as info:
        slot.move(new)
    assert str(old) in str(info.value) and str(new) in str(info.value)
    assert slot.state is old


def test_forbidden_list_is_what_the_table_leaves_out() -> None:
    """4 states: 16 pairs, 7 allowed, 9 forbidden (no state skips BOOTING or READY back)."""
    assert len(ALLOWED) == 7 and len(FORBIDDEN) == 9
    assert (EMPTY, READY) in FORBIDDEN and (DRAINING, READY) in FORBIDDEN
    assert (READY, BOOTING) in FORBIDDEN and (EMPTY, EMPTY) in FORBIDDEN


def test_a_new_slot_is_empty() -> None:
    slot = WorkerSlot(0)
    assert (slot.state, slot.pid, slot.heartbeat, slot.retired, slot.replaced) == (
        EMPTY,
        0,
        None,
        False,
        False,
    )


# -- the table -----------------------------------------------------------------------------


def started(table: SlotTable, slot: WorkerSlot, pid: int, *, ready: bool = False) -> Heartbeat:
    """Record a fork of `slot` as `pid` (READY too if `ready`); its heartbeat."""
    heartbeat = Heartbeat()
    table.started(slot, pid, status_fd=100 + pid, heartbeat=heartbeat)
    if ready:
        slot.move(READY)
        slot.booted = True
    return heartbeat


def test_add_creates_an_empty_slot_once() -> None:
    """add(k): an EMPTY slot k; again: the same slot, not a new one."""
    table = SlotTable()
    slot = table.add(0)
    assert (slot.index, slot.state) == (0, EMPTY)
    assert table.add(0) is slot
    assert table.slots == {0: slot}
    assert table.live() == [] and table.serving() == []


def test_add_unretires_a_retired_slot() -> None:
    """TTIN after TTOU: the retired slot is wanted again, with its state as it was."""
    table = SlotTable()
    slot = table.add(1)
    started(table, slot, 501, ready=True)
    slot.retired = True
    assert table.wanted() == []
    assert table.add(1) is slot
    assert slot.retired is False
    assert slot.state is READY
    assert table.wanted() == [slot]


def test_started_records_the_worker() -> None:
    """started(): BOOTING, pid, status fd, heartbeat, start time; the pid maps to the slot."""
    table = SlotTable()
    slot = table.add(0)
    slot.booted = True  # left from an earlier worker of the slot
    slot.status_buffer += b"R partial"
    before = time.monotonic()
    heartbeat = started(table, slot, 4123)
    assert slot.state is BOOTING
    assert (slot.pid, slot.status_fd, slot.heartbeat) == (4123, 4223, heartbeat)
    assert before <= slot.started <= time.monotonic()
    assert slot.booted is False
    assert slot.status_buffer == b""
    assert table.by_pid == {4123: slot}
    assert table.live() == [slot]
    assert table.serving() == [slot]


def test_started_on_a_running_slot_is_a_bug() -> None:
    """A second fork for a slot whose worker runs is refused (one current worker: Rule 1)."""
    table = SlotTable()
    slot = table.add(0)
    started(table, slot, 10, ready=True)
    with pytest.raises(RuntimeError, match="bad transition"):
        table.started(slot, 11, status_fd=7, heartbeat=Heartbeat())
    assert slot.pid == 10
    assert 11 not in table.by_pid


@pytest.mark.parametrize("state", [BOOTING, READY, DRAINING], ids=lambda s: s.value)
def test_exited_empties_the_slot_and_closes_its_heartbeat(state: SlotState) -> None:
    """Reaped in any live state: EMPTY, no pid, no kill deadline, heartbeat closed."""
    table = SlotTable()
    slot = table.add(2)
    heartbeat = started(table, slot, 77)
    if state is not BOOTING:
        slot.move(READY)
    if state is DRAINING:
        slot.move(DRAINING)
        slot.kill_deadline = time.monotonic() + 30
    assert table.exited(77) is slot
    assert (slot.state, slot.pid, slot.kill_deadline, slot.heartbeat) == (EMPTY, 0, None, None)
    with pytest.raises(ValueError):  # the shared-memory cell is gone
        heartbeat.age()
    assert table.by_pid == {}
    assert table.slots == {2: slot}  # the slot stays, ready for a respawn
    assert table.serving() == []


def test_exited_unknown_pid_is_none() -> None:
    """A pid that is no worker of ours (the watcher, a stray child): None, nothing changes."""
    table = SlotTable()
    slot = table.add(0)
    started(table, slot, 5)
    assert table.exited(999) is None
    assert table.by_pid == {5: slot} and slot.state is BOOTING
    assert table.exited(5) is slot
    assert table.exited(5) is None  # reaped once


def test_remove_drops_the_slot() -> None:
    table = SlotTable()
    table.add(0)
    table.add(1)
    table.remove(1)
    assert list(table.slots) == [0]


def test_wanted_leaves_out_retired_slots() -> None:
    table = SlotTable()
    slots = [table.add(k) for k in range(3)]
    slots[1].retired = True
    assert table.wanted() == [slots[0], slots[2]]


# -- successors (Rule 2) -------------------------------------------------------------------


def restart_table() -> tuple[SlotTable, WorkerSlot, WorkerSlot]:
    """Slot 0's current worker (pid 10) READY, and a READY successor (pid 20)."""
    table = SlotTable()
    current = table.add(0)
    started(table, current, 10, ready=True)
    successor = table.add_successor(0)
    started(table, successor, 20, ready=True)
    return table, current, successor


def test_successor_is_a_second_worker_of_the_same_slot() -> None:
    """add_successor(k): a new WorkerSlot for index k, beside the current one."""
    table, current, successor = restart_table()
    assert successor is not current and successor.index == current.index == 0
    assert table.is_successor(successor)
    assert not table.is_successor(current)
    assert table.slots == {0: current}
    assert table.successors == {0: successor}
    assert sorted(s.pid for s in table.live()) == [10, 20]
    assert table.serving() == [current]  # successors do not count until promoted


def test_promote_makes_the_successor_current_and_returns_the_old_worker() -> None:
    """promote(): the successor serves the slot; the live old worker is marked replaced."""
    table, current, successor = restart_table()
    old = table.promote(successor)
    assert old is current
    assert old.replaced is True
    assert successor.replaced is False
    assert table.slots == {0: successor}
    assert table.successors == {}
    assert not table.is_successor(successor)
    assert table.serving() == [successor]
    assert sorted(s.pid for s in table.live()) == [10, 20]  # the old one drains
    old.move(DRAINING)
    assert table.exited(10) is old
    assert table.live() == [successor]
    assert table.slots == {0: successor}  # the old worker's exit leaves the slot alone


def test_promote_carries_the_retirement_over() -> None:
    """TTOU during a restart: the successor inherits `retired`, so the slot still goes."""
    table, current, successor = restart_table()
    current.retired = True
    table.promote(successor)
    assert successor.retired is True
    assert table.wanted() == []


def test_promote_after_the_old_worker_exited_returns_none() -> None:
    """The current worker died during the restart: nothing to drain."""
    table, current, successor = restart_table()
    table.exited(10)
    assert table.promote(successor) is None
    assert current.replaced is False
    assert table.slots == {0: successor}


def test_promote_into_a_removed_slot() -> None:
    """No current worker at all: the successor takes the index, not retired."""
    table = SlotTable()
    successor = table.add_successor(4)
    started(table, successor, 40, ready=True)
    assert table.promote(successor) is None
    assert table.slots == {4: successor}
    assert successor.retired is False


def test_a_failed_successor_leaves_the_current_worker_serving() -> None:
    """A successor that dies before ready is dropped; the slot's worker is untouched."""
    table = SlotTable()
    current = table.add(0)
    started(table, current, 10, ready=True)
    successor = table.add_successor(0)
    started(table, successor, 20)
    assert table.exited(20) is successor
    del table.successors[0]  # what the arbiter does with a successor that failed
    assert table.slots == {0: current}
    assert current.state is READY and not current.replaced
    assert table.live() == [current]

"""Deadline: a connection's one timer, moved per request without a loop timer each time."""

from __future__ import annotations

from collections.abc import Callable

from gunrunner.protocols.deadline import Deadline
from tests.helpers.fakes import FakeClock, in_loop


class Recorder:
    """A fake clock, a Deadline on it, and what fired when."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.deadline = Deadline(self.clock)
        self.fired: list[tuple[str, float]] = []

    def callback(self, name: str) -> Callable[[], None]:
        return lambda: self.fired.append((name, self.clock.now))


@in_loop
async def test_fires_once_at_its_deadline() -> None:
    seen = Recorder()
    clock, deadline = seen.clock, seen.deadline
    deadline.set(5.0, seen.callback("a"))
    await clock.advance(4.9)
    assert seen.fired == []
    await clock.advance(0.2)
    assert seen.fired == [("a", 5.0)]
    assert not deadline.pending
    await clock.advance(60)
    assert seen.fired == [("a", 5.0)]


@in_loop
async def test_moved_later_fires_at_the_new_time_with_one_loop_timer() -> None:
    """The keep-alive pattern: moved forward over and over, it never cancels or adds a
    loop timer; the one it has re-arms itself when it fires early."""
    seen = Recorder()
    clock, deadline = seen.clock, seen.deadline
    deadline.set(5.0, seen.callback("idle"))
    for _ in range(100):  # requests, 0.03 s apart
        await clock.advance(0.03)
        deadline.set(10.0, seen.callback("head"))
        deadline.clear()
        deadline.set(5.0, seen.callback("idle"))
    assert len(clock.pending) == 1
    last_set = clock.now
    await clock.advance(4.99)
    assert seen.fired == []
    await clock.advance(0.02)
    assert seen.fired == [("idle", last_set + 5.0)]


@in_loop
async def test_moved_earlier_fires_at_the_earlier_time() -> None:
    seen = Recorder()
    clock, deadline = seen.clock, seen.deadline
    deadline.set(10.0, seen.callback("head"))
    deadline.set(2.0, seen.callback("short"))
    await clock.advance(2.0)
    assert seen.fired == [("short", 2.0)]
    await clock.advance(20)
    assert seen.fired == [("short", 2.0)]


@in_loop
async def test_cleared_never_fires_and_close_leaves_no_timer() -> None:
    seen = Recorder()
    clock, deadline = seen.clock, seen.deadline
    deadline.set(1.0, seen.callback("a"))
    deadline.clear()
    await clock.advance(5)
    assert seen.fired == []
    deadline.set(1.0, seen.callback("b"))
    deadline.close()
    assert clock.pending == []
    await clock.advance(5)
    assert seen.fired == []

"""A connection's one timer, cheap to move: setting or clearing it writes two fields.

A keep-alive connection moves its deadline twice per request (the head timer when bytes
arrive, the keep-alive timer after the response) and clears it once. Done with a loop
timer each time, that was two call_later() and two cancel() per request, about 2 us on
uvloop, a tenth of a hello-world request. Here a loop timer is armed only when none is
pending or the new deadline is earlier than the pending one; a timer that fires before
the deadline (it was moved later meanwhile) re-arms itself for the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

# A timer that fires this close to its deadline counts as on time (uvloop's timers have
# millisecond resolution: re-arming for less would spin).
SLACK = 0.001


class Clock(Protocol):
    """What a Deadline needs of the event loop (a unit test gives a fake clock)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Any: ...


class Deadline:
    """Call `callback` once `delay` seconds have passed, unless moved or cleared first."""

    __slots__ = ("_callback", "_handle", "_handle_at", "_loop", "_when")

    def __init__(self, loop: Clock) -> None:
        self._loop = loop
        self._when: float | None = None  # the deadline, in loop time
        self._callback: Callable[[], object] | None = None
        self._handle: asyncio.TimerHandle | None = None  # the loop timer pending, if any
        self._handle_at = 0.0  # when it fires

    def set(self, delay: float, callback: Callable[[], object]) -> None:
        """The deadline is now `delay` seconds from now (replacing any other)."""
        when = self._loop.time() + delay
        self._when = when
        self._callback = callback
        handle = self._handle
        if handle is None or self._handle_at > when:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(when, self._fire)
            self._handle_at = when

    def clear(self) -> None:
        """No deadline (a pending loop timer fires later and finds none)."""
        self._when = None
        self._callback = None

    def close(self) -> None:
        """No deadline, and no loop timer left pending (the connection is gone)."""
        self.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def pending(self) -> bool:
        return self._when is not None

    def _fire(self) -> None:
        self._handle = None
        when = self._when
        if when is None:
            return
        if self._loop.time() < when - SLACK:  # moved later since this timer was armed
            self._handle = self._loop.call_at(when, self._fire)
            self._handle_at = when
            return
        callback = self._callback
        self.clear()
        if callback is not None:
            callback()

"""Futures that wait for one event and are all woken by it (a transport that takes data
again, a response that completed, a connection that is gone)."""

from __future__ import annotations

import asyncio


def wake_all(waiters: list[asyncio.Future[None]], exc: BaseException | None = None) -> None:
    """Resolve every waiter not yet done (with `exc`, if given), and empty the list."""
    for waiter in waiters:
        if not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)
    waiters.clear()

"""Stuck requests show where they are: a request with no response after
`request_warn_after` seconds has its current stack logged once, and goes on.

Rules:
1. Nothing per request: the worker's tick (about once a second) sweeps what runs now
   (the ASGI bridge's tasks, the WSGI pool threads' frames) and notes when it first saw
   each request. A request is reported between warn_after and warn_after + one tick.
2. Only requests whose response has not started: a long stream (server-sent events, a
   big download) is working, not stuck. WebSocket sessions are never reported.
3. The stack is the request's own: an ASGI task's coroutine chain, or the frames of the
   WSGI thread running it (sys._current_frames()).
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from gunrunner.apps.asgi import ASGIBridge
from gunrunner.apps.wsgi import ThreadPool, WSGIBridge

log = logging.getLogger("gunrunner.worker")

_WORK_CODE = ThreadPool._work.__code__


class StuckRequests:
    def __init__(self, warn_after: float) -> None:
        self.warn_after = warn_after
        self._first_seen: dict[Any, float] = {}  # exchange -> when a sweep first saw it
        self._warned: set[Any] = set()

    def sweep(self, bridge: object, now: float) -> None:
        running = dict(_running(bridge))
        first_seen = self._first_seen
        for exchange in list(first_seen):
            if exchange not in running:  # finished since the last sweep
                del first_seen[exchange]
                self._warned.discard(exchange)
        for exchange, (started, stack) in running.items():
            seen = first_seen.setdefault(exchange, now)
            if now - seen < self.warn_after or exchange in self._warned or started:
                continue
            self._warned.add(exchange)
            _report(exchange, now - seen, stack())


def _running(bridge: object) -> Iterator[tuple[Any, tuple[bool, Callable[[], str]]]]:
    """(exchange, (response started, a function that formats its stack)) for each HTTP
    request in the app."""
    if isinstance(bridge, ASGIBridge):
        for task in list(bridge.tasks):
            coroutine: Any = task.get_coro()
            frame = getattr(coroutine, "cr_frame", None)
            if frame is None:
                continue
            cycle = frame.f_locals.get("self")
            exchange = getattr(cycle, "exchange", None)
            if exchange is not None:  # (a WebSocket cycle has a session instead)
                # http.response.start is held until the first body: its status counts.
                started = exchange.response_started or getattr(cycle, "status", None) is not None
                yield exchange, (started, functools.partial(_coroutine_stack, coroutine))
    elif isinstance(bridge, WSGIBridge):
        frames = sys._current_frames()
        for thread in bridge.pool.threads:
            top = frames.get(thread.ident or -1)
            frame = top
            while frame is not None and frame.f_code is not _WORK_CODE:
                frame = frame.f_back
            if frame is None or frame is top:  # idle: waiting for its next job
                continue
            job = frame.f_locals.get("job")
            if job and job[1]:
                exchange = job[1][0]
                yield exchange, (exchange.response_started, functools.partial(_frame_stack, top))


def _frame_stack(frame: Any) -> str:
    return "".join(traceback.format_stack(frame))


def _coroutine_stack(coroutine: Any) -> str:
    """The chain of awaits a suspended coroutine is in, outermost first (a task's own
    get_stack() shows only its outermost frame)."""
    frames = []
    while coroutine is not None:
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is None:
            frame = getattr(coroutine, "ag_frame", None)
        if frame is None:
            break
        frames.append((frame, frame.f_lineno))
        coroutine = (
            getattr(coroutine, "cr_await", None)
            or getattr(coroutine, "gi_yieldfrom", None)
            or getattr(coroutine, "ag_await", None)
        )
    return "".join(traceback.StackSummary.extract(iter(frames)).format())


def _report(exchange: Any, running_for: float, stack: str) -> None:
    query = exchange.query_string.decode("latin-1")
    target = f"{exchange.path}?{query}" if query else exchange.path
    log.warning(
        "request still without a response after %.0fs: %s %s (request id %s, client %s); "
        "it goes on. Where it is now:\n%s",
        running_for,
        exchange.method,
        target,
        getattr(exchange, "request_id", None) or "-",
        _client(exchange.client),
        stack.rstrip(),
    )


def _client(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"

"""Fakes for unit tests: no sockets, no processes, no sleeps.

- `FakeTransport`: an asyncio transport that collects writes and flow-control calls.
- `FakeBridge`: an app bridge that records the exchanges and sessions a driver hands it.
- `FakeExchange`, `FakeSession`: the driver side of apps/types.py, scripted by the test,
  recording every call a bridge makes.
- `FakeClock`: timers the test fires by advancing time (uvicorn's `MockLoop.run_later`),
  so a 5 s timeout is tested in no time at all.

Rules:
1. A fake records what was done to it, in order (`calls`, `writes`); the test asserts on
   that record, never on timing.
2. Whatever a real peer does later (asyncio's connection_lost after close()), a fake does
   later too: with `call_soon`, so the test lets the loop run (`await asyncio.sleep(0)`).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import socket
import weakref
from collections.abc import Callable, Coroutine
from contextvars import Context
from typing import Any

from gunrunner.apps.types import ClientDisconnected, Headers, WebSocketClosed


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop, bounded by 10 s."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 10))

    return run


# -- transport and bridge ------------------------------------------------------------------


class FakeSocket:
    family = socket.AF_INET

    def setsockopt(self, *args: Any) -> None:
        pass


class FakeTransport:
    """Collects writes, records flow control; close() is asyncio's: lost once flushed.

    `stuck`: the peer reads nothing, so buffered data never flushes and close() never
    ends in connection_lost (abort() still does). A write after close() is a bug of the
    driver and fails the test.
    """

    def __init__(self, protocol: Any = None, *, extra: dict[str, Any] | None = None) -> None:
        self.protocol = protocol  # connection_lost() goes to it; may be set after creation
        self.writes: list[bytes] = []  # one entry per write() or writelines() call
        self.vectored: list[tuple[bytes, ...]] = []  # the parts of each writelines()
        self.closed = False
        self.aborted = False
        self.lost = False
        self.stuck = False
        self.reading = True
        self.pauses = 0
        self.resumes = 0
        self.extra = (
            {
                "socket": FakeSocket(),
                "peername": ("127.0.0.1", 50000),
                "sockname": ("127.0.0.1", 8000),
            }
            if extra is None
            else extra
        )

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        parts = tuple(parts)
        assert not self.closed, "write after close"
        self.vectored.append(parts)
        self.writes.append(b"".join(parts))

    def take(self) -> bytes:
        """Everything written since the last take()."""
        data = b"".join(self.writes)
        self.writes.clear()
        return data

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True
        self.resumes += 1

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            assert self.protocol is not None, "FakeTransport.protocol was never set"
            self.protocol.connection_lost(None)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.stuck:
                asyncio.get_running_loop().call_soon(self._lose)

    def abort(self) -> None:
        self.closed = self.aborted = True
        asyncio.get_running_loop().call_soon(self._lose)

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


class FakeBridge:
    """Records the exchanges (HTTP) and sessions (WebSocket) a driver hands it; the test
    answers them."""

    def __init__(self) -> None:
        self.exchanges: list[Any] = []
        self.sessions: list[Any] = []

    def handle(self, exchange: Any) -> None:
        self.exchanges.append(exchange)

    def handle_websocket(self, session: Any) -> None:
        self.sessions.append(session)


# -- the driver side of the bridges (apps/types.py) ----------------------------------------


class FakeExchange:
    """An Exchange (apps/types.py) that records what a bridge does with it.

    `pieces` is the request body as receive() hands it out; an exception among them is
    raised there (ClientDisconnected: the client left mid-body). `disconnect()` is the
    client going away later. `calls` holds ("respond", status, headers, body),
    ("start", status, headers), ("write", data), ("sendfile", data), ("end",) or
    ("end", trailers), ("abort",); `done` is set when the response is over.
    """

    def __init__(
        self,
        method: str = "GET",
        raw_path: bytes = b"/",
        query_string: bytes = b"",
        headers: Headers | None = None,
        pieces: list[bytes | BaseException] | None = None,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.path = raw_path.decode("latin-1")
        self.query_string = query_string
        self.http_version = "1.1"
        self.headers = headers or []
        self.scheme = "http"
        self.client: tuple[str, int] | None = ("10.1.2.3", 41000)
        self.server: tuple[str, int] | None = ("127.0.0.1", 8000)
        self.request_id: str | None = None  # the Exchange seam: set when the access log is on
        self.tls: dict[str, Any] | None = None
        self.disconnected = False
        self.response_started = False
        self.pieces = list(pieces or [])
        self.calls: list[tuple[Any, ...]] = []
        self.done = asyncio.Event()

    def disconnect(self) -> None:
        """The client goes away: body reads and writes fail from now on."""
        self.disconnected = True
        self.done.set()

    def body_known_empty(self) -> bool:
        return not self.pieces

    async def receive(self) -> tuple[bytes, bool]:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        if not self.pieces:
            return b"", False
        data = self.pieces.pop(0)
        if isinstance(data, BaseException):
            self.disconnected = isinstance(data, ClientDisconnected)
            raise data
        return data, bool(self.pieces)

    async def wait_done(self) -> None:
        await self.done.wait()

    def respond(self, status: int, headers: Headers, body: bytes) -> None:
        self.response_started = True
        self.calls.append(("respond", status, headers, body))
        self.done.set()

    def start(self, status: int, headers: Headers) -> None:
        self.response_started = True
        self.calls.append(("start", status, headers))

    async def write(self, data: bytes) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        self.calls.append(("write", data))

    async def sendfile(self, file: Any, offset: int, count: int) -> None:
        if self.disconnected:
            raise ClientDisconnected("client disconnected")
        file.seek(offset)
        self.calls.append(("sendfile", file.read(count)))

    def end(self, trailers: Headers | None = None) -> None:
        self.calls.append(("end",) if trailers is None else ("end", trailers))
        self.done.set()

    def abort(self) -> None:
        self.calls.append(("abort",))
        self.disconnected = True
        self.done.set()


class FakeSession:
    """A WebSocketSession (apps/types.py) whose client the test plays.

    `client_sends()` queues a message for receive(), `client_closes()` ends them with
    WebSocketClosed. `calls` holds ("accept", subprotocol, headers),
    ("reject", status, headers, body, more), ("send", data), ("close", code, reason).
    """

    def __init__(
        self,
        path: str = "/ws",
        query_string: bytes = b"",
        headers: Headers | None = None,
        subprotocols: list[str] | None = None,
    ) -> None:
        self.path = path
        self.raw_path = path.encode("latin-1")
        self.query_string = query_string
        self.http_version = "1.1"
        self.headers = headers or []
        self.scheme = "ws"
        self.client: tuple[str, int] | None = ("10.1.2.3", 41000)
        self.server: tuple[str, int] | None = ("127.0.0.1", 8000)
        self.tls: dict[str, Any] | None = None
        self.subprotocols = subprotocols or []
        self.calls: list[tuple[Any, ...]] = []
        self._incoming: asyncio.Queue[str | bytes | WebSocketClosed] = asyncio.Queue()

    def client_sends(self, data: str | bytes) -> None:
        self._incoming.put_nowait(data)

    def client_closes(self, code: int = 1000, reason: str = "") -> None:
        self._incoming.put_nowait(WebSocketClosed(code, reason))

    def accept(self, subprotocol: str | None, headers: Headers) -> None:
        self.calls.append(("accept", subprotocol, headers))

    def reject(self, status: int, headers: Headers, body: bytes, more: bool) -> None:
        self.calls.append(("reject", status, headers, body, more))

    async def receive(self) -> str | bytes:
        item = await self._incoming.get()
        if isinstance(item, WebSocketClosed):
            self._incoming.put_nowait(item)  # closed stays closed
            raise item
        return item

    async def send(self, data: str | bytes) -> None:
        self.calls.append(("send", data))

    def close(self, code: int, reason: str) -> None:
        self.calls.append(("close", code, reason))


# -- time ----------------------------------------------------------------------------------


class FakeTimer:
    """What FakeClock.call_later returns: asyncio.TimerHandle's cancel() and when()."""

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]):
        self._when = when
        self._callback = callback
        self._args = args
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def when(self) -> float:
        return self._when

    def run(self) -> None:
        self._callback(*self._args)


class FakeClock:
    """Time that passes only when the test says so.

    `install()` routes the running loop's call_later() to this clock, so the timers a
    protocol sets (close, ping) fire in `advance()`, at once and in order; a connection
    whose ConnectionSettings.clock is this clock has its head and keep-alive deadlines
    here too. The loop's time() and call_at() stay real, so asyncio's own timeouts (and the
    10 s bound of `in_loop`) keep working; asyncio.sleep(d) with d > 0 does become a
    timer of this clock.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, FakeTimer]] = []
        self._order = itertools.count()

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> FakeClock:
        """Route `loop`'s call_later() (the running loop's by default) to this clock."""
        loop = loop or asyncio.get_running_loop()
        loop.call_later = self.call_later  # type: ignore[assignment,method-assign]
        _INSTALLED[loop] = self
        return self

    @classmethod
    def running(cls) -> FakeClock:
        """The clock of the running loop, installed now if it has none: every part of one
        test (and every connection it makes) shares one time."""
        loop = asyncio.get_running_loop()
        clock = _INSTALLED.get(loop)
        return clock if clock is not None else cls().install(loop)

    @classmethod
    def installed(cls) -> FakeClock | None:
        """The clock installed on the running loop, if any (ConnectionSettings.clock: a
        connection's head and keep-alive deadlines read this clock's time)."""
        return _INSTALLED.get(asyncio.get_running_loop())

    def time(self) -> float:
        return self.now

    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> FakeTimer:
        return self.call_at(self.now + max(delay, 0.0), callback, *args)

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> FakeTimer:
        timer = FakeTimer(when, callback, args)
        heapq.heappush(self._heap, (when, next(self._order), timer))
        return timer

    @property
    def pending(self) -> list[float]:
        """Seconds until each live timer fires, soonest first."""
        return sorted(t.when() - self.now for _, _, t in self._heap if not t.cancelled())

    async def advance(self, seconds: float = 0.0) -> None:
        """Move time forward, firing the timers that fall due in order; after each, the
        loop runs once, so what a timer scheduled with call_soon happens before the next."""
        target = self.now + seconds
        while self._heap and self._heap[0][0] <= target:
            when, _, timer = heapq.heappop(self._heap)
            if timer.cancelled():
                continue
            self.now = max(self.now, when)
            timer.run()
            await asyncio.sleep(0)
        self.now = target
        await asyncio.sleep(0)


_INSTALLED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FakeClock] = (
    weakref.WeakKeyDictionary()
)

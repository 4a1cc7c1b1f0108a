"""Microseconds per request in each layer of one worker, for hello world keep-alive:
parser, driver and core, bridge and app, event loop; the rest (socket I/O and the
kernel) is what the wrk figure has beyond their sum.

    python benchmarks/layer_budget.py                 # both drivers, ASGI, uvloop for httptools
    python benchmarks/layer_budget.py --wrk 5         # and the req/s of the real server

Each layer is measured in-process, on the request wrk sends, by adding one layer at a
time and taking the difference (best of --repeat runs of --requests requests):

1. parser: the library alone. llhttp parsing the request into callbacks that do nothing;
   for h11, reading the request and writing the response with h11 (the h11 driver frames
   responses through h11; the httptools driver's framing is ours, so it counts as driver).
2. driver + core: a connection (protocols/) fed the request on a transport that only
   counts writes, with a bridge that answers at once (`exchange.respond`), no app.
3. bridge + app: the real ASGI bridge and the benchmark app, its coroutine run to the end
   by hand, so no Task and no loop turn is counted.
4. loop: the same with the bridge as shipped, on the event loop: what it costs beyond 3
   to get each request's cycle run (Task, scheduling, loop turns), net of the loop turn
   this script itself takes per request.

With --wrk S, the real server (one process, pinned to CPU 0, wrk on CPU 1) is measured
too, and 1e6 / req/s minus the four layers is reported as "I/O and kernel".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from benchlib import LOOPBACK, REPO, SERVER_CPU, ServerProcess, free_port, pinned

sys.path.insert(0, str(REPO / "benchmarks" / "apps"))
sys.path.insert(0, str(REPO))

from bench_asgi import app as bench_app

from gunrunner.apps import asgi
from gunrunner.config import Options
from gunrunner.protocols.limits import Limits
from gunrunner.protocols.settings import ConnectionSettings
from gunrunner.worker import http_driver, new_event_loop

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"  # what wrk sends
HELLO = b"Hello, world!\n"
HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"14")]


class CountingTransport(asyncio.Transport):
    """Takes writes and counts them; never closes by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.protocol: Any = None
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol


class AnswerAtOnce:
    """A bridge with no app: every request gets its response at once."""

    def handle(self, exchange: Any) -> None:
        exchange.respond(200, list(HEADERS), HELLO)


class RunByHand(asgi.ASGIBridge):
    """The ASGI bridge, each cycle run to its end by hand: no Task, no loop turn."""

    def _start(self, cycle: Any) -> None:
        coroutine = cycle._serve()  # the cycle's body, without the task bookkeeping
        try:
            coroutine.send(None)
        except StopIteration:
            return
        raise RuntimeError("the cycle waited: it cannot be run by hand")


def best(run: Callable[[int], float], requests: int, repeat: int) -> float:
    """Seconds per request, best of `repeat` runs."""
    return min(run(requests) for _ in range(repeat)) / requests


def parser_time(http: str, requests: int) -> float:
    if http == "httptools":
        import httptools

        class Null:
            def on_url(self, url: bytes) -> None:
                pass

            def on_header(self, name: bytes, value: bytes) -> None:
                pass

            def on_headers_complete(self) -> None:
                pass

            def on_message_complete(self) -> None:
                pass

        parser = httptools.HttpRequestParser(Null())
        start = time.perf_counter()
        for _ in range(requests):
            parser.feed_data(REQUEST)
        return time.perf_counter() - start
    import h11

    conn = h11.Connection(h11.SERVER)
    headers = [*HEADERS, (b"date", b"Sat, 05 Dec 2026 05:00:00 GMT"), (b"server", b"gunrunner")]
    start = time.perf_counter()
    for _ in range(requests):
        conn.receive_data(REQUEST)
        conn.next_event()
        conn.next_event()
        conn.send(h11.Response(status_code=200, headers=headers))
        conn.send(h11.Data(data=HELLO))
        conn.send(h11.EndOfMessage())
        conn.start_next_cycle()
    return time.perf_counter() - start


def connection_time(http: str, bridge: Any, requests: int, *, by_loop: bool) -> float:
    """Feed `requests` requests to one connection; with by_loop, await each response."""

    async def run() -> float:
        options = Options(app="bench_asgi:app")
        settings = ConnectionSettings(
            bridge, limits=Limits.from_options(options), server_header=True
        )
        proto = http_driver(http)(settings)
        transport = CountingTransport()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        feed = proto.data_received
        start = time.perf_counter()
        if by_loop:
            for _ in range(requests):
                written = transport.writes
                feed(REQUEST)
                while transport.writes == written:
                    await asyncio.sleep(0)
        else:
            for _ in range(requests):
                feed(REQUEST)
        elapsed = time.perf_counter() - start
        if transport.writes != requests:
            raise RuntimeError(f"{transport.writes} responses to {requests} requests")
        proto.connection_lost(None)
        return elapsed

    return _LOOP.run(run())


def loop_turn_time(requests: int) -> float:
    async def run() -> float:
        start = time.perf_counter()
        for _ in range(requests):
            await asyncio.sleep(0)
        return time.perf_counter() - start

    return _LOOP.run(run())


class _Loop:
    """The event loop the measurements run on (uvloop for httptools, as served)."""

    loop: asyncio.AbstractEventLoop | None = None

    def use(self, name: str) -> None:
        if self.loop is not None:
            self.loop.close()
        self.loop = new_event_loop(name)
        asyncio.set_event_loop(self.loop)

    def run(self, coro: Coroutine[Any, Any, float]) -> float:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)


_LOOP = _Loop()


def budget(http: str, loop: str, requests: int, repeat: int) -> dict[str, float]:
    _LOOP.use(loop)

    async def bridges() -> tuple[asgi.ASGIBridge, asgi.ASGIBridge]:
        return RunByHand(bench_app), asgi.ASGIBridge(bench_app)

    assert _LOOP.loop is not None
    by_hand, shipped = _LOOP.loop.run_until_complete(bridges())
    parser = best(lambda n: parser_time(http, n), requests, repeat)
    core = best(lambda n: connection_time(http, AnswerAtOnce(), n, by_loop=False), requests, repeat)
    bridge = best(lambda n: connection_time(http, by_hand, n, by_loop=False), requests, repeat)
    served = best(lambda n: connection_time(http, shipped, n, by_loop=True), requests, repeat)
    turn = best(loop_turn_time, requests, repeat)
    return {
        "parser": parser * 1e6,
        "driver + core": (core - parser) * 1e6,
        "bridge + app": (bridge - core) * 1e6,
        "loop": max(0.0, served - bridge - turn) * 1e6,
    }


def wrk_rps(http: str, loop: str, duration: int) -> float:
    from loads import run_wrk

    port = free_port()
    argv = [sys.executable, "-m", "gunrunner", "bench_asgi:app", "--bind", f"{LOOPBACK}:{port}",
            "--workers", "1", "--http", http, "--loop", loop, "--log-level", "warning"]  # fmt: skip
    env = {"PYTHONPATH": str(REPO / "benchmarks" / "apps")}
    server = ServerProcess(f"gunrunner {http}", pinned(SERVER_CPU, argv, True), port, env=env)
    server.start()
    try:
        server.wait_ready()
        return run_wrk(port, duration, 50, True).rps
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--wrk", type=int, default=0, metavar="SECONDS")
    args = parser.parse_args()
    for http, loop in (("h11", "asyncio"), ("httptools", "uvloop")):
        layers = budget(http, loop, args.requests, args.repeat)
        line = ", ".join(f"{name} {us:.1f}" for name, us in layers.items())
        total = sum(layers.values())
        print(f"{http}/{loop}: {line}; sum {total:.1f} us per request")
        if args.wrk:
            rps = wrk_rps(http, loop, args.wrk)
            rest = 1e6 / rps - total
            print(f"  wrk: {rps:.0f} req/s = {1e6 / rps:.1f} us; I/O and kernel {rest:.1f} us")


if __name__ == "__main__":
    main()

"""The WebSocket load generator's own ceiling: ws_load.py against a server doing no work.

    python benchmarks/ws_ceiling.py [--duration 5] [--connections 50]

Starts this file with `--serve PORT` (a trivial server, pinned to the server core) and
runs ws_load.py against it (pinned to the load core), as side_by_side.py does for a real
server. The server answers any upgrade with a canned 101 and every 38 bytes received
(one masked 32-byte client frame) with a canned 34-byte echo frame: no parsing, no
unmasking. So the rate measured is what the client can drive, give or take the trivial
server's own cost: a real server measured below it is the server's limit, not ours.

Rules:
1. The trivial server is only good for ws_load.py's fixed frame size; it is not a
   WebSocket server.
2. The server process is started and stopped by PID through benchlib.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, cast

from benchlib import (
    LOOPBACK,
    SERVER_CPU,
    ServerProcess,
    can_pin,
    free_port,
    pinned,
    raise_on_sigterm,
    stop_all,
)
from loads import run_ws
from ws_load import ACCEPT, server_frame

HANDSHAKE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\n\r\n"
)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class CannedEcho(asyncio.Protocol):
    def __init__(self, size: int) -> None:
        self.frame_in = 6 + size  # 2-byte header, 4-byte mask, payload
        self.echo = server_frame(b"x" * size)
        self.upgraded = False
        self.head = b""
        self.pending = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.upgraded:
            count, self.pending = divmod(self.pending + len(data), self.frame_in)
            if count:
                self.transport.write(self.echo * count)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        if b"websocket" not in self.head.lower():
            self.transport.write(OK)  # the readiness probe's GET /
            self.transport.close()
            return
        self.upgraded = True
        self.transport.write(HANDSHAKE)
        rest, self.head = self.head[end + 4 :], b""
        if rest:
            self.data_received(rest)  # frames sent right behind the request


async def serve(port: int, size: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: CannedEcho(size), LOOPBACK, port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=32, help="payload bytes per message")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=50)
    args = p.parse_args(argv)
    if args.serve is not None:
        runner: Any = asyncio.run
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
        runner(serve(args.serve, args.size))
        return 0
    raise_on_sigterm()
    pin = can_pin()
    port = free_port()
    argv_ = [sys.executable, __file__, "--serve", str(port), "--size", str(args.size)]
    try:
        with ServerProcess("canned-echo", pinned(SERVER_CPU, argv_, pin), port) as server:
            server.wait_ready()
            res = run_ws(
                port,
                args.duration,
                args.connections,
                pin,
                warmup=args.warmup,
                size=args.size,
            )
    finally:
        stop_all()
    print(
        f"ws_load.py ceiling: {res.rps:.0f} msgs/s ({args.size}-byte messages,"
        f" {args.connections} connections, {'pinned' if pin else 'unpinned'}),"
        f" p50 {res.p50_ms * 1000:.0f} us, p99 {res.p99_ms * 1000:.0f} us, errors {res.errors}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)

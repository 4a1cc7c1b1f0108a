"""WebSocket echo load generator: N connections, one small binary message in flight each.

Run by side_by_side.py pinned to the load core; prints one JSON object (msgs/s, p50/p99
latency, errors) on stdout:

    python benchmarks/ws_load.py --port 8000 [--connections 50] [--size 32] [--duration 5]

Rules:
1. Built for speed on one core: uvloop when installed, plain asyncio.Protocol callbacks
   (no streams, no tasks per message), one pre-built masked client frame re-sent for
   every echo (RFC 6455 lets a client reuse a masking key; servers unmask any key).
2. An echo is counted without parsing when it is exactly one expected frame (2-byte
   header + payload, FIN, binary): the common case. Anything else (a split or merged
   read, a ping, a close) goes through a small frame scanner, so counts stay exact and
   a server ping is answered with a pong.
3. The first echo on each connection is checked byte for byte against what was sent: a
   server that answers the wrong thing fails the run instead of looking fast.
4. Every wait is bounded: connect and handshake by --connect-timeout, the run by
   --warmup + --duration; errors (refused, bad handshake, closed early) are counted, not
   retried.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from array import array
from typing import Any, cast

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's sample key
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # ... and its Sec-WebSocket-Accept
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def masked_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One final client frame (payload < 64 KiB) masked with `mask`."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def server_frame(payload: bytes) -> bytes:
    """The unmasked final binary frame a server echoes for `payload` (< 126 bytes)."""
    return bytes([0x80 | OP_BINARY, len(payload)]) + payload


class Run:
    """Shared counters of one load run (one process, one loop)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.frame = masked_frame(OP_BINARY, payload, os.urandom(4))
        self.echo = server_frame(payload)
        self.measuring = False
        self.stopping = False
        self.messages = 0
        self.latencies = array("d")
        self.errors: dict[str, int] = {}
        self.handshakes = 0
        self.all_ready: asyncio.Future[None] | None = None
        self.connections = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class EchoClient(asyncio.Protocol):
    """One connection: handshake, check the first echo, then echo as fast as it comes."""

    def __init__(self, run: Run, host: str, port: int) -> None:
        self.run = run
        self.request = (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.state = "handshake"  # -> "first" -> "echo" -> "closed"
        self.sent_at = 0.0
        self.echo_len = len(run.echo)
        self.first_byte = run.echo[0]
        self.second_byte = run.echo[1]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(self.request)

    def send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.run.frame)

    def data_received(self, data: bytes) -> None:
        # Rule 2: the common case, one whole expected frame, costs a few comparisons.
        if (
            self.state == "echo"
            and not self.buf
            and len(data) == self.echo_len
            and data[0] == self.first_byte
            and data[1] == self.second_byte
        ):
            self.echoed(1)
            return
        self.buf += data
        if self.state == "handshake":
            self.handshake()
        if self.state == "first":
            self.first_echo()
        if self.state == "echo" and self.buf:
            self.scan()

    def handshake(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > 65536:
                self.fail("handshake too long")
            return
        head, self.buf = self.buf[:end], self.buf[end + 4 :]
        status = head.split(b"\r\n", 1)[0]
        if b" 101" not in status or ACCEPT not in head:
            self.fail(f"handshake: {status.decode(errors='replace')[:60]}")
            return
        self.state = "first"
        self.run.handshakes += 1
        ready = self.run.all_ready
        if self.run.handshakes == self.run.connections and ready and not ready.done():
            ready.set_result(None)
        self.send()

    def first_echo(self) -> None:
        # Rule 3: the first echo must be exactly the payload in one binary frame.
        if len(self.buf) < self.echo_len:
            return
        if self.buf[: self.echo_len] != self.run.echo:
            self.fail(f"wrong first echo: {self.buf[: self.echo_len]!r}")
            return
        self.buf = self.buf[self.echo_len :]
        self.state = "echo"
        self.echoed(1)

    def scan(self) -> None:
        """Rule 2's slow path: walk whole frames in the buffer."""
        buf, pos, done = self.buf, 0, 0
        while len(buf) - pos >= 2:
            opcode, length, hdr = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if len(buf) - pos < hdr + length:
                break
            payload = buf[pos + hdr : pos + hdr + length]
            pos += hdr + length
            if opcode in (OP_BINARY, OP_TEXT):
                done += 1
            elif opcode == OP_PING and self.transport is not None:
                self.transport.write(masked_frame(OP_PONG, payload, os.urandom(4)))
            elif opcode == OP_CLOSE:
                self.fail("server closed the WebSocket")
                return
        self.buf = buf[pos:]
        if done:
            self.echoed(done)

    def echoed(self, count: int) -> None:
        run = self.run
        if run.measuring:
            run.messages += count
            run.latencies.append(time.perf_counter() - self.sent_at)
        if not run.stopping:
            self.send()

    def fail(self, kind: str) -> None:
        if self.state != "closed" and not self.run.stopping:
            self.run.error(kind)
        self.state = "closed"
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != "closed" and not self.run.stopping:
            self.run.error("connection lost")
        self.state = "closed"


def percentile(values: array[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def load(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    run = Run(b"x" * args.size)
    run.connections = args.connections
    run.all_ready = loop.create_future()
    clients: list[EchoClient] = []

    async def connect() -> None:
        try:
            _, proto = await loop.create_connection(
                lambda: EchoClient(run, args.host, args.port), args.host, args.port
            )
            clients.append(proto)
        except OSError as exc:
            run.error(f"connect: {exc.strerror or exc}")

    try:
        await asyncio.wait_for(
            asyncio.gather(*(connect() for _ in range(args.connections))), args.connect_timeout
        )
    except TimeoutError:
        run.error("connect timeout")
    if clients:
        try:
            await asyncio.wait_for(asyncio.shield(run.all_ready), args.connect_timeout)
        except TimeoutError:
            run.error("handshake timeout")
    await asyncio.sleep(args.warmup)
    run.messages = 0
    run.latencies = array("d")
    run.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(args.duration)
    run.measuring = False
    elapsed = time.perf_counter() - started
    run.stopping = True
    for client in clients:
        if client.transport is not None:
            client.transport.abort()
    await asyncio.sleep(0)  # let connection_lost callbacks run
    return {
        "rps": run.messages / elapsed,
        "p50_ms": percentile(run.latencies, 50) * 1000,
        "p99_ms": percentile(run.latencies, 99) * 1000,
        "requests": run.messages,
        "errors": sum(run.errors.values()),
        "error_kinds": run.errors,
        "connections": run.handshakes,
        "loop": type(loop).__module__.split(".")[0],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--size", type=int, default=32, help="payload bytes per message (< 126)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--asyncio", action="store_true", help="plain asyncio even if uvloop exists")
    args = p.parse_args(argv)
    if not 0 < args.size < 126:
        p.error("--size must be 1..125 (one 2-byte frame header)")
    if args.connections < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--connections and --duration must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runner: Any = asyncio.run
    if not args.asyncio:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
    result = runner(load(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

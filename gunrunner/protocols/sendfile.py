"""Sending a byte range of a file to a transport: sendfile(2) where the transport allows.

Plain TCP and Unix sockets use asyncio's native sendfile (zero copy: the kernel moves
the bytes). TLS transports, and event loops without it (uvloop), get bounded reads
written as the client takes them, so a large file never sits in memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Protocol

log = logging.getLogger(__name__)

CHUNK = 256 * 1024


class Writer(Protocol):
    """The connection a file goes out on (HTTP11Protocol)."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    write_paused: bool

    async def drain(self) -> None:
        """Wait until the transport takes writes again."""


async def send_range(writer: Writer, file: Any, offset: int, count: int, timeout: float) -> int:
    """Send up to `count` bytes of `file` from `offset`; return how many were sent.

    Fewer than `count` means the file ended early. OSError if the client went away or
    took no CHUNK for `timeout` seconds (it is not reading: the connection is dropped).
    """
    transport = writer.transport
    if transport.is_closing():  # (loop.sendfile would raise RuntimeError)
        raise ConnectionResetError("client disconnected")
    if transport.get_extra_info("ssl_object") is None:
        try:
            return await _native(writer, file, offset, count, timeout)
        except (NotImplementedError, asyncio.SendfileNotAvailableError):
            pass  # nothing was sent: copy instead
    fd = file.fileno()
    sent = 0
    while sent < count:
        block = os.pread(fd, min(CHUNK, count - sent), offset + sent)
        if not block:
            break
        if transport.is_closing():
            raise ConnectionResetError("client disconnected")
        transport.write(block)
        sent += len(block)
        if writer.write_paused:
            await writer.drain()
    return sent


async def _native(writer: Writer, file: Any, offset: int, count: int, timeout: float) -> int:
    """sendfile(2) in CHUNK steps, each bounded by `timeout`: a client that stops
    reading cannot hold the connection (and a WSGI thread) forever."""
    sent = 0
    while sent < count:
        step = min(CHUNK, count - sent)
        try:
            done = await asyncio.wait_for(
                writer.loop.sendfile(writer.transport, file, offset + sent, step, fallback=False),
                timeout,
            )
        except asyncio.TimeoutError:  # (TimeoutError from 3.11 on)
            log.info(
                "client %s read nothing of its response for %ss; connection dropped",
                writer.transport.get_extra_info("peername"),
                timeout,
            )
            writer.transport.abort()
            raise ConnectionResetError(f"client read nothing for {timeout}s") from None
        sent += done
        if done < step:
            break  # the file ended
    return sent

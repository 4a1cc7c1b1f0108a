"""Accepting connections from a worker's listening sockets, and stopping without loss.

Not asyncio's Server: stopping must first drain the kernel's accept queue and wait until
every accepted connection has its transport, and Server.close() drops connections
accepted just before it (CPython gh-109564).

Rules:
1. Accepting is bounded per wakeup (128), so one busy listener cannot starve the loop.
2. At worker_connections the acceptor stops reading its sockets; clients wait in the
   kernel's listen queue, not in our memory, until connections close.
3. accept() failing for lack of descriptors or memory pauses that socket for a second.
4. stop() accepts everything queued, waits for those connections to be set up, and
   closes the sockets right after a last accept() found nothing, with no await between.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

from gunrunner.net import describe
from gunrunner.tls import shrink_asyncio_tls_buffer

log = logging.getLogger(__name__)

_STOP_ROUNDS = 8  # accept-and-wait rounds while stopping, for clients that keep coming


class Acceptor:
    """Accepts connections from listening sockets; stops without losing queued ones."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        factory: Callable[[], asyncio.Protocol],
        connections: set[Any] | None = None,
        max_connections: int = 0,
    ) -> None:
        self.loop = loop
        self.sockets = sockets
        self.factory = factory
        self.connections = connections if connections is not None else set()
        self.max_connections = max_connections
        self.full = False
        self.pending: set[asyncio.Task[Any]] = set()
        self.tls_args: dict[str, Any] = {}
        for sock in sockets:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)

    def use_tls(self, context: ssl.SSLContext, handshake_timeout: float) -> None:
        """Wrap accepted connections in TLS; the handshake counts against header_timeout."""
        self.tls_args = {"ssl": context, "ssl_handshake_timeout": handshake_timeout}
        shrink_asyncio_tls_buffer()
        if sys.version_info >= (3, 11):
            # Closing waits this long for the client's close_notify, holding the
            # connection (and a drain) open; asyncio's default is 30 s.
            self.tls_args["ssl_shutdown_timeout"] = 2.0

    def _at_capacity(self) -> bool:
        return bool(self.max_connections) and (
            len(self.connections) + len(self.pending) >= self.max_connections
        )

    def _pause_when_full(self) -> None:
        """worker_connections reached: stop accepting; check again every 50 ms."""
        if not self.full:
            self.full = True
            log.warning(
                "worker_connections (%d) reached: not accepting until connections close",
                self.max_connections,
            )
            for sock in self.sockets:
                if sock.fileno() >= 0:
                    self.loop.remove_reader(sock.fileno())
        self.loop.call_later(0.05, self._resume_when_room)

    def _resume_when_room(self) -> None:
        if not self.full:
            return
        if self._at_capacity():
            self.loop.call_later(0.05, self._resume_when_room)
            return
        self.full = False
        log.info("accepting connections again (%d open)", len(self.connections))
        for sock in self.sockets:
            self._resume(sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(128):  # bounded, so that one busy listener cannot starve the loop
            if self._at_capacity():
                self._pause_when_full()
                return
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors (EMFILE/ENFILE) or memory: stop accepting for
                # a second instead of spinning; queued clients wait in the kernel.
                log.error("accept() failed on %s: %s; pausing accepts for 1s", describe(sock), exc)
                self.loop.remove_reader(sock.fileno())
                self.loop.call_later(1.0, self._resume, sock)
                return
            conn.setblocking(False)
            task = self.loop.create_task(self._connect(conn, peer))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _connect(self, conn: socket.socket, peer: Any) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn, **self.tls_args)
        except OSError as exc:
            # Plain HTTP or garbage on a TLS port, a failed client certificate, a
            # handshake too slow: that client's problem, not the operator's.
            what = "TLS handshake failed" if self.tls_args else "connection lost before set-up"
            log.debug("%s (peer %s): %s", what, describe_peer(peer), exc)
            conn.close()

    def _resume(self, sock: socket.socket) -> None:
        if sock.fileno() >= 0 and not self.full:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    async def stop(self) -> None:
        """Accept everything queued, wait for those connections to start, stop listening.

        The sockets close right after a last accept() found their queues empty, with no
        await in between: a client that connected before is served; one that connects
        after is refused by the kernel (or, with net.ipv4.tcp_migrate_req, moved to
        another worker's socket), never reset after waiting in a dead queue. Clients
        that keep arriving get a bounded number of rounds.
        """
        self.full = False
        self.max_connections = 0  # the drain takes what is queued, whatever the limit
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
        rounds = 0
        while self._accept_queued() and rounds < _STOP_ROUNDS:
            rounds += 1
            await asyncio.gather(*self.pending, return_exceptions=True)
        self.close()
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)

    def _accept_queued(self) -> bool:
        """Accept until every socket's queue is empty; True if anything was accepted."""
        accepted = False
        for sock in self.sockets:
            if sock.fileno() < 0:
                continue
            while True:
                before = len(self.pending)
                self._accept(sock)
                if len(self.pending) == before:
                    break
                accepted = True
        return accepted

    def close(self) -> None:
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self.loop.remove_reader(sock.fileno())
                sock.close()


def describe_peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return "unix socket"

"""One serving process: its event loop, its listeners, graceful drain and heartbeat.

A worker is either forked by the arbiter (one per slot) or, with workers <= 1, the
main process itself. It knows nothing of fork policy: it serves until told to stop.

Stopping (TERM, or the arbiter is gone): accept what is already queued, stop accepting,
let in-flight requests finish with `Connection: close`, close idle connections, and give
up after `graceful_timeout`. Fast stop (INT, QUIT): close everything now.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import functools
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gunrunner import logs
from gunrunner.access import AccessLog
from gunrunner.apps.asgi import ASGIBridge, Lifespan, as_asgi3
from gunrunner.apps.loader import detect_interface, import_app
from gunrunner.apps.types import AppBridge
from gunrunner.apps.wsgi import WSGIBridge
from gunrunner.config import Options
from gunrunner.errors import (
    EXIT_ERROR,
    EXIT_OK,
    AppLoadError,
    BootError,
    ConfigError,
    GunrunnerError,
)
from gunrunner.net import describe
from gunrunner.protocols.http11 import ConnectionSettings, HTTP11Protocol
from gunrunner.protocols.websocket import WebSocketSettings
from gunrunner.proxy import ProxyTrust
from gunrunner.slots import Heartbeat
from gunrunner.tls import TLSServer, build_tls, shrink_asyncio_tls_buffer

log = logging.getLogger(__name__)

# Status pipe messages, worker -> arbiter.
STATUS_READY = b"R"
STATUS_ERROR = b"E"  # followed by the message and a NUL


@dataclass(slots=True)
class WorkerContext:
    """What a worker needs from whoever started it."""

    options: Options
    sockets: list[socket.socket]
    slot: int | None = None  # None: the main process serves (workers <= 1)
    heartbeat: Heartbeat | None = None
    status_fd: int | None = None
    parent_pid: int | None = None
    # Called once the worker's own signal handlers are installed (unblocks signals).
    signals_ready: Callable[[], None] | None = None


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    if choice in ("auto", "uvloop"):
        try:
            import uvloop  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            if choice == "uvloop":
                raise ConfigError(
                    'loop = "uvloop" but uvloop is not installed; '
                    "pip install 'gunrunner[fast]' or use loop = \"auto\"",
                    key="loop",
                ) from None
        else:
            return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


def load_app(options: Options) -> tuple[Any, str]:
    """Import the app and settle its interface; AppLoadError on failure."""
    if not options.app:
        raise AppLoadError("no app given: pass module:attribute, or set app in the config file")
    app = import_app(options.app, app_dir=options.app_dir, factory=options.factory)
    interface = options.interface
    if interface == "auto":
        interface = detect_interface(app)
    return app, interface


class Worker:
    def __init__(self, context: WorkerContext) -> None:
        self.ctx = context
        self.options = context.options
        self._stop: asyncio.Future[str] | None = None
        self._give_up = asyncio.Event()
        self._access: AccessLog | None = None
        self._tick_handle: asyncio.TimerHandle | None = None

    # -- entry points ---------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped; raise AppLoadError or BootError when the app cannot start."""
        try:
            # First: certificates that do not load fail the boot before the app starts.
            tls = build_tls(self.options)
        except ConfigError as exc:
            raise BootError(f"cannot serve TLS: {exc}") from None
        app, interface = load_app(self.options)
        loop = new_event_loop(self.options.loop)
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(self._serve(app, interface, tls))
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)

    def run_in_child(self) -> int:
        """`run()` for a forked worker: errors go to the arbiter through the status pipe."""
        try:
            return self.run()
        except GunrunnerError as exc:
            self._report(STATUS_ERROR + str(exc).encode("utf-8", "replace") + b"\0")
            return exc.exit_code
        except BaseException:
            log.exception("worker crashed")
            return EXIT_ERROR

    # -- serving --------------------------------------------------------------------------
    async def _serve(self, app: Any, interface: str, tls: TLSServer | None) -> int:
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        self._install_signals(loop)
        options = self.options
        lifespan: Lifespan | None = None
        bridge: AppBridge
        if interface == "wsgi":
            bridge = WSGIBridge(
                app,
                threads=options.threads,
                root_path=options.root_path,
                multiprocess=self.ctx.slot is not None,
            )
        else:
            asgi_app = as_asgi3(app, interface)
            state: dict[str, Any] | None = None
            if options.lifespan != "off":
                lifespan = Lifespan(asgi_app, options.lifespan)
                await lifespan.startup()
                if lifespan.supported:
                    state = lifespan.state
            bridge = ASGIBridge(asgi_app, root_path=options.root_path, state=state)
        settings = ConnectionSettings(
            bridge,
            keepalive_timeout=options.keepalive_timeout,
            max_incomplete_event_size=options.h11_max_incomplete_event_size,
            server_header=options.server_header,
            header_timeout=options.header_timeout,
            body_timeout=options.body_timeout,
            send_timeout=options.send_timeout,
            limit_request_line=options.limit_request_line,
            limit_request_fields=options.limit_request_fields,
            limit_request_field_size=options.limit_request_field_size,
            max_body_size=options.max_body_size,
            proxy=ProxyTrust(options.forwarded_allow_ips),
            access=self._open_access_log(),
            tls=tls,
            scheme="https" if tls is not None else "http",
            websocket=WebSocketSettings(
                max_message_size=options.ws_max_message_size,
                max_queue=options.ws_max_queue,
                ping_interval=options.ws_ping_interval,
                ping_timeout=options.ws_ping_timeout,
                per_message_deflate=options.ws_per_message_deflate,
            ),
        )
        factory = functools.partial(HTTP11Protocol, settings)
        acceptor = Acceptor(
            loop, self.ctx.sockets, factory, settings.connections, options.worker_connections
        )
        if tls is not None:
            acceptor.use_tls(tls.context, handshake_timeout=options.header_timeout)
        self._tick()
        self._report(STATUS_READY)
        where = ", ".join(describe(s) for s in self.ctx.sockets)
        log.info("serving %s app %s on %s", interface.upper(), options.app, where)
        mode = await self._stop
        if mode == "graceful":
            await self._drain(acceptor, settings)
        else:
            acceptor.close()
            for connection in list(settings.connections):
                connection.transport.abort()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if lifespan is not None:
            await lifespan.shutdown(min(options.graceful_timeout, 10.0))
        if isinstance(bridge, WSGIBridge):
            bridge.shutdown()
        elif isinstance(bridge, ASGIBridge) and bridge.tasks:
            for task in list(bridge.tasks):
                task.cancel()
            await asyncio.gather(*bridge.tasks, return_exceptions=True)
        log.info("stopped (%s)", mode)
        return EXIT_OK

    async def _drain(self, acceptor: Acceptor, settings: ConnectionSettings) -> None:
        # Responses from now on carry Connection: close. Then accept what the kernel
        # already queued for us and wait until those connections exist before we stop
        # listening: a client that connected before the stop is served, not reset.
        settings.drain()
        await acceptor.stop()
        deadline = time.monotonic() + self.options.graceful_timeout
        while settings.connections and time.monotonic() < deadline:
            if self._give_up.is_set():
                break
            await asyncio.sleep(0.05)
        if settings.connections and not self._give_up.is_set():
            log.warning(
                "%d connection(s) still busy after graceful_timeout (%.1fs); closing them",
                len(settings.connections),
                self.options.graceful_timeout,
            )
        for connection in list(settings.connections):
            connection.transport.abort()

    # -- signals, heartbeat, status -------------------------------------------------------
    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGTERM, self.stop, "graceful")
        loop.add_signal_handler(signal.SIGINT, self.stop, "fast")
        loop.add_signal_handler(signal.SIGQUIT, self.stop, "fast")
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        if self.ctx.slot is None:
            loop.add_signal_handler(signal.SIGHUP, self._hup_single)
            for sig in (signal.SIGTTIN, signal.SIGTTOU):
                loop.add_signal_handler(sig, self._scale_single)
        else:
            # Signals meant for the arbiter only: a worker ignores them.
            for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(sig, signal.SIG_IGN)
        # SIGUSR2 dumps every thread's stack to the log: the arbiter sends it to a worker
        # whose loop stopped beating before it kills it.
        faulthandler.register(signal.SIGUSR2, file=logs.stream_fileno(), all_threads=True)
        if self.ctx.signals_ready is not None:
            self.ctx.signals_ready()

    def stop(self, mode: str) -> None:
        if self._stop is not None and not self._stop.done():
            log.info("stopping (%s)", mode)
            self._stop.set_result(mode)
        elif mode == "fast" and not self._give_up.is_set():
            # INT or QUIT during a graceful stop: stop waiting for busy connections.
            log.info("fast stop requested during the graceful stop: closing connections now")
            self._give_up.set()

    def _open_access_log(self) -> AccessLog | None:
        options = self.options
        path = options.access_log
        if path is None and options.reload:
            path = "-"  # a development server shows its requests
        if path is None or path == "off":
            return None
        self._access = AccessLog(path, options.access_log_format, options.access_log_json)
        return self._access

    def _reopen_logs(self) -> None:
        logs.reopen()
        if self._access is not None:
            self._access.reopen()
        faulthandler.register(signal.SIGUSR2, file=logs.stream_fileno(), all_threads=True)
        log.info("log files reopened")

    def _hup_single(self) -> None:
        log.warning("SIGHUP ignored: reloading needs worker processes (workers >= 2)")

    def _scale_single(self) -> None:
        log.warning("SIGTTIN/SIGTTOU ignored: scaling needs worker processes (workers >= 2)")

    def _tick(self) -> None:
        """Stamp the heartbeat from the loop itself, and stop if the arbiter is gone."""
        if self.ctx.heartbeat is not None:
            self.ctx.heartbeat.stamp()
        parent = self.ctx.parent_pid
        if parent is not None and os.getppid() != parent:
            log.warning("arbiter (pid %d) is gone; stopping", parent)
            self.stop("graceful")
            return
        timeout = self.options.timeout
        interval = min(1.0, timeout / 4) if timeout > 0 else 1.0
        self._tick_handle = asyncio.get_running_loop().call_later(interval, self._tick)

    def _report(self, message: bytes) -> None:
        if self.ctx.status_fd is None:
            return
        try:
            os.write(self.ctx.status_fd, message)
        except OSError:
            pass


class Acceptor:
    """Accepts connections from listening sockets; stops without losing queued ones.

    Not asyncio's Server: stopping it must first drain the kernel's accept queue and
    wait until every accepted connection has its transport, and Server.close() drops
    connections accepted just before it (CPython gh-109564).
    """

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
        """Accept everything queued, wait for those connections to start, stop listening."""
        self.full = False
        self.max_connections = 0  # the drain takes what is queued, whatever the limit
        for sock in self.sockets:
            self.loop.remove_reader(sock.fileno())
            while True:
                before = len(self.pending)
                self._accept(sock)
                if len(self.pending) == before:
                    break
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)
        self.close()

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


def serve_single(options: Options, sockets: list[socket.socket]) -> int:
    """workers <= 1: serve in this process. Raises AppLoadError/BootError.

    WSGI pool threads are daemons: one stuck in the app does not hold up the exit.
    """
    return Worker(WorkerContext(options=options, sockets=sockets)).run()

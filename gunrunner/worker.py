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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gunrunner import logs
from gunrunner.acceptor import Acceptor
from gunrunner.access import AccessLog
from gunrunner.apps.asgi import ASGIBridge, Lifespan, as_asgi3
from gunrunner.apps.loader import load_app
from gunrunner.apps.types import AppBridge
from gunrunner.apps.wsgi import WSGIBridge
from gunrunner.config import Options
from gunrunner.errors import (
    EXIT_ERROR,
    EXIT_OK,
    BootError,
    ConfigError,
    GunrunnerError,
)
from gunrunner.hooks import Hooks, ServerInfo, WorkerInfo
from gunrunner.net import describe
from gunrunner.preflight import httptools_missing, uvloop_missing
from gunrunner.protocols.connection import HTTPConnection
from gunrunner.protocols.limits import Limits
from gunrunner.protocols.settings import ConnectionSettings
from gunrunner.protocols.websocket import WebSocketSettings
from gunrunner.proxy import ProxyTrust
from gunrunner.stats import WorkerStats
from gunrunner.status import (
    STATUS_MAX_REQUESTS,
    STATUS_READY,
    Heartbeat,
    error_message,
    report,
)
from gunrunner.stuck import StuckRequests
from gunrunner.tls import TLSServer, build_tls

log = logging.getLogger(__name__)


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
    # After this many requests the worker asks the arbiter for a replacement (0: never).
    request_limit: int = 0
    # This worker's row of the shared stats table (stats.py); None: no metrics.
    stats_row: memoryview | None = None
    # (app, interface) imported by the arbiter before fork (preload_app); None: import it.
    preloaded: tuple[Any, str] | None = None
    # The user's server hooks (hooks.py) and what they see of the arbiter.
    hooks: Hooks | None = None
    server: ServerInfo | None = None


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    if choice in ("auto", "uvloop"):
        try:
            import uvloop  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            if choice == "uvloop":
                raise uvloop_missing() from None
        else:
            return uvloop.new_event_loop()  # type: ignore[no-any-return,unused-ignore]
    return asyncio.new_event_loop()


def http_driver(choice: str) -> type[HTTPConnection]:
    """The HTTP/1.1 driver class for the `http` option.

    auto takes httptools when it is installed: it gives h11's answer to every case of
    the conformance corpus and the property tests. h11 stays the reference.
    """
    if choice in ("auto", "httptools"):
        try:
            from gunrunner.protocols.httptools_driver import HttpToolsProtocol
        except ImportError:
            if choice == "httptools":
                raise httptools_missing() from None
        else:
            return HttpToolsProtocol
    from gunrunner.protocols.http11 import HTTP11Protocol

    return HTTP11Protocol


class Worker:
    def __init__(self, context: WorkerContext) -> None:
        self.ctx = context
        self.options = context.options
        self._stop: asyncio.Future[str] | None = None
        self._settings: ConnectionSettings | None = None
        self._bridge: AppBridge | None = None
        row = self.ctx.stats_row
        self._stats = WorkerStats(row) if row is not None else None
        warn_after = self.options.request_warn_after
        self._stuck = StuckRequests(warn_after) if warn_after > 0 else None
        self._give_up = asyncio.Event()
        self._access: AccessLog | None = None
        self._tick_handle: asyncio.TimerHandle | None = None

    # -- entry points ---------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped; raise AppLoadError or BootError when the app cannot start."""
        if not self._hook("post_fork", self.ctx.server):
            raise BootError(self._hook_failed("post_fork"))
        try:
            # First: certificates that do not load fail the boot before the app starts.
            tls = build_tls(self.options)
        except ConfigError as exc:
            raise BootError(f"cannot serve TLS: {exc}") from None
        try:
            return self._run(tls)
        finally:
            self._hook("worker_exit", self.ctx.server)

    def _run(self, tls: TLSServer | None) -> int:
        app, interface = self.ctx.preloaded or load_app(self.options)
        loop = new_event_loop(self.options.loop)
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(self._serve(app, interface, tls))
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            # On the way out, a late stop signal (Ctrl-C reaches the workers before the
            # arbiter's QUIT) is ignored. Done before loop.close(), which closes its
            # wakeup pipe before it removes its handlers: a signal in between made
            # Python print "Exception ignored when trying to write to the signal wakeup fd".
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(sig)
                    signal.signal(sig, signal.SIG_IGN)
            loop.close()
            asyncio.set_event_loop(None)

    def run_in_child(self) -> int:
        """`run()` for a forked worker: a fatal error goes to the arbiter (status pipe)
        before the worker exits, so that the arbiter's line about the exit says why."""
        try:
            return self.run()
        except GunrunnerError as exc:
            report(self.ctx.status_fd, error_message(str(exc)))
            return exc.exit_code
        except BaseException as exc:
            log.exception("worker crashed")
            report(self.ctx.status_fd, error_message(f"crashed: {type(exc).__name__}: {exc}"))
            return EXIT_ERROR

    def _hook(self, name: str, *args: object) -> bool:
        """Call a server hook with these arguments and this worker's WorkerInfo."""
        hooks = self.ctx.hooks
        if hooks is None or self.ctx.slot is None:
            return True
        return hooks.call(name, *args, WorkerInfo(os.getpid(), self.ctx.slot))

    def _hook_failed(self, name: str) -> str:
        module = self.ctx.hooks.module if self.ctx.hooks is not None else ""
        return f"hook {name} ({module}) failed (its traceback is logged above)"

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
        if not self._hook("post_worker_init"):
            if lifespan is not None:  # (the app started: let it clean up)
                await lifespan.shutdown(min(options.graceful_timeout, 10.0))
            raise BootError(self._hook_failed("post_worker_init"))
        access = self._open_access_log()
        settings = ConnectionSettings(
            bridge,
            limits=Limits.from_options(options),
            server_header=options.server_header,
            proxy=ProxyTrust(options.forwarded_allow_ips),
            observers=(access,) if access is not None else (),
            keep_response_headers=access is not None and access.wants_response_headers,
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
        self._settings = settings
        self._bridge = bridge
        settings.stats = self._stats
        if self.ctx.request_limit:
            settings.request_limit = self.ctx.request_limit
            settings.request_limit_reached = self._request_limit_reached
        driver = http_driver(options.http)
        factory = functools.partial(driver, settings)
        acceptor = Acceptor(
            loop, self.ctx.sockets, factory, settings.connections, options.worker_connections
        )
        if tls is not None:
            acceptor.use_tls(tls.context, handshake_timeout=options.header_timeout)
        self._tick()
        report(self.ctx.status_fd, STATUS_READY)
        where = ", ".join(describe(s) for s in self.ctx.sockets)
        parser = "httptools" if driver.__name__ == "HttpToolsProtocol" else "h11"
        event_loop = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        log.info(
            "serving %s app %s on %s (%s, %s)",
            interface.upper(), options.app, where, parser, event_loop,
        )  # fmt: skip
        mode = await self._stop
        if mode == "graceful":
            await self._drain(acceptor, settings)
        else:
            acceptor.close()
            for connection in list(settings.connections):
                connection.transport.abort()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._publish_stats()  # the last counts, before the arbiter folds this row
        if lifespan is not None:
            await lifespan.shutdown(min(options.graceful_timeout, 10.0))
        if isinstance(bridge, WSGIBridge):
            bridge.shutdown()
        elif isinstance(bridge, ASGIBridge) and bridge.tasks:
            for task in list(bridge.tasks):
                task.cancel()
            await asyncio.gather(*bridge.tasks, return_exceptions=True)
        # A worker's exit is logged by the arbiter; a lone process says it itself.
        log.log(logging.INFO if self.ctx.slot is None else logging.DEBUG, "stopped (%s)", mode)
        return EXIT_OK

    async def _drain(self, acceptor: Acceptor, settings: ConnectionSettings) -> None:
        # Responses from now on carry Connection: close. Then accept what the kernel
        # already queued for us and wait until those connections exist before we stop
        # listening: a client that connected before the stop is served, not reset.
        # Under --reload the old code must not answer the next request on an idle
        # keep-alive connection: those close at once (a browser resends the GET).
        if not settings.draining:
            settings.drain(close_idle=self.options.reload)
        await acceptor.stop()
        deadline = time.monotonic() + self.options.graceful_timeout
        while settings.connections and time.monotonic() < deadline:
            if self._give_up.is_set():
                break
            await asyncio.sleep(0.05)
        if settings.connections and not self._give_up.is_set():
            log.warning(
                "%d connection(s) still open after graceful_timeout (%.1fs); closing them",
                len(settings.connections),
                self.options.graceful_timeout,
            )
        for connection in list(settings.connections):
            connection.transport.abort()

    # -- signals, heartbeat, status -------------------------------------------------------
    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGTERM, self.stop, "graceful")
        loop.add_signal_handler(signal.SIGQUIT, self.stop, "fast")
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        if self.ctx.slot is None:
            loop.add_signal_handler(signal.SIGINT, self.stop, "fast")
            loop.add_signal_handler(signal.SIGHUP, self._hup_single)
            for sig in (signal.SIGTTIN, signal.SIGTTOU):
                loop.add_signal_handler(sig, self._scale_single)
        else:
            # Signals meant for the arbiter only: a worker ignores them. SIGINT too: a
            # terminal's Ctrl-C reaches the whole process group, and the arbiter answers
            # it with QUIT to each worker, so one Ctrl-C makes one orderly fast stop
            # (a worker gone before the arbiter saw the signal would look like a crash).
            for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(sig, signal.SIG_IGN)
        # SIGUSR2 dumps every thread's stack to the log: the arbiter sends it to a worker
        # whose loop stopped beating before it kills it.
        faulthandler.register(signal.SIGUSR2, file=logs.stream_fileno(), all_threads=True)
        if self.ctx.signals_ready is not None:
            self.ctx.signals_ready()

    def stop(self, mode: str) -> None:
        if self._stop is None:
            return
        if not self._stop.done():
            log.info("stopping (%s)", mode)
            self._stop.set_result(mode)
            if mode == "graceful" and self._settings is not None:
                # Now, in the signal's own callback, not when _serve resumes a few loop
                # turns later: a request read in between must already get Connection: close.
                self._settings.drain(close_idle=self.options.reload)
        elif mode == "fast" and self._stop.result() == "graceful" and not self._give_up.is_set():
            # INT or QUIT during a graceful stop: stop waiting for busy connections.
            # (Ctrl-C reaches the workers and then the arbiter's QUIT: a fast stop
            # already under way ignores both.)
            log.info("fast stop requested during the graceful stop: closing connections now")
            self._give_up.set()

    def _publish_stats(self) -> None:
        if self._stats is not None and self._settings is not None:
            self._stats.publish(self._settings.connections)

    def _request_limit_reached(self) -> None:
        # The arbiter starts a successor; this worker serves on until it is ready.
        log.info(
            "served max_requests (%d requests): asking for a replacement", self.ctx.request_limit
        )
        report(self.ctx.status_fd, STATUS_MAX_REQUESTS)

    def _open_access_log(self) -> AccessLog | None:
        options = self.options
        path = options.access_log
        if path is None and options.reload:
            path = "-"  # a development server shows its requests
        if path is None or path == "off":
            return None
        try:
            self._access = AccessLog(
                path, options.access_log_format, options.access_log_json, options.access_log_headers
            )
        except OSError as exc:  # (a boot error: a respawn would fail the same way)
            raise BootError(f"cannot open the access log {path}: {exc.strerror or exc}") from None
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
        if self._stuck is not None and self._bridge is not None:
            self._stuck.sweep(self._bridge, time.monotonic())
        self._publish_stats()
        parent = self.ctx.parent_pid
        if parent is not None and os.getppid() != parent:
            log.warning("arbiter (pid %d) is gone; stopping", parent)
            self.stop("graceful")
            return
        timeout = self.options.timeout
        interval = min(1.0, timeout / 4) if timeout > 0 else 1.0
        self._tick_handle = asyncio.get_running_loop().call_later(interval, self._tick)


def serve_single(options: Options, sockets: list[socket.socket]) -> int:
    """workers <= 1: serve in this process. Raises AppLoadError/BootError.

    WSGI pool threads are daemons: one stuck in the app does not hold up the exit.
    """
    return Worker(WorkerContext(options=options, sockets=sockets)).run()

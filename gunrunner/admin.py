"""The admin endpoints on `metrics_bind`: /metrics, /livez and /readyz.

Served by a child process of the arbiter (forked like the reload watcher) with
gunrunner's own HTTP stack, from the shared stats table (stats.py): the arbiter's loop
stays free of HTTP, and a slow scrape never delays a signal or a reap.

- /metrics: Prometheus text (0.0.4), or OpenMetrics 1.0 when the Accept header asks.
- /livez: 200 while the arbiter's loop turns (its beat is fresh) and a worker is ready.
- /readyz: 200 when every slot has a ready worker; 503 while draining (a stop began: a
  load balancer stops sending before the listeners close) or while a slot has none.
Both health bodies are short JSON with the per-slot state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

from gunrunner import __version__
from gunrunner import stats as s
from gunrunner._fork import fork_child
from gunrunner.apps.asgi import ASGIBridge
from gunrunner.errors import BindError
from gunrunner.protocols.limits import Limits
from gunrunner.protocols.settings import ConnectionSettings
from gunrunner.worker import http_driver, new_event_loop

log = logging.getLogger("gunrunner.arbiter")

BEAT_STALE = 10.0  # seconds without an arbiter loop turn before /livez fails
TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def bind_admin(address: str, backlog: int = 64) -> socket.socket:
    """The admin listening socket (HOST:PORT), bound in the arbiter before anything forks."""
    host, port = _host_port(address)
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        raise BindError(address, f"metrics_bind: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise BindError(address, "metrics_bind must be HOST:PORT", "write 127.0.0.1:9100")
    return host.strip("[]") or "0.0.0.0", int(port)


def now_ms() -> int:
    return int(time.monotonic() * 1000)


# -- the admin process ---------------------------------------------------------------------
def run_admin(sock: socket.socket, table: s.StatsTable, options: Any, parent: int) -> int:
    """The admin child's main: serve until TERM or until the arbiter is gone."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    loop = new_event_loop(options.loop)
    asyncio.set_event_loop(loop)

    async def serve() -> None:
        stop: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            if not stop.done():
                stop.set_result(None)

        for sig in (signal.SIGTERM, signal.SIGQUIT):
            loop.add_signal_handler(sig, finish)
        settings = ConnectionSettings(
            ASGIBridge(AdminApp(table)),
            limits=Limits.from_options(options),
            server_header=True,
        )
        driver = http_driver(options.http)
        server = await loop.create_server(lambda: driver(settings), sock=sock)

        def watch_parent() -> None:
            if os.getppid() != parent:
                finish()
            else:
                loop.call_later(1.0, watch_parent)

        watch_parent()
        await stop
        server.close()
        for connection in list(settings.connections):
            connection.transport.abort()

    try:
        loop.run_until_complete(serve())
    finally:
        loop.close()
    return 0


class AdminApp:
    """The ASGI app of the admin endpoints."""

    def __init__(self, table: s.StatsTable) -> None:
        self.table = table

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        header, totals = self.table.snapshot()
        if path == "/metrics":
            accept = b""
            for name, value in scope["headers"]:
                if name == b"accept":
                    accept = value
            openmetrics = b"application/openmetrics-text" in accept
            body = render(header, totals, openmetrics=openmetrics).encode()
            await _answer(send, 200, OPENMETRICS if openmetrics else TEXT, body)
        elif path in ("/livez", "/readyz"):
            status, document = health(header, live=path == "/livez")
            await _answer(send, status, "application/json", json.dumps(document).encode())
        else:
            await _answer(send, 404, "text/plain", b"not found: /metrics, /livez, /readyz\n")


async def _answer(send: Any, status: int, content_type: str, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# -- health --------------------------------------------------------------------------------
def slot_states(header: list[int]) -> list[str]:
    count = min(header[s.SLOT_COUNT], s.MAX_SLOTS)
    return [s.SLOT_STATES[min(header[s.SLOT_STATE + i], 3)] for i in range(count)]


def health(header: list[int], *, live: bool) -> tuple[int, dict[str, Any]]:
    states = slot_states(header)
    beat_age = (now_ms() - header[s.ARBITER_BEAT_MS]) / 1000.0
    draining = bool(header[s.DRAINING])
    slots = [{"slot": i, "state": state} for i, state in enumerate(states)]
    if live:
        ok = beat_age < BEAT_STALE and "ready" in states
        stalled = beat_age >= BEAT_STALE
        why = "" if ok else ("arbiter loop stalled" if stalled else "no ready worker")
    else:
        ok = not draining and bool(states) and all(state == "ready" for state in states)
        why = "" if ok else ("draining" if draining else "not every slot has a ready worker")
    document: dict[str, Any] = {"status": "ok" if ok else "unavailable", "slots": slots}
    if why:
        document["reason"] = why
    if live:
        document["arbiter_beat_age"] = round(beat_age, 3)
    return (200 if ok else 503), document


# -- metrics -------------------------------------------------------------------------------
def render(header: list[int], totals: list[int], *, openmetrics: bool = False) -> str:
    """Prometheus text (or OpenMetrics) of the whole server."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        # OpenMetrics names a counter family without its _total suffix.
        shown = name[: -len("_total")] if openmetrics and kind == "counter" else name
        out.append(f"# HELP {shown} {help_text}")
        out.append(f"# TYPE {shown} {kind}")

    family("gunrunner_requests_total", "counter", "Responses sent, by method and status class.")
    for m, method in enumerate(s.METHODS):
        for c, status_class in enumerate(s.STATUS_CLASSES):
            value = totals[s.REQUESTS + m * 5 + c]
            if value:
                labels = f'method="{method}",status="{status_class}"'
                out.append(f"gunrunner_requests_total{{{labels}}} {value}")
    family(
        "gunrunner_request_duration_seconds",
        "histogram",
        "Time from the complete request head to the end of the response.",
    )
    cumulative = 0
    for b, bound in enumerate(s.BUCKETS):
        cumulative += totals[s.DURATION + b]
        out.append(f'gunrunner_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
    cumulative += totals[s.DURATION + len(s.BUCKETS)]
    out.append(f'gunrunner_request_duration_seconds_bucket{{le="+Inf"}} {cumulative}')
    out.append(f"gunrunner_request_duration_seconds_sum {totals[s.DURATION_SUM_US] / 1e6}")
    out.append(f"gunrunner_request_duration_seconds_count {cumulative}")
    family("gunrunner_requests_in_flight", "gauge", "Requests in the app or being answered.")
    out.append(f"gunrunner_requests_in_flight {totals[s.IN_FLIGHT]}")
    family("gunrunner_connections", "gauge", "Open client connections, by protocol.")
    out.append(f'gunrunner_connections{{protocol="http"}} {totals[s.OPEN_HTTP]}')
    out.append(f'gunrunner_connections{{protocol="websocket"}} {totals[s.OPEN_WEBSOCKETS]}')
    family("gunrunner_received_bytes_total", "counter", "Bytes received on HTTP connections.")
    out.append(f"gunrunner_received_bytes_total {totals[s.BYTES_RECEIVED]}")
    family("gunrunner_sent_body_bytes_total", "counter", "Response body bytes sent.")
    out.append(f"gunrunner_sent_body_bytes_total {totals[s.BODY_BYTES_SENT]}")
    family(
        "gunrunner_refused_requests_total",
        "counter",
        "Requests the server refused itself (the app never saw them), by status.",
    )
    for r, status in enumerate(s.REFUSED):
        value = totals[s.REFUSALS + r]
        out.append(f'gunrunner_refused_requests_total{{status="{status}"}} {value}')
    family("gunrunner_worker_starts_total", "counter", "Worker processes forked.")
    out.append(f"gunrunner_worker_starts_total {header[s.WORKER_STARTS]}")
    family("gunrunner_worker_exits_total", "counter", "Worker processes reaped, by cause.")
    for e, cause in enumerate(s.EXIT_CAUSES):
        out.append(f'gunrunner_worker_exits_total{{cause="{cause}"}} {header[s.EXITS + e]}')
    family("gunrunner_worker_recycles_total", "counter", "Workers replaced for a recycling limit.")
    for r, cause in enumerate(s.RECYCLE_CAUSES):
        out.append(f'gunrunner_worker_recycles_total{{cause="{cause}"}} {header[s.RECYCLES + r]}')
    states = slot_states(header)
    family("gunrunner_slot_ready", "gauge", "1 when the slot has a ready worker.")
    for i, state in enumerate(states):
        out.append(f'gunrunner_slot_ready{{slot="{i}"}} {int(state == "ready")}')
    family("gunrunner_listen_queue", "gauge", "Connections waiting in the slot's accept queue.")
    for i in range(len(states)):
        out.append(f'gunrunner_listen_queue{{slot="{i}"}} {header[s.SLOT_QUEUE + i]}')
    family("gunrunner_worker_memory_bytes", "gauge", "The slot's worker's own memory (USS).")
    for i in range(len(states)):
        out.append(f'gunrunner_worker_memory_bytes{{slot="{i}"}} {header[s.SLOT_MEMORY + i]}')
    family("gunrunner_draining", "gauge", "1 once a stop began.")
    out.append(f"gunrunner_draining {header[s.DRAINING]}")
    family("gunrunner_build_info", "gauge", "gunrunner's version and Python's.")
    python = ".".join(str(part) for part in sys.version_info[:3])
    out.append(f'gunrunner_build_info{{version="{__version__}",python="{python}"}} 1')
    if openmetrics:
        out.append("# EOF")
    return "\n".join(out) + "\n"


# -- in the arbiter ------------------------------------------------------------------------
class AdminProcess:
    """The arbiter's handle on the admin child: fork, restart with a delay, stop."""

    RESTART_DELAY = 1.0

    def __init__(self, sock: socket.socket, table: s.StatsTable) -> None:
        self.sock = sock
        self.table = table
        self.pid = 0
        self.stopping = False
        self._retry_at = 0.0

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self, in_child: Any, parent: int, signals: Any, options: Any) -> None:
        """Fork the admin process unless it runs (or a restart is not due yet)."""
        if self.pid or self.stopping or time.monotonic() < self._retry_at:
            return

        def child(unblock: Any) -> int:  # pragma: no cover - the admin process
            in_child()
            unblock()
            return run_admin(self.sock, self.table, options, parent)

        try:
            self.pid = fork_child(os.fork, signals, "admin process", child)
        except OSError as exc:
            self._retry_at = time.monotonic() + 5.0
            log.error("cannot fork the admin process: %s; retrying in 5s", exc)
            return
        log.info(
            "admin endpoints on http://%s (/metrics /livez /readyz; pid %d)",
            self.address, self.pid,
        )  # fmt: skip

    def exited(self, how: str) -> None:
        if not self.stopping:
            log.error("admin process %d %s; restarting it", self.pid, how)
            self._retry_at = time.monotonic() + self.RESTART_DELAY
        self.pid = 0

    def stop(self) -> None:
        """TERM it, once (when every worker is gone: /readyz answers 503 through the drain)."""
        if self.stopping:
            return
        self.stopping = True
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def close(self) -> None:
        self.sock.close()

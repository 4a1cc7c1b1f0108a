"""What every connection of a worker shares: the app bridge, limits, observers, TLS, the
set of live connections and the drain.

Rules:
1. Built once per worker (worker.py) and handed to every connection's driver.
2. `drain()` reaches every live connection, HTTP and WebSocket alike, through
   `close_when_idle()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from gunrunner.apps.types import AppBridge
from gunrunner.protocols.deadline import Clock
from gunrunner.protocols.limits import Limits
from gunrunner.protocols.observers import ResponseObserver
from gunrunner.protocols.websocket import WebSocketSettings
from gunrunner.proxy import ProxyTrust
from gunrunner.stats import WorkerStats
from gunrunner.tls import TLSServer


@dataclass(eq=False, slots=True)
class ConnectionSettings:
    """What every connection of a worker shares: bridge, limits, the drain flag."""

    bridge: AppBridge
    _: KW_ONLY
    limits: Limits
    server_header: bool
    scheme: str = "http"
    websocket: WebSocketSettings | None = None
    proxy: ProxyTrust | None = None
    # Told about every response sent, answered or refused (the access log, metrics).
    observers: tuple[ResponseObserver, ...] = ()
    stats: WorkerStats | None = None  # the worker's counters, for the arbiter's metrics
    # Exchanges keep their response header list for the observers (ResponseRecord's
    # response_headers): only when an access log logs response fields.
    keep_response_headers: bool = False
    tls: TLSServer | None = None  # set: connections arrive TLS-wrapped (scheme https)
    # HTTPConnection and WebSocketProtocol: each has close_when_idle() and transport.
    connections: set[Any] = field(default_factory=set)
    draining: bool = False
    # The time and timers of the connections' head and keep-alive deadlines: the event
    # loop when None (a unit test gives a fake clock).
    clock: Clock | None = None
    # Requests dispatched so far; at request_limit (0: none) request_limit_reached() is
    # called once (worker recycling: one add and one compare per request).
    requests: int = 0
    request_limit: int = 0
    request_limit_reached: Callable[[], None] | None = None

    def count_request(self) -> None:
        self.requests += 1
        if self.requests == self.request_limit and self.request_limit_reached is not None:
            self.request_limit_reached()

    def drain(self, *, close_idle: bool = False) -> None:
        """Stop keeping connections alive: each closes after its next response, or when
        its keep-alive timer runs out if no request comes first (close_when_idle()).

        `close_idle` closes idle keep-alive connections at once instead (dev reload: the
        next request must see the new code; a browser resends a GET on such a close).
        """
        self.draining = True
        for connection in list(self.connections):
            connection.close_when_idle()
            close_if_idle = getattr(connection, "close_if_idle", None)  # (HTTP only)
            if close_idle and close_if_idle is not None:
                close_if_idle()

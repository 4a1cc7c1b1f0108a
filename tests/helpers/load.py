"""Bounded load from client threads: keep-alive and connection-per-request clients that
record every failure (a recycle, HUP or drain must cause none)."""

from __future__ import annotations

import http.client
import threading

from tests.helpers.process import Server

MAX_REQUESTS = 200_000  # per client: a bound on the loop whatever happens


class KeepAliveClient(threading.Thread):
    """One http.client connection in a loop; it reconnects when told Connection: close.
    With `fresh`, every request opens a new connection instead."""

    def __init__(self, server: Server, stop: threading.Event, *, fresh: bool = False) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stop = stop
        self.fresh = fresh
        self.requests = 0
        self.reconnects = 0
        self.failures: list[str] = []
        self.pids: set[int] = set()

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=10)
        try:
            while not self.stop.is_set() and self.requests < MAX_REQUESTS:
                if self.fresh:
                    conn.close()
                try:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    conn.close()  # the next request opens a new connection
                    continue
                finally:
                    self.requests += 1
                if response.status != 200:
                    self.failures.append(f"status {response.status}: {body[:200]!r}")
                else:
                    self.pids.add(int(body))
                if response.will_close:
                    self.reconnects += 1  # http.client reconnects on the next request
        finally:
            conn.close()


def total(clients: list[KeepAliveClient]) -> int:
    return sum(client.requests for client in clients)

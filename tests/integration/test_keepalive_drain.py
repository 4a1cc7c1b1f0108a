"""Rolling restarts under keep-alive load lose no request.

A draining worker used to close its idle keep-alive connections at once, racing each
client's next request on them ("Remote end closed connection without response"). Now it
answers that request with Connection: close, and the client reconnects to a new worker.
"""

from __future__ import annotations

import http.client
import signal
import threading
import time

import pytest

from tests.helpers import running, wait_until
from tests.helpers.load import KeepAliveClient, total

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

HUPS = 10
CLIENTS = 4
DEADLINE = 50.0  # seconds for the whole test (pytest's timeout is 60)


@pytest.mark.slow
def test_hup_under_keep_alive_load_fails_no_request() -> None:
    """10 SIGHUPs while 4 keep-alive clients send requests back to back: 0 failures,
    and every worker was replaced (the clients were answered by the new ones)."""
    started = time.monotonic()
    stop = threading.Event()
    with running("tests.apps.basic:wsgi_pid", "--workers", "2", ready=2) as server:
        first = set(server.workers())
        clients = [KeepAliveClient(server, stop) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        try:
            for number in range(1, HUPS + 1):
                # Load is on before each HUP: the clients made progress since the last one.
                before = total(clients)
                assert wait_until(lambda b=before: total(clients) >= b + 50, 10), "no load"
                server.send_signal(signal.SIGHUP)
                server.wait_for("restart complete", timeout=20, count=number)
                assert time.monotonic() - started < DEADLINE, f"only {number} HUPs in time"
            last = set(server.workers())
            # The clients went on to the workers of the last generation.
            assert wait_until(lambda: all(c.pids & last for c in clients), 10), (
                [sorted(c.pids) for c in clients],
                sorted(last),
            )
        finally:
            stop.set()
            for client in clients:
                client.join(10)
        failures = [failure for client in clients for failure in client.failures]
        assert failures == [], (
            f"{len(failures)} of {total(clients)} requests failed: {failures[:5]}"
        )
        assert not first & last, "the first workers still serve"
        assert sum(client.reconnects for client in clients) >= HUPS  # told to go, and went
        assert all(not client.is_alive() for client in clients)


def test_a_retired_worker_holding_idle_connections_gets_no_new_client() -> None:
    """TTOU retires a worker whose idle keep-alive connections keep it draining (up to
    keepalive_timeout, 30 s here). Meanwhile every new client is served by the other
    worker: the retired slot's socket leaves the kernel's set when its worker stops
    accepting, not when it exits (before, clients queued on it waited there)."""
    with running(
        "tests.apps.basic:wsgi_pid", "-w", "2", "--keepalive-timeout", "30", ready=2
    ) as server:
        idle = []
        for _ in range(8):  # over 8 connections, both workers hold some (kernel hash)
            conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
            conn.request("GET", "/")
            conn.getresponse().read()
            idle.append(conn)
        try:
            server.send_signal(signal.SIGTTOU)
            server.wait_for(r"retiring slot 1")
            server.wait_for(r"stopping \(graceful\)")
            for _ in range(40):  # fresh connections, each must be answered promptly
                conn = http.client.HTTPConnection(server.host, server.port, timeout=3)
                conn.request("GET", "/")
                assert conn.getresponse().status == 200
                conn.close()
        finally:
            for conn in idle:
                conn.close()
        server.wait_for(r"worker \d+ \(slot 1\) stopped after")

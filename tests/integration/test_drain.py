"""Graceful stop loses nothing: queued and freshly accepted connections are served."""

from __future__ import annotations

import contextlib
import os
import signal
import socket

import pytest

from tests.helpers import running, wait_until
from tests.helpers.wire import read_by_server, read_until_closed, server_inode

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("app", ["tests.apps.basic:wsgi_pid", "tests.apps.basic:asgi_pid"])
def test_queued_connections_are_served_after_term(app: str) -> None:
    """Connections waiting in the accept queue when TERM arrives get their response."""
    with running(app, "--workers", "2", ready=2) as server:
        workers = server.workers()
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # frozen workers: connections queue in the kernel
        with contextlib.ExitStack() as stack:
            clients = []
            try:
                for _ in range(6):
                    sock = socket.create_connection((server.host, server.port), timeout=15)
                    stack.enter_context(sock)
                    sock.sendall(REQUEST)
                    clients.append(sock)
                server.send_signal(signal.SIGTERM)
                # Logged once the workers have been sent TERM: they see it on resuming,
                # before they read the queued requests.
                server.wait_for("graceful stop")
            finally:
                for pid in workers:
                    os.kill(pid, signal.SIGCONT)
            for sock in clients:
                response = read_until_closed(sock, 15)
                assert response.startswith(b"HTTP/1.1 200 "), response
                assert b"connection: close" in response.lower()
        assert server.wait_exit() == 0


def test_fresh_connection_gets_its_first_request_served_during_drain() -> None:
    """A connection accepted before TERM but silent until after it is still answered."""
    with running("tests.apps.basic:wsgi_pid", "--workers", "2", ready=2) as server:
        idle = socket.create_connection((server.host, server.port), timeout=15)
        busy = socket.create_connection((server.host, server.port), timeout=15)
        busy.sendall(b"GET /sleep?1 HTTP/1.1\r\nHost: x\r\n\r\n")
        # Both connections are accepted (a worker holds the server's end of each), and the
        # slow request has been read by its worker.
        assert wait_until(lambda: server_inode(idle) and read_by_server(busy), 5)
        server.send_signal(signal.SIGTERM)
        server.wait_for("stopping \\(graceful\\)")
        with idle:
            idle.sendall(REQUEST)
            response = read_until_closed(idle, 15)
        assert response.startswith(b"HTTP/1.1 200 "), response
        with busy:
            assert read_until_closed(busy, 15).startswith(b"HTTP/1.1 200 ")
        assert server.wait_exit() == 0


def test_new_connections_are_refused_after_stop() -> None:
    """Once the server has exited, connecting is refused, not hung."""
    with running("tests.apps.basic:wsgi_pid", "--workers", "2", ready=2) as server:
        host, port = server.host, server.port
        server.send_signal(signal.SIGTERM)
        assert server.wait_exit() == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=5)

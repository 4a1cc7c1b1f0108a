"""Flow control, measured: a worker's memory stays flat when the app does not read the
request body, and when the client does not read the response.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.helpers import Server, running, wait_until
from tests.helpers.memory import MIB, rss
from tests.helpers.wire import get, read_by_server

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

WSGI = "tests.apps.http_apps:wsgi_app"
ASGI = "tests.apps.http_apps:asgi_app"
BOTH = pytest.mark.parametrize("app", [WSGI, ASGI], ids=["wsgi", "asgi"])
# Kernel socket buffers on loopback can hold a few MiB each way; the server may buffer
# about 256 KiB of body and one write of response. Anything past this is a leak.
BOUND = 24 * MIB


def push(sock: socket.socket, seconds: float) -> int:
    """Send zeros for `seconds` without blocking; return how many bytes the server took."""
    sock.setblocking(False)
    block = bytes(256 * 1024)
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sent += sock.send(block)
        except BlockingIOError:
            time.sleep(0.01)
    return sent


def warm(server: Server) -> int:
    """RSS after one ordinary request (imports and buffers settled); fails unless the
    request is answered 200."""
    status, body = get(server, "/hello")
    assert status == 200, body[:200]
    return rss(server.pid)


@BOTH
@pytest.mark.slow
def test_upload_to_an_app_that_does_not_read(app: str) -> None:
    """A 1 GiB upload to an app that sleeps: the server stops reading; memory stays flat."""
    with running(app, "--workers", "1", "--max-body-size", "0", ready=1) as server:
        before = warm(server)
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /sleep?s=4 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (1 << 30)
            )
            taken = push(sock, 3.0)
            grown = rss(server.pid) - before
        assert taken < BOUND, f"the server read {taken / MIB:.1f} MiB the app never asked for"
        assert grown < BOUND, f"worker memory grew {grown / MIB:.1f} MiB"
        assert warm(server) > 0  # still serving


@BOTH
@pytest.mark.slow
def test_response_to_a_client_that_does_not_read(app: str) -> None:
    """A 1.3 GB streamed response to a client that never reads: the app is held back."""
    with running(app, "--workers", "1", ready=1) as server:
        before = warm(server)
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(b"GET /stream?n=20000&size=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(3.0)  # the buffers fill (no event says "full"); the app must be held
            grown = rss(server.pid) - before
        assert grown < BOUND, f"worker memory grew {grown / MIB:.1f} MiB"
        assert warm(server) > 0


@pytest.mark.parametrize(
    "target", ["/file?path={big}", "/stream?n=5000&size=65536"], ids=["sendfile", "stream"]
)
def test_client_that_never_reads_is_dropped_after_send_timeout(target: str, tmp_path: Path) -> None:
    """With one WSGI thread, a client that never reads would hold it forever: after
    --send-timeout the connection is dropped and the thread serves the next client."""
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(256 * MIB)  # sparse
    args = ("--workers", "1", "--threads", "1", "--send-timeout", "1")
    with running(WSGI, *args, ready=1) as server:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            path = target.format(big=big)
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
            # Read by the worker, so handed to the one thread before the next request is.
            assert wait_until(lambda: read_by_server(sock), 5)
            started = time.monotonic()
            assert warm(server) > 0  # served: the thread was freed
            assert time.monotonic() - started < 5
        server.wait_for("read nothing")

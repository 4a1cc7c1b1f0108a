"""Limits and timeouts: each broken limit gets its status and a close; the worker serves on."""

from __future__ import annotations

import socket
import time

import pytest

from tests.helpers import Server, http_get, running
from tests.helpers.wire import exchange, get

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

APPS = pytest.mark.parametrize("app", ["tests.apps.basic:wsgi_pid", "tests.apps.basic:asgi_pid"])


def assert_refused(server: Server, data: bytes, status: int) -> None:
    """`data` gets `status` and a closed connection; the next client is served."""
    reply = exchange(server, data)
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:200]
    assert b"connection: close" in reply.lower()
    assert http_get(server.url).status_code == 200


@APPS
def test_request_line_too_long_is_414(app: str) -> None:
    """A target longer than limit_request_line gets 414."""
    with running(app, "--limit-request-line", "1024", ready=1) as server:
        target = b"/" + b"a" * 1100
        assert_refused(server, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414)
        ok = exchange(
            server, b"GET /" + b"a" * 900 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert ok.startswith(b"HTTP/1.1 200 ")


@APPS
def test_too_many_header_fields_is_431(app: str) -> None:
    """More header fields than limit_request_fields gets 431."""
    with running(app, "--limit-request-fields", "20", ready=1) as server:
        headers = b"".join(b"X-H%d: v\r\n" % n for n in range(21))
        assert_refused(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n", 431)


@APPS
def test_header_field_too_large_is_431(app: str) -> None:
    """A field longer than limit_request_field_size gets 431, even when the head arrives whole."""
    with running(app, "--limit-request-field-size", "2000", ready=1) as server:
        big = b"X-Big: " + b"v" * 2100 + b"\r\n"
        assert_refused(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n", 431)


@APPS
def test_huge_content_length_is_413_before_the_body(app: str) -> None:
    """A 1 GiB Content-Length gets 413 at once: the server does not wait for the body."""
    with running(app, ready=1) as server:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"
        started = time.monotonic()
        assert_refused(server, head, 413)
        assert time.monotonic() - started < 3


@APPS
def test_chunked_body_over_the_limit_is_413(app: str) -> None:
    """A chunked body that grows past max_body_size is cut off with 413."""
    with running(app, "--max-body-size", "1000", ready=1) as server:
        chunks = b"".join(b"100\r\n" + b"x" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
        head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        assert_refused(server, head + chunks, 413)
        small = b"100\r\n" + b"x" * 256 + b"\r\n0\r\n\r\n"
        reply = exchange(
            server, head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + small
        )
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]


@pytest.mark.slow
@APPS
def test_slowloris_gets_408_within_header_timeout(app: str) -> None:
    """A head trickled one byte at a time is cut off after header_timeout with 408."""
    with running(app, "--header-timeout", "1", ready=1) as server:
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            started = time.monotonic()
            reply = b""
            for byte in request:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.05)  # a slow client: one byte every 50 ms (not a wait for the server)
                sock.setblocking(False)
                try:
                    reply += sock.recv(65536)
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
                if reply or time.monotonic() - started > 4:
                    break
            sock.settimeout(3)
            try:
                reply += sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                pass
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert 0.8 < time.monotonic() - started < 3.5
        assert http_get(server.url).status_code == 200


def test_worker_connections_pauses_accepting() -> None:
    """At worker_connections the worker stops accepting; a close lets the next one in."""
    with running("tests.apps.basic:wsgi_pid", "--worker-connections", "5", ready=1) as server:
        held = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(5)]
        try:
            server.wait_for(r"worker_connections \(5\) reached")
            with socket.create_connection((server.host, server.port), timeout=5) as waiting:
                waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                waiting.settimeout(1.0)
                with pytest.raises(TimeoutError):
                    waiting.recv(100)  # queued in the kernel, not accepted
                held.pop().close()
                waiting.settimeout(5)
                assert waiting.recv(100).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in held:
                sock.close()
        server.wait_for("accepting connections again")


@pytest.mark.slow
def test_two_thousand_idle_connections_do_not_block_a_new_client() -> None:
    """2,000 idle connections to one worker; a new client is still served at once."""
    with running("tests.apps.basic:asgi_pid", ready=1) as server:
        idle = []
        try:
            for _ in range(2000):
                idle.append(socket.create_connection((server.host, server.port), timeout=5))
            started = time.monotonic()
            assert http_get(server.url).status_code == 200
            assert time.monotonic() - started < 2
        finally:
            for sock in idle:
                sock.close()


def test_open_files_limit_is_raised_for_worker_connections() -> None:
    """A soft open-files limit below worker_connections is raised (up to the hard one)."""
    import shutil
    import subprocess
    import sys

    from tests.helpers import REPO

    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    cmd = [
        "prlimit", "--nofile=256:2000", sys.executable, "-m", "gunrunner",
        "tests.apps.basic:wsgi_pid", "--bind", "127.0.0.1:0", "--worker-connections", "1000",
        "--check-config",
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "raised the open-files limit from 256 to 1064" in result.stderr
    cmd[1] = "--nofile=256:512"
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert "open-files limit 512 is below what worker_connections needs (1064)" in result.stderr


@pytest.mark.parametrize(
    ("app", "path"),
    [("tests.apps.http_apps:wsgi_app", "/environ"), ("tests.apps.http_apps:asgi_app", "/scope")],
    ids=["wsgi", "asgi"],
)
def test_body_that_stops_arriving_gets_408(app: str, path: str) -> None:
    """--body-timeout: a client that stops mid-body frees the app (and its thread)."""
    with running(app, "--workers", "1", "--body-timeout", "1", ready=1) as server:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(
                b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"
                % path.encode()
            )
            started = time.monotonic()
            answer = sock.recv(65536)
            waited = time.monotonic() - started
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert sock.recv(65536) == b""  # and closed
        assert 0.8 < waited < 5, waited
        assert http_get(server.url, "/hello").status_code == 200
        assert get(server, "/marker?after-408")[0] == 200
        server.assert_no_errors_before("app marker: after-408", alarms=("Traceback",))

"""Files and trailers: WSGI `wsgi.file_wrapper`, ASGI `http.response.pathsend` and
`http.response.trailers`, over plain TCP (sendfile(2)) and TLS (bounded copies).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import h11
import httpx
import pytest
import trustme

from tests.helpers import Server, running

WSGI = "tests.apps.http_apps:wsgi_app"
ASGI = "tests.apps.http_apps:asgi_app"
FILE_SIZE = 5 * 1024 * 1024 + 123  # not a multiple of any block size


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunked: bool = False


def exchange(
    sock: socket.socket,
    target: str,
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    http10: bool = False,
) -> Response:
    """Send one request on `sock` and read its response with an h11 client."""
    if http10:  # h11 only writes HTTP/1.1 requests; an HTTP/1.0 response ends at the close
        sent = [f"{k}: {v}\r\n" for k, v in [("Host", "x"), *(headers or [])]]
        sock.sendall(f"{method} {target} HTTP/1.0\r\n{''.join(sent)}\r\n".encode())
        received = b""
        while chunk := sock.recv(1 << 20):
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
        return Response(int(lines[0].split()[1]), fields, body)
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method=method, target=target, headers=[("Host", "x"), *(headers or [])])
    sock.sendall(conn.send(request) + conn.send(h11.EndOfMessage()))
    status, head, body, trailers = 0, {}, bytearray(), []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(1 << 20))
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            head = dict(event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            trailers = list(event.headers)
            break
        else:
            raise AssertionError(f"unexpected {event!r}")
    chunked = head.get(b"transfer-encoding") == b"chunked"
    return Response(status, head, bytes(body), trailers, chunked)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "big.bin"
    path.write_bytes(os.urandom(FILE_SIZE))
    return path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], ssl.SSLContext]:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    args = ["--certfile", str(directory / "cert.pem"), "--keyfile", str(directory / "key.pem")]
    return args, context


def connect(server: Server, context: ssl.SSLContext | None = None) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=20)
    if context is None:
        return sock
    try:
        return context.wrap_socket(sock, server_hostname=server.host)
    except BaseException:
        sock.close()
        raise


@pytest.fixture(scope="module", params=["tcp", "tls"])
def servers(
    request: pytest.FixtureRequest, tls_files: tuple[list[str], ssl.SSLContext]
) -> Iterator[tuple[Server, Server, ssl.SSLContext | None]]:
    """A WSGI and an ASGI server, plain or TLS (TLS cannot use sendfile(2): copies)."""
    extra, context = tls_files if request.param == "tls" else ([], None)
    with running(WSGI, *extra) as wsgi, running(ASGI, *extra) as asgi:
        yield wsgi, asgi, context


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- WSGI file_wrapper ---------------------------------------------------------------------


def test_file_wrapper_sends_the_whole_file(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path
) -> None:
    wsgi, _, context = servers
    with connect(wsgi, context) as sock:
        reply = exchange(sock, f"/file?path={quote(str(big_file))}")
        assert reply.status == 200
        assert reply.chunked  # no Content-Length from the app: chunked framing around it
        assert digest(reply.body) == digest(big_file.read_bytes())
        # The connection is still good for the next request.
        again = exchange(sock, f"/file?path={quote(str(big_file))}&offset=100&cl=1000")
        assert again.body == big_file.read_bytes()[100:1100]
        assert again.headers[b"content-length"] == b"1000"


def test_file_wrapper_from_position_to_end(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path
) -> None:
    wsgi, _, context = servers
    offset = FILE_SIZE - 4321
    with connect(wsgi, context) as sock:
        reply = exchange(sock, f"/file?path={quote(str(big_file))}&offset={offset}")
        assert reply.body == big_file.read_bytes()[offset:]


def test_file_wrapper_head_and_http10(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path
) -> None:
    wsgi, _, context = servers
    target = f"/file?path={quote(str(big_file))}&cl={FILE_SIZE}"
    with connect(wsgi, context) as sock:
        head = exchange(sock, target, method="HEAD")
        assert head.body == b""
        assert head.headers[b"content-length"] == str(FILE_SIZE).encode()
        assert exchange(sock, target).body == big_file.read_bytes()
    with connect(wsgi, context) as sock:  # HTTP/1.0: the close ends the body
        reply = exchange(sock, f"/file?path={quote(str(big_file))}", http10=True)
        assert not reply.chunked
        assert digest(reply.body) == digest(big_file.read_bytes())


def test_file_wrapper_over_a_non_file_is_iterated(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path
) -> None:
    wsgi, _, context = servers
    with connect(wsgi, context) as sock:
        reply = exchange(sock, f"/file?path={quote(str(big_file))}&wrap=pipe&offset=7")
        assert reply.body == big_file.read_bytes()[7:]


def test_file_wrapper_content_length_above_the_file_closes(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path
) -> None:
    """The app promised more than the file holds: never a response that looks complete."""
    wsgi, _, context = servers
    with connect(wsgi, context) as sock:
        conn = h11.Connection(h11.CLIENT)
        target = f"/file?path={quote(str(big_file))}&offset={FILE_SIZE - 10}&cl=50"
        sock.sendall(
            conn.send(h11.Request(method="GET", target=target, headers=[("Host", "x")]))
            + conn.send(h11.EndOfMessage())
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert b"content-length: 50" in head.lower()
        assert len(body) == 10  # what the file had; then the connection closed
    wsgi.wait_for("invalid response from the app")
    with connect(wsgi, context) as sock:
        assert exchange(sock, "/hello").status == 200


# -- ASGI pathsend -------------------------------------------------------------------------------


@pytest.mark.parametrize("with_length", [False, True], ids=["chunked", "content-length"])
def test_pathsend_sends_the_file(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path, with_length: bool
) -> None:
    _, asgi, context = servers
    target = f"/pathsend?path={quote(str(big_file))}" + ("&cl=1" if with_length else "")
    with connect(asgi, context) as sock:
        reply = exchange(sock, target)
        assert reply.status == 200
        assert reply.chunked is not with_length
        assert digest(reply.body) == digest(big_file.read_bytes())
        head = exchange(sock, target, method="HEAD")
        assert head.body == b""
        assert exchange(sock, "/hello").status == 200


def test_pathsend_extension_is_advertised() -> None:
    with running(ASGI) as server:
        extensions = httpx.get(f"{server.url}/scope", timeout=10).json()["extensions"]
    assert "http.response.pathsend" in extensions
    assert "http.response.trailers" in extensions


def test_pathsend_of_a_missing_or_relative_path_is_500(tmp_path: Path) -> None:
    with running(ASGI) as server:
        for path in (str(tmp_path / "missing.bin"), "relative/file.bin"):
            reply = httpx.get(f"{server.url}/pathsend", params={"path": path}, timeout=10)
            assert reply.status_code == 500
        server.wait_for("needs an absolute path")
        server.wait_for("FileNotFoundError")
        assert httpx.get(f"{server.url}/hello", timeout=10).status_code == 200


def test_client_gone_mid_file_leaves_the_worker_serving(
    big_file: Path, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:  # sparse: large on paper, cheap on disk
        f.truncate(512 * 1024 * 1024)
    for app, target in ((WSGI, "/file"), (ASGI, "/pathsend")):
        with running(app, "--workers", "1") as server:
            with connect(server) as sock:
                request = f"GET {target}?path={quote(str(huge))} HTTP/1.1\r\nHost: x\r\n\r\n"
                sock.sendall(request.encode())
                assert sock.recv(65536)  # the response started
                # Close with a reset, as a client that crashed would.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            time.sleep(0.2)
            with connect(server) as sock:
                assert exchange(sock, "/hello").status == 200
            assert "Traceback" not in server.log()


def test_plain_tcp_uses_sendfile(big_file: Path) -> None:
    """On plain TCP the bytes go by sendfile(2), not through Python (seen with strace)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (.ci/run installs it)")
    for app, target in ((WSGI, "/file"), (ASGI, "/pathsend")):
        with running(app, "--workers", "1") as server:
            trace = subprocess.Popen(
                [strace, "-f", "-e", "trace=sendfile", "-p", str(server.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                if not _attached(trace):
                    pytest.skip("strace cannot attach here (ptrace not permitted)")
                with connect(server) as sock:
                    reply = exchange(sock, f"{target}?path={quote(str(big_file))}")
                assert digest(reply.body) == digest(big_file.read_bytes())
            finally:
                trace.terminate()
                _, err = trace.communicate(timeout=10)
            assert "sendfile(" in err, err[-2000:]


def _attached(trace: subprocess.Popen[str]) -> bool:
    """strace is still running after a moment (it exits at once when it cannot attach)."""
    time.sleep(0.5)
    return trace.poll() is None


# -- ASGI trailers -------------------------------------------------------------------------------


TE = [("TE", "trailers")]


@pytest.mark.parametrize("parts", [0, 1, 3])
def test_trailers_sent_when_the_client_accepts_them(
    servers: tuple[Server, Server, ssl.SSLContext | None], parts: int
) -> None:
    _, asgi, context = servers
    body = b"".join(b"part %d\n" % i for i in range(parts))
    with connect(asgi, context) as sock:
        reply = exchange(sock, f"/trailers?parts={parts}", headers=TE)
        assert reply.chunked
        assert reply.body == body
        assert reply.trailers == [
            (b"x-digest", digest(body).encode()),
            (b"x-count", str(parts).encode()),
        ]
        assert exchange(sock, "/hello").status == 200  # keep-alive survives


def test_trailers_dropped_without_te_or_with_content_length(
    servers: tuple[Server, Server, ssl.SSLContext | None],
) -> None:
    _, asgi, context = servers
    with connect(asgi, context) as sock:
        plain = exchange(sock, "/trailers?parts=2")
        assert plain.body == b"part 0\npart 1\n" and plain.trailers == []
        sized = exchange(sock, "/trailers?parts=2&cl=1", headers=TE)
        assert not sized.chunked and sized.trailers == []
        assert sized.body == b"part 0\npart 1\n"
    with connect(asgi, context) as sock:
        old = exchange(sock, "/trailers?parts=2", headers=TE, http10=True)
        assert old.body == b"part 0\npart 1\n" and old.trailers == []


def test_invalid_trailer_closes_the_connection() -> None:
    """A trailer h11 refuses (a newline in its value): logged, and the connection closed,
    not left hanging with an unfinished chunked body."""
    with running(ASGI) as server, connect(server) as sock:
        sock.sendall(b"GET /bad-trailer HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # the 20 s socket timeout fails a hang
            received += chunk
        assert b"hello" in received
        assert not received.endswith(b"0\r\n\r\n")
        server.wait_for("invalid response from the app")


def test_client_bytes_do_not_cut_a_closing_response() -> None:
    """Connection: close from the app, then the client pipelines another request while
    the body streams: the body still arrives whole, the extra request is ignored."""
    with running(ASGI) as server, connect(server) as sock:
        sock.sendall(b"GET /close-stream HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        assert received.endswith(b"0\r\n\r\n"), received[-80:]
        assert received.count(b"HTTP/1.1 ") == 1
        for i in range(5):
            assert b"c%d\n" % i in received

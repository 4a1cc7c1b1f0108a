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
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import trustme

from tests.helpers import Server, running, wait_until
from tests.helpers.wire import Client, Reply, read_head, read_until_closed

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

WSGI = "tests.apps.http_apps:wsgi_app"
ASGI = "tests.apps.http_apps:asgi_app"
FILE_SIZE = 5 * 1024 * 1024 + 123  # not a multiple of any block size


def http10(client: Client, target: str, headers: list[tuple[str, str]] | None = None) -> Reply:
    """An HTTP/1.0 GET (h11 only writes HTTP/1.1); its response ends at the close."""
    fields = "".join(f"{k}: {v}\r\n" for k, v in [("Host", "x"), *(headers or [])])
    client.send(f"GET {target} HTTP/1.0\r\n{fields}\r\n".encode())
    return client.expect_response()


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


def connect(server: Server, context: ssl.SSLContext | None = None) -> Client:
    """A connection, plain or TLS; responses are read by the h11 client of wire.py."""
    sock = socket.create_connection((server.host, server.port), timeout=20)
    if context is None:
        return Client(sock)
    try:
        return Client(context.wrap_socket(sock, server_hostname=server.host))
    except BaseException:
        sock.close()
        raise


@pytest.fixture(scope="module", params=["tcp", "tls"])
def servers(
    request: pytest.FixtureRequest,
    tls_files: tuple[list[str], ssl.SSLContext],
    http_driver: tuple[str, ...],
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
    with connect(wsgi, context) as client:
        reply = client.request("GET", f"/file?path={quote(str(big_file))}")
        assert reply.status == 200
        assert reply.chunked  # no Content-Length from the app: chunked framing around it
        assert digest(reply.body) == digest(big_file.read_bytes())
        # The connection is still good for the next request.
        again = client.request("GET", f"/file?path={quote(str(big_file))}&offset=100&cl=1000")
        assert again.body == big_file.read_bytes()[100:1100]
        assert again.header(b"content-length") == b"1000"


def test_file_wrapper_from_position_to_end(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path
) -> None:
    wsgi, _, context = servers
    offset = FILE_SIZE - 4321
    with connect(wsgi, context) as client:
        reply = client.request("GET", f"/file?path={quote(str(big_file))}&offset={offset}")
        assert reply.body == big_file.read_bytes()[offset:]


def test_file_wrapper_head_and_http10(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path
) -> None:
    wsgi, _, context = servers
    target = f"/file?path={quote(str(big_file))}&cl={FILE_SIZE}"
    with connect(wsgi, context) as client:
        head = client.request("HEAD", target)
        assert head.body == b""
        assert head.header(b"content-length") == str(FILE_SIZE).encode()
        assert client.request("GET", target).body == big_file.read_bytes()
    with connect(wsgi, context) as client:  # HTTP/1.0: the close ends the body
        reply = http10(client, f"/file?path={quote(str(big_file))}")
        assert not reply.chunked
        assert digest(reply.body) == digest(big_file.read_bytes())


def test_file_wrapper_over_a_non_file_is_iterated(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path
) -> None:
    wsgi, _, context = servers
    with connect(wsgi, context) as client:
        reply = client.request("GET", f"/file?path={quote(str(big_file))}&wrap=pipe&offset=7")
        assert reply.body == big_file.read_bytes()[7:]


def test_file_wrapper_content_length_above_the_file_closes(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path
) -> None:
    """The app promised more than the file holds: never a response that looks complete."""
    wsgi, _, context = servers
    with connect(wsgi, context) as client:
        target = f"/file?path={quote(str(big_file))}&offset={FILE_SIZE - 10}&cl=50"
        client.send_head("GET", target)
        client.send_body(b"")
        received = read_until_closed(client.sock, 20)  # raw: h11 would refuse the short body
        head, _, body = received.partition(b"\r\n\r\n")
        assert b"content-length: 50" in head.lower()
        assert len(body) == 10  # what the file had; then the connection closed
    wsgi.wait_for("invalid response from the app")
    with connect(wsgi, context) as client:
        assert client.request("GET", "/hello").status == 200


# -- ASGI pathsend -------------------------------------------------------------------------------


@pytest.mark.parametrize("with_length", [False, True], ids=["chunked", "content-length"])
def test_pathsend_sends_the_file(
    servers: tuple[Server, Server, ssl.SSLContext | None], big_file: Path, with_length: bool
) -> None:
    _, asgi, context = servers
    target = f"/pathsend?path={quote(str(big_file))}" + ("&cl=1" if with_length else "")
    with connect(asgi, context) as client:
        reply = client.request("GET", target)
        assert reply.status == 200
        assert reply.chunked is not with_length
        assert digest(reply.body) == digest(big_file.read_bytes())
        head = client.request("HEAD", target)
        assert head.body == b""
        assert client.request("GET", "/hello").status == 200


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


def test_client_gone_mid_file_leaves_the_worker_serving(big_file: Path, tmp_path: Path) -> None:
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:  # sparse: large on paper, cheap on disk
        f.truncate(512 * 1024 * 1024)
    for app, target in ((WSGI, "/file"), (ASGI, "/pathsend")):
        with running(app, "--workers", "1", "--log-level", "debug") as server:
            with connect(server) as client:
                request = f"GET {target}?path={quote(str(huge))} HTTP/1.1\r\nHost: x\r\n\r\n"
                client.send(request.encode())
                assert client.sock.recv(65536)  # the response started
                # Close with a reset, as a client that crashed would.
                client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The bridge saw the client go (DEBUG), in the very place it would have logged
            # a traceback instead.
            server.wait_for(f"client went away during GET {target}")
            with connect(server) as client:
                assert client.request("GET", "/hello").status == 200
                assert client.request("GET", "/marker?after-reset").status == 200
            server.assert_no_errors_before("app marker: after-reset", alarms=("Traceback",))


def test_plain_tcp_uses_sendfile(big_file: Path) -> None:
    """On plain TCP the bytes go by sendfile(2), not through Python (seen with strace).

    asyncio's loop has loop.sendfile(); uvloop has not (it reads and writes the file).
    """
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (.ci/run installs it)")
    for app, target in ((WSGI, "/file"), (ASGI, "/pathsend")):
        with running(app, "--workers", "1", "--loop", "asyncio") as server:
            trace = subprocess.Popen(
                [strace, "-f", "-e", "trace=sendfile", "-p", str(server.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                if not _attached(trace, server.pid):
                    pytest.skip("strace cannot attach here (ptrace not permitted)")
                with connect(server) as client:
                    reply = client.request("GET", f"{target}?path={quote(str(big_file))}")
                assert digest(reply.body) == digest(big_file.read_bytes())
            finally:
                trace.terminate()
                _, err = trace.communicate(timeout=10)
            assert "sendfile(" in err, err[-2000:]


def _attached(trace: subprocess.Popen[str], pid: int) -> bool:
    """strace traces `pid` now (its TracerPid), or has exited because it cannot attach."""

    def tracer() -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
        return 0

    assert wait_until(lambda: trace.poll() is not None or tracer() == trace.pid, 10)
    return trace.poll() is None


# -- ASGI trailers -------------------------------------------------------------------------------


TE = [("TE", "trailers")]


@pytest.mark.parametrize("parts", [0, 1, 3])
def test_trailers_sent_when_the_client_accepts_them(
    servers: tuple[Server, Server, ssl.SSLContext | None], parts: int
) -> None:
    _, asgi, context = servers
    body = b"".join(b"part %d\n" % i for i in range(parts))
    with connect(asgi, context) as client:
        reply = client.request("GET", f"/trailers?parts={parts}", TE)
        assert reply.chunked
        assert reply.body == body
        assert reply.trailers == [
            (b"x-digest", digest(body).encode()),
            (b"x-count", str(parts).encode()),
        ]
        assert client.request("GET", "/hello").status == 200  # keep-alive survives


def test_trailers_dropped_without_te_or_with_content_length(
    servers: tuple[Server, Server, ssl.SSLContext | None],
) -> None:
    _, asgi, context = servers
    with connect(asgi, context) as client:
        plain = client.request("GET", "/trailers?parts=2")
        assert plain.body == b"part 0\npart 1\n" and plain.trailers == []
        sized = client.request("GET", "/trailers?parts=2&cl=1", TE)
        assert not sized.chunked and sized.trailers == []
        assert sized.body == b"part 0\npart 1\n"
    with connect(asgi, context) as client:
        old = http10(client, "/trailers?parts=2", TE)
        assert old.body == b"part 0\npart 1\n" and old.trailers == []


def test_invalid_trailer_closes_the_connection() -> None:
    """A trailer h11 refuses (a newline in its value): logged, and the connection closed,
    not left hanging with an unfinished chunked body."""
    with running(ASGI) as server, connect(server) as client:
        client.send(b"GET /bad-trailer HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n")
        received = read_until_closed(client.sock, 20)  # raw: the chunked body never ends
        assert b"hello" in received
        assert not received.endswith(b"0\r\n\r\n")
        server.wait_for("invalid response from the app")


def test_client_bytes_do_not_cut_a_closing_response() -> None:
    """Connection: close from the app, then the client pipelines another request while
    the body streams: the body still arrives whole, the extra request is ignored."""
    with running(ASGI) as server, connect(server) as client:
        client.send(b"GET /close-stream HTTP/1.1\r\nHost: x\r\n\r\n")
        received = read_head(client.sock, 20)  # the body streams now, a chunk every 0.2 s
        client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        received += read_until_closed(client.sock, 20)  # raw: count the status lines
        assert received.endswith(b"0\r\n\r\n"), received[-80:]
        assert received.count(b"HTTP/1.1 ") == 1
        for i in range(5):
            assert b"c%d\n" % i in received

"""The one raw-socket HTTP/1.1 client of the integration tests; responses framed by h11.

A test either writes the exact request bytes it means (hand-written, broken, pipelined,
cut into pieces: `Client.send`) or lets h11 build them (`Client.request`, `send_head` and
`send_body`). Whatever went out, the responses are parsed by an h11 client, so a test
sees each status, header, body and trailer exactly as the server framed it.

Rules:
1. The client never writes a byte the test did not ask for. For raw bytes the h11 client
   is told which method each response answers (a mirrored request, never sent: HEAD has
   no body); the mirror's target and headers do not matter.
2. Every read has a deadline. A server that says nothing raises `Silent` (an
   AssertionError); no test hangs until the pytest timeout.
3. A close is a result, not an error: `response()` is None when the server closed
   before a byte of the response; `closed_within()` and `expect_close()` check the close
   and that nothing came after the last response.
4. Reading until the close without parsing (`read_until_closed`, `exchange`) is for
   tests about the raw bytes; everything else goes through `Client`.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import h11

if TYPE_CHECKING:
    import httpx

    from tests.helpers.process import Server

Headers = list[tuple[bytes, bytes]]
IO_TIMEOUT = 10.0  # the default deadline of one read; far above any expected delay


def address(target: Server | tuple[str, int]) -> tuple[str, int]:
    """(host, port) of a running server, or the pair itself."""
    if isinstance(target, tuple):
        return target
    return (target.host, target.port)


# -- a parsed response ---------------------------------------------------------------------


@dataclass
class Reply:
    """One final response as the h11 client parsed it."""

    status: int
    headers: Headers
    body: bytes = b""
    reason: bytes = b""
    http_version: bytes = b"1.1"
    informational: list[int] = field(default_factory=list)  # 1xx statuses before it
    trailers: Headers = field(default_factory=list)

    @overload
    def all(self, name: str) -> list[str]: ...
    @overload
    def all(self, name: bytes) -> list[bytes]: ...
    def all(self, name: str | bytes) -> list[str] | list[bytes]:
        """Every value of the field `name` (str in, str out; bytes in, bytes out)."""
        if isinstance(name, bytes):
            return [v for n, v in self.headers if n == name.lower()]
        wanted = name.lower().encode()
        return [v.decode("latin-1") for n, v in self.headers if n == wanted]

    @overload
    def header(self, name: str) -> str | None: ...
    @overload
    def header(self, name: bytes) -> bytes | None: ...
    def header(self, name: str | bytes) -> str | bytes | None:
        """The one value of the field `name`, None if absent; two values fail the test."""
        values = self.all(name)
        assert len(values) <= 1, f"{name!r} appears {len(values)} times: {values}"
        return values[0] if values else None

    @property
    def closes(self) -> bool:
        """The response says Connection: close."""
        return b"close" in (self.header(b"connection") or b"").lower()

    @property
    def chunked(self) -> bool:
        """The body was framed by chunked transfer coding."""
        return (self.header(b"transfer-encoding") or b"").lower() == b"chunked"

    def json(self) -> Any:
        return json.loads(self.body)


class Silent(AssertionError):
    """The server sent nothing more before the deadline."""


# -- the client ----------------------------------------------------------------------------


class Client:
    """One connection (TCP or TLS): bytes out as the test wrote them, responses parsed."""

    def __init__(self, sock: socket.socket, host: str = "x", timeout: float | None = None):
        self.sock = sock
        self.parser = h11.Connection(h11.CLIENT)
        self.host = host  # the Host field of the requests h11 builds
        # The default deadline of a read; the socket's own timeout changes as we read.
        self.timeout = timeout if timeout is not None else (sock.gettimeout() or IO_TIMEOUT)
        self.received = bytearray()  # every byte the server sent, for failure messages
        self.eof = False
        self.informational: list[int] = []  # every 1xx status seen on the connection

    @classmethod
    def connect(
        cls, target: Server | tuple[str, int], timeout: float = IO_TIMEOUT, *, nodelay: bool = False
    ) -> Client:
        """A new TCP connection to `target`; h11-built requests carry its Host."""
        host, port = address(target)
        sock = socket.create_connection((host, port), timeout=timeout)
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send exactly `data`."""
        self.sock.sendall(data)

    def send_refusable(self, data: bytes) -> None:
        """Send what the server takes: it may answer and close before the rest arrives."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)

    def _request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> h11.Request:
        all_headers = [("Host", self.host), *headers]
        if body is not None and not any(n.lower() == "content-length" for n, _ in headers):
            all_headers.append(("Content-Length", str(len(body))))
        return h11.Request(method=method, target=target, headers=all_headers)

    def send_head(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> None:
        """An h11-built request head (Host first; Content-Length from `body` if given)."""
        self.sock.sendall(self.parser.send(self._request(method, target, headers or [], body)))

    def send_body(self, body: bytes) -> None:
        """The body of the request whose head went out, and its end."""
        data = self.parser.send(h11.Data(data=body)) if body else b""
        self.sock.sendall(data + self.parser.send(h11.EndOfMessage()))

    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        within: float | None = None,
    ) -> Reply:
        """A whole h11-built request and its response; the connection is ready for more."""
        self.send_head(method, target, headers, body)
        self.send_body(body or b"")
        return self.expect_response(method, within)

    # -- receiving ---------------------------------------------------------------------------

    def readable(self, timeout: float) -> bool:
        """The server has sent something (or closed) within `timeout`."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready)

    def _fill(self, deadline: float) -> bytes:
        """One recv() into the parser before `deadline` (b"": the server closed)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._silent()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise self._silent() from None
        except ConnectionResetError:
            chunk = b""
        self.received += chunk
        self.eof = not chunk
        self.parser.receive_data(chunk)
        return chunk

    def _silent(self) -> Silent:
        return Silent(f"the server sent nothing more in time; received {self._tail()!r}")

    def _tail(self, size: int = 2000) -> bytes:
        return bytes(self.received[-size:])

    def next_event(self, within: float | None = None) -> Any:
        """The next h11 event of the response (h11's errors are raised as they are)."""
        deadline = time.monotonic() + (self.timeout if within is None else within)
        while True:
            event = self.parser.next_event()
            if event is not h11.NEED_DATA:
                return event
            self._fill(deadline)

    def response(self, method: str | bytes = "GET", within: float | None = None) -> Reply | None:
        """The next final response, to a `method` request; None if the server closed first.

        1xx responses before it go to `Reply.informational`. For raw bytes the mirrored
        request is HTTP/1.1: an answer to HTTP/1.0 is framed by length or by the close,
        which an HTTP/1.1 client reads the same way.
        """
        parser = self.parser
        if parser.our_state is h11.DONE and parser.their_state is h11.DONE:
            parser.start_next_cycle()
        if parser.our_state is h11.IDLE:
            parser.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
            parser.send(h11.EndOfMessage())
        elif parser.their_state not in (h11.SEND_RESPONSE, h11.SEND_BODY):
            raise AssertionError(
                f"a response was expected, but the previous one ended the connection "
                f"(client states {parser.states}); received {self._tail()!r}"
            )
        started = len(self.received) - len(parser.trailing_data[0])
        deadline = time.monotonic() + (self.timeout if within is None else within)
        head: h11.Response | None = None
        informational: list[int] = []
        body: list[bytes] = []
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                if head is None and len(self.received) == started:
                    return None  # closed between responses
                raise AssertionError(
                    f"incomplete response or a malformed one ({exc}); "
                    f"received {bytes(self.received[started:][:2000])!r}"
                ) from None
            if event is h11.NEED_DATA:
                self._fill(deadline)
            elif isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
                self.informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                if parser.our_state is h11.DONE and parser.their_state is h11.DONE:
                    parser.start_next_cycle()
                return Reply(
                    head.status_code,
                    [(bytes(n), bytes(v)) for n, v in head.headers],
                    b"".join(body),
                    bytes(head.reason),
                    bytes(head.http_version),
                    informational,
                    [(bytes(n), bytes(v)) for n, v in event.headers],
                )
            elif isinstance(event, h11.ConnectionClosed):
                assert head is None, f"closed inside a response: {self._tail()!r}"
                return None

    def expect_response(self, method: str | bytes = "GET", within: float | None = None) -> Reply:
        """`response()`, which must not be a close."""
        reply = self.response(method, within)
        assert reply is not None, (
            f"the server closed the connection before a response; received {self._tail()!r}"
        )
        return reply

    def closed_within(self, timeout: float) -> bool:
        """The server closes (EOF or reset) within `timeout`; any byte first is a failure."""
        buffered, closed = self.parser.trailing_data
        assert not buffered, f"unexpected bytes after the response: {bytes(buffered[:300])!r}"
        if closed or self.eof:
            return True
        try:
            chunk = self._fill(time.monotonic() + timeout)
        except Silent:
            return False
        assert not chunk, f"unexpected bytes after the response: {chunk[:300]!r}"
        return True

    def expect_close(self, within: float | None = None) -> None:
        """The server closes soon and sends nothing after the last response."""
        timeout = self.timeout if within is None else within
        assert self.closed_within(timeout), (
            f"the connection was not closed within {timeout}s; received {self._tail()!r}"
        )

    def settle(self, within: float) -> None:
        """Read whatever comes until the close or until `within` seconds pass."""
        deadline = time.monotonic() + within
        with contextlib.suppress(Silent):
            while not self.eof:
                self._fill(deadline)


# -- whole exchanges and raw bytes ---------------------------------------------------------


class _Recorded:
    """A socket stand-in that hands out bytes already received, then EOF."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def gettimeout(self) -> float:
        return IO_TIMEOUT

    def settimeout(self, timeout: float) -> None:
        pass

    def recv(self, size: int) -> bytes:
        data, self.data = self.data, b""
        return data


def parse_responses(data: bytes, methods: Iterable[str | bytes]) -> list[Reply]:
    """Parse raw response bytes (ended by the close), one response per request method."""
    client = Client(_Recorded(data))  # type: ignore[arg-type]
    replies = []
    for method in methods:
        reply = client.response(method)
        assert reply is not None, f"incomplete response: none at all; got {data!r}"
        replies.append(reply)
    return replies


def read_until_closed(sock: socket.socket, timeout: float = IO_TIMEOUT) -> bytes:
    """Everything the server sends until it closes (or resets); fails if it does not."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the server did not close the connection; got {chunks!r}"
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            raise AssertionError(
                f"the server did not close the connection within {timeout}s; got {chunks!r}"
            ) from None
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True when the server closes `sock` (EOF or reset) within `timeout` seconds; bytes
    that come first are read and ignored."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if sock.recv(65536) == b"":
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def read_head(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Raw bytes up to the end of the first head the server sends (and what came with it)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def exchange(target: Server | tuple[str, int], data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a new connection; what came back before the server closed it."""
    with socket.create_connection(address(target), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock, timeout)


def raw_request(host: str, port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes (or `timeout`); what came back."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks: list[bytes] = []
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def send_request(server: Server, path: str, timeout: float = 15.0) -> socket.socket:
    """Connect and send a GET (Connection: close); the caller reads the answer."""
    sock = socket.create_connection(address(server), timeout=timeout)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
    return sock


def read_response(sock: socket.socket, timeout: float | None = None) -> tuple[int, bytes]:
    """One response read up to the server's close: (status, body)."""
    data = read_until_closed(sock, timeout or sock.gettimeout() or IO_TIMEOUT)
    (reply,) = parse_responses(data, ["GET"])
    return reply.status, reply.body


def get(server: Server, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    """One GET on a fresh connection (Connection: close): (status, body)."""
    with send_request(server, path, timeout) as sock:
        return read_response(sock)


def get_pid(server: Server, path: str = "/", timeout: float = 10.0) -> int:
    """The pid of the process that answered a GET on a fresh connection."""
    status, body = get(server, path, timeout)
    assert status == 200, body
    return int(body)


def answering_pids(
    server: Server, expected: int, attempts: int = 400, timeout: float = 10.0
) -> set[int]:
    """Pids seen over up to `attempts` fresh connections; stops once `expected` are seen."""
    seen: set[int] = set()
    for _ in range(attempts):
        seen.add(get_pid(server, timeout=timeout))
        if len(seen) >= expected:
            break
    return seen


def http_get(
    url: str, path: str = "/", timeout: float = 10.0, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A GET with httpx (a real client, for tests that need no exact framing)."""
    import httpx

    return httpx.get(url + path, timeout=timeout, headers=headers)


# -- what the server did with the bytes (/proc/net/tcp) ------------------------------------


def _tcp_entries() -> list[list[str]]:
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            rows += [line.split() for line in f.readlines()[1:]]
    return rows


def _port(field_: str) -> int:
    return int(field_.rsplit(":", 1)[1], 16)


def _server_end(sock: socket.socket) -> list[str] | None:
    """The /proc/net/tcp row of the server's end of `sock` (loopback: same table)."""
    local_port = sock.getsockname()[1]
    peer_port = sock.getpeername()[1]
    for row in _tcp_entries():
        if _port(row[1]) == peer_port and _port(row[2]) == local_port:
            return row
    return None


def read_by_server(sock: socket.socket) -> bool:
    """True once the server process has read every byte sent on `sock` (loopback only).

    Our unacknowledged bytes and the server's unread receive queue are both empty.
    """
    local_port, peer_port = sock.getsockname()[1], sock.getpeername()[1]
    ours = theirs = None
    for row in _tcp_entries():
        if _port(row[1]) == local_port and _port(row[2]) == peer_port:
            ours = row
        elif _port(row[1]) == peer_port and _port(row[2]) == local_port:
            theirs = row
    if ours is None or theirs is None:
        return False
    unacked = int(ours[4].split(":")[0], 16)
    unread = int(theirs[4].split(":")[1], 16)
    return unacked == 0 and unread == 0


def wait_read(sock: socket.socket, timeout: float = 5.0) -> None:
    """Wait until the server has read what was sent on `sock` (or already answered or
    closed): the next bytes arrive in a read of their own."""
    deadline = time.monotonic() + timeout
    while not read_by_server(sock) and not select.select([sock], [], [], 0)[0]:
        assert time.monotonic() < deadline, "the server did not read what was sent"
        time.sleep(0.002)


def server_inode(sock: socket.socket) -> int:
    """The inode of the server's end of `sock` once a process has accepted it (0: not yet)."""
    row = _server_end(sock)
    return int(row[9]) if row is not None else 0

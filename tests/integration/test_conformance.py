"""HTTP/1.1 conformance corpus: hand-written request bytes against a real server.

Three groups of cases, each run for WSGI and ASGI, with one worker (the main process
serves) and with two (forked), over every transport in TRANSPORTS:

- valid requests: the echo app (tests/apps/conformance_apps.py) must report exactly what
  was sent, and the connection must stay in step for a next request;
- invalid requests: the right status (or a quiet close), never a 2xx, never the app, and
  the same workers serve the next client;
- robustness: slow, silent, idle, vanishing and very busy clients.

One server per (interface, workers, transport), with small limits so that limit cases are
cheap. Every connection goes through `Target.open()`: a new transport (TLS) only needs
its server options in `transport_args` and its client side in `wrap`. Cases the server
gets wrong today are strict xfails whose reason names the rule they break.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import pytest
import trustme

from tests.apps.conformance_apps import FIXED
from tests.helpers import Server, start, wait_until
from tests.helpers.drivers import FAST, FAST_INSTALLED, H11
from tests.helpers.wire import Client, Reply, read_by_server, read_head, server_inode

APPS = {
    "wsgi": "tests.apps.conformance_apps:wsgi_app",
    "asgi": "tests.apps.conformance_apps:asgi_app",
}
WORKERS = (1, 2)
TRANSPORTS = ("tcp", "tls")

HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 2.0
MAX_BODY = 1_000_000
LINE_LIMIT = 1024
FIELDS_LIMIT = 30
FIELD_LIMIT = 1024
HEAD_LIMIT = 8192
SERVER_ARGS = (
    "--header-timeout", str(HEADER_TIMEOUT),
    "--keepalive-timeout", str(KEEPALIVE_TIMEOUT),
    "--max-body-size", str(MAX_BODY),
    "--limit-request-line", str(LINE_LIMIT),
    "--limit-request-fields", str(FIELDS_LIMIT),
    "--limit-request-field-size", str(FIELD_LIMIT),
    "--limit-request-head-size", str(HEAD_LIMIT),
    "--graceful-timeout", "3",
)  # fmt: skip
# What no client, however broken, may make the server log.
LOG_ALARMS = ("Traceback", " ERROR ", " CRITICAL ", " WARNING ")
FOLLOW_UP = "/follow-up"
# The path of the refused requests whose head is valid but whose body is broken.
BROKEN_BODY = "/chunks"


# -- transports ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSMaterial:
    """A test CA's server certificate files and a client context that trusts the CA."""

    certfile: Path
    keyfile: Path
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    directory = tmp_path_factory.mktemp("conformance-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return TLSMaterial(directory / "cert.pem", directory / "key.pem", client)


def transport_args(transport: str, tls: TLSMaterial) -> tuple[str, ...]:
    """Server options a transport needs (TLS: its certificate and key)."""
    if transport == "tcp":
        return ()
    if transport == "tls":
        return ("--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile))
    raise ValueError(f"unknown transport {transport!r}")


def wrap(sock: socket.socket, transport: str, tls: TLSMaterial) -> socket.socket:
    """The client side of `transport` around a connected TCP socket."""
    if transport == "tcp":
        return sock
    if transport == "tls":
        return tls.client.wrap_socket(sock, server_hostname="127.0.0.1")
    raise ValueError(f"unknown transport {transport!r}")


@dataclass(frozen=True)
class Checkpoint:
    """Where the hits file and the server log ended when a case began."""

    hits: int
    log: int


@dataclass
class Target:
    """One running server of the matrix, and how to reach it."""

    server: Server
    interface: str
    workers: int
    transport: str
    tls: TLSMaterial
    hits_path: Path
    pids: frozenset[int]  # the processes that serve requests
    children: frozenset[int]  # the arbiter's children at start (none with one worker)

    def open(self, timeout: float = 5.0) -> socket.socket:
        """A new client socket, through the transport."""
        sock = socket.create_connection((self.server.host, self.server.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return wrap(sock, self.transport, self.tls)
        except BaseException:
            sock.close()
            raise

    @contextlib.contextmanager
    def connect(self, timeout: float = 5.0) -> Iterator[Client]:
        """A connection that is closed whatever happens (ResourceWarnings are errors).

        Bytes go out exactly as a case wrote them; responses are framed by the h11 client
        of tests/helpers/wire.py, which is told the method of each (HEAD has no body).
        """
        sock = self.open(timeout)
        try:
            yield Client(sock)
        finally:
            sock.close()

    def checkpoint(self) -> Checkpoint:
        """Mark the present, so that a case looks only at what happened after it."""
        hits = self.hits_path.stat().st_size if self.hits_path.exists() else 0
        return Checkpoint(hits, self.server.log_path.stat().st_size)

    def hits(self, since: Checkpoint) -> list[dict[str, Any]]:
        """The app's records since `since` (whole lines only: a worker may be writing)."""
        if not self.hits_path.exists():
            return []
        with self.hits_path.open("rb") as f:
            f.seek(since.hits)
            data = f.read()
        return [json.loads(line) for line in data.split(b"\n")[:-1]]

    def wait_hit(self, since: Checkpoint, token: str, phases: Sequence[str]) -> dict[str, Any]:
        """The first record of `token` in one of `phases` (the app runs concurrently)."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [
                h for h in self.hits(since) if h.get("query") == token and h["phase"] in phases
            ]
            return bool(found)

        assert wait_until(seen, timeout=5), f"no {phases} record for {token}: {self.hits(since)}"
        return found[0]

    def log_since(self, since: Checkpoint) -> str:
        """The server's log lines written after `since`."""
        with self.server.log_path.open("rb") as f:
            f.seek(since.log)
            return f.read().decode(errors="replace")

    def assert_serves_on(
        self,
        since: Checkpoint,
        entered: Sequence[str] | None = (),
        maybe: Sequence[str] = (),
    ) -> None:
        """A new client is served by the same workers, and nothing alarming was logged.

        Since `since`, the app must have been called for exactly the paths `entered`
        (None: unchecked), plus perhaps those in `maybe`, which must not have read a
        complete body: a request whose head is valid reaches the app before its body
        does, so a broken body can only show up as a read error there.
        """
        token = uuid.uuid4().hex
        with self.connect() as conn:
            conn.send(
                b"GET %s?%s HTTP/1.1\r\nHost: x\r\n\r\n" % (FOLLOW_UP.encode(), token.encode())
            )
            reply = conn.response()
        assert reply is not None, "the next client got no answer"
        assert reply.status == 200, reply
        assert reply.json()["pid"] in self.pids, "answered by a new worker"
        assert self.server.proc.poll() is None, "the server exited"
        assert frozenset(self.server.workers()) == self.children, "workers were replaced"
        hits = self.hits(since)
        if entered is not None:
            paths = [h["path"] for h in hits if h["phase"] == "enter" and h["path"] not in maybe]
            assert paths == [*entered, FOLLOW_UP], f"requests that reached the app: {hits}"
        completed = [h for h in hits if h["phase"] == "done" and h["path"] in maybe]
        assert not completed, f"a broken body was read as complete: {completed}"
        log = self.log_since(since)
        assert not any(alarm in log for alarm in LOG_ALARMS), log


MATRIX = [
    pytest.param(
        (interface, workers, transport, driver),
        id=f"{name}-{interface}-w{workers}-{transport}",
        marks=skip,
    )
    for name, driver, skip in (
        ("h11", H11, ()),
        ("fast", FAST, pytest.mark.skipif(not FAST_INSTALLED, reason="pip install -e '.[fast]'")),
    )
    for interface in APPS
    for workers in WORKERS
    for transport in TRANSPORTS
]


@pytest.fixture(scope="module", params=MATRIX)
def target(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls_material: TLSMaterial,
) -> Iterator[Target]:
    """One server per (interface, workers, transport) for the whole module: booting is slow."""
    interface, workers, transport, driver = request.param
    hits_path = tmp_path_factory.mktemp("conformance") / "hits.jsonl"
    server = start(
        APPS[interface],
        "--workers", str(workers),
        *SERVER_ARGS,
        *transport_args(transport, tls_material),
        *driver,
        ready=workers,
        env={"CONFORMANCE_HITS": str(hits_path)},
    )  # fmt: skip
    try:
        children = frozenset(server.workers())
        pids = children if workers > 1 else frozenset({server.pid})
        assert len(pids) == workers
        yield Target(server, interface, workers, transport, tls_material, hits_path, pids, children)
    finally:
        try:
            server.stop()
        finally:
            hits_path.unlink(missing_ok=True)


# -- helpers for the cases -----------------------------------------------------------------


def half_close(sock: socket.socket) -> None:
    """Stop sending: TCP's FIN, or under TLS a close_notify first (then raw TCP reads)."""
    if isinstance(sock, ssl.SSLSocket):
        with contextlib.suppress(OSError):
            sock.unwrap()
        return
    sock.shutdown(socket.SHUT_WR)


def req(*lines: bytes, body: bytes = b"") -> bytes:
    """Hand-written request lines, each ended by CRLF, the empty line, then the body."""
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


def chunked(*chunks: bytes) -> bytes:
    """A chunked body of `chunks` (sizes in lower-case hex), the last chunk, no trailers."""
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def wsgi_headers(headers: Sequence[tuple[str, str]]) -> list[list[str]]:
    """The environ keys PEP 3333 (CGI) derives from request header fields, in order.

    Repeats are joined with ", " ("; " for Cookie); names with "_" are dropped (they
    would alias the dashed name: a header-spoofing vector behind proxies).
    """
    merged: dict[str, str] = {}
    for name, value in headers:
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        elif "_" in name:
            continue
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if key in merged and key.startswith("HTTP_"):
            merged[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
        else:
            merged[key] = value
    return [[key, value] for key, value in merged.items()]


@dataclass(frozen=True)
class Sees:
    """What the app must report for a valid request (ASGI terms; WSGI derived)."""

    method: str = "GET"
    path: str = "/"
    raw_path: str | None = None  # ASGI raw_path; None: the same as path
    wsgi_path: str | None = None  # PATH_INFO (bytes as latin-1); None: the same as path
    query: str = ""
    headers: tuple[tuple[str, str], ...] = (("host", "x"),)
    body: bytes = b""
    protocol: str = "HTTP/1.1"
    closes: bool = False  # the server must answer with Connection: close and close


def assert_sees(target: Target, reply: Reply, sees: Sees) -> None:
    """The echo in `reply` is what `sees` says, in the terms of the target's interface."""
    wsgi = target.interface == "wsgi"
    try:
        got = reply.json()
    except ValueError:
        raise AssertionError(f"not an echo: {reply}") from None
    expected = {
        "interface": target.interface,
        "method": sees.method,
        "path": sees.wsgi_path if wsgi and sees.wsgi_path is not None else sees.path,
        "raw_path": None if wsgi else (sees.raw_path or sees.path),
        "query": sees.query,
        "protocol": sees.protocol,
        "headers": wsgi_headers(sees.headers) if wsgi else [list(h) for h in sees.headers],
        "body_len": len(sees.body),
        "sha256": hashlib.sha256(sees.body).hexdigest(),
    }
    assert {key: got[key] for key in expected} == expected
    assert got["pid"] in target.pids


def ok(case_id: str, raw: bytes, marks: Any = (), **sees: Any) -> Any:
    """A valid case: the request bytes and what the app must see."""
    return pytest.param(raw, Sees(**sees), id=case_id, marks=marks)


def xfail(reason: str) -> pytest.MarkDecorator:
    """A known server bug: the case asserts the right behaviour and must fail until fixed."""
    return pytest.mark.xfail(reason=reason, strict=True)


HOST = b"Host: x"
H = ("host", "x")
LONG_TARGET = b"/" + b"t" * (LINE_LIMIT - 14)  # b"GET " + target + b" HTTP/1.1": LINE_LIMIT
MOST_FIELDS = [b"X-F%02d: v%d" % (n, n) for n in range(FIELDS_LIMIT - 1)]  # and Host
LONGEST_FIELD = b"X-Long: " + b"v" * (FIELD_LIMIT - len(b"X-Long"))  # name + value
BIG_HEAD = [b"X-B%d: %s" % (n, b"b" * 1000) for n in range(7)]  # about 7.1 KiB
BINARY = bytes(range(256))
BODY_100K = bytes(n % 251 for n in range(100_000))
BODY_MAX = b"m" * MAX_BODY

VALID = [
    # -- request line and target
    ok("root", req(b"GET / HTTP/1.1", HOST)),
    ok("nested-path", req(b"GET /a/b/c HTTP/1.1", HOST), path="/a/b/c"),
    ok("query", req(b"GET /p?a=1&b=2&a=3 HTTP/1.1", HOST), path="/p", query="a=1&b=2&a=3"),
    ok("empty-query", req(b"GET /p? HTTP/1.1", HOST), path="/p"),
    ok("question-mark-in-query", req(b"GET /p?a=?b/c HTTP/1.1", HOST), path="/p", query="a=?b/c"),
    ok("query-not-decoded", req(b"GET /p?q=%20a+b%26c HTTP/1.1", HOST), path="/p",
       query="q=%20a+b%26c"),
    ok("pct-space", req(b"GET /a%20b HTTP/1.1", HOST), path="/a b", raw_path="/a%20b"),
    ok("pct-utf8", req(b"GET /caf%C3%A9 HTTP/1.1", HOST), path="/café", raw_path="/caf%C3%A9",
       wsgi_path="/caf\xc3\xa9"),
    ok("pct-lowercase-hex", req(b"GET /caf%c3%a9 HTTP/1.1", HOST), path="/café",
       raw_path="/caf%c3%a9", wsgi_path="/caf\xc3\xa9"),
    ok("pct-slash", req(b"GET /a%2Fb HTTP/1.1", HOST), path="/a/b", raw_path="/a%2Fb"),
    ok("pct-percent", req(b"GET /100%25 HTTP/1.1", HOST), path="/100%", raw_path="/100%25"),
    ok("pct-malformed-kept", req(b"GET /a%zz%4 HTTP/1.1", HOST), path="/a%zz%4"),
    ok("dot-segments-kept", req(b"GET /a/../b/./c HTTP/1.1", HOST), path="/a/../b/./c"),
    ok("empty-segments-kept", req(b"GET //a//b/ HTTP/1.1", HOST), path="//a//b/"),
    ok("sub-delims-in-path", req(b"GET /!$&'()*+,;=:@-._~ HTTP/1.1", HOST),
       path="/!$&'()*+,;=:@-._~"),
    ok("absolute-form", req(b"GET http://example.com/p/q?x=1 HTTP/1.1", b"Host: example.com"),
       path="/p/q", query="x=1", headers=(("host", "example.com"),)),
    ok("absolute-form-no-path", req(b"GET http://example.com:8080 HTTP/1.1",
                                    b"Host: example.com:8080"),
       headers=(("host", "example.com:8080"),)),
    ok("absolute-form-https-encoded", req(b"GET https://example.com/a%20b?y HTTP/1.1",
                                          b"Host: example.com"),
       path="/a b", raw_path="/a%20b", query="y", headers=(("host", "example.com"),)),
    ok("absolute-form-authority-beats-host",
       req(b"GET http://a.example/p HTTP/1.1", b"Host: b.example", b"X-After: 1"),
       path="/p", headers=(("host", "a.example"), ("x-after", "1"))),
    ok("options-asterisk", req(b"OPTIONS * HTTP/1.1", HOST), method="OPTIONS", path="*"),
    ok("longest-request-line", req(b"GET " + LONG_TARGET + b" HTTP/1.1", HOST),
       path=LONG_TARGET.decode()),
    # -- methods
    ok("post", req(b"POST /p HTTP/1.1", HOST, b"Content-Length: 5", body=b"hello"),
       method="POST", path="/p", headers=(H, ("content-length", "5")), body=b"hello"),
    ok("put-binary-body", req(b"PUT /p HTTP/1.1", HOST, b"Content-Length: 256", body=BINARY),
       method="PUT", path="/p", headers=(H, ("content-length", "256")), body=BINARY),
    ok("patch-json", req(b"PATCH /p HTTP/1.1", HOST, b"Content-Type: application/json",
                         b"Content-Length: 2", body=b"{}"),
       method="PATCH", path="/p", body=b"{}",
       headers=(H, ("content-type", "application/json"), ("content-length", "2"))),
    ok("delete", req(b"DELETE /p/1 HTTP/1.1", HOST), method="DELETE", path="/p/1"),
    ok("options-path", req(b"OPTIONS /p HTTP/1.1", HOST), method="OPTIONS", path="/p"),
    ok("get-with-body", req(b"GET /p HTTP/1.1", HOST, b"Content-Length: 3", body=b"abc"),
       path="/p", headers=(H, ("content-length", "3")), body=b"abc"),
    ok("extension-method", req(b"M-SEARCH / HTTP/1.1", HOST), method="M-SEARCH"),
    ok("method-every-tchar", req(b"!#$%&'*+-.^_`|~09AZaz / HTTP/1.1", HOST),
       method="!#$%&'*+-.^_`|~09AZaz"),
    ok("method-case-kept", req(b"get / HTTP/1.1", HOST), method="get"),
    ok("method-long", req(b"X" * 200 + b" / HTTP/1.1", HOST), method="X" * 200),
    # -- header fields
    ok("field-name-case", req(b"GET / HTTP/1.1", b"HOST: x", b"X-MiXeD-CaSe: VaLuE"),
       headers=(H, ("x-mixed-case", "VaLuE"))),
    ok("repeated-fields-in-order", req(b"GET / HTTP/1.1", HOST, b"X-R: 1", b"X-Other: o",
                                       b"X-R: 2", b"x-r: 3"),
       headers=(H, ("x-r", "1"), ("x-other", "o"), ("x-r", "2"), ("x-r", "3"))),
    ok("repeated-cookie", req(b"GET / HTTP/1.1", HOST, b"Cookie: a=1", b"Cookie: b=2"),
       headers=(H, ("cookie", "a=1"), ("cookie", "b=2"))),
    ok("value-whitespace-stripped", req(b"GET / HTTP/1.1", HOST, b"X-S:   v  ", b"X-T:\tv\t"),
       headers=(H, ("x-s", "v"), ("x-t", "v"))),
    ok("inner-whitespace-kept", req(b"GET / HTTP/1.1", HOST, b"X-I: a  b\t c"),
       headers=(H, ("x-i", "a  b\t c"))),
    ok("empty-values", req(b"GET / HTTP/1.1", HOST, b"X-Empty:", b"X-Blank:   "),
       headers=(H, ("x-empty", ""), ("x-blank", ""))),
    ok("no-space-after-colon", req(b"GET / HTTP/1.1", HOST, b"X-N:v"), headers=(H, ("x-n", "v"))),
    ok("field-name-every-tchar", req(b"GET / HTTP/1.1", HOST, b"X-!#$%&'*+.^`|~09: v"),
       headers=(H, ("x-!#$%&'*+.^`|~09", "v"))),
    ok("underscore-name", req(b"GET / HTTP/1.1", HOST, b"X_Under: u", b"X-Dash: d"),
       headers=(H, ("x_under", "u"), ("x-dash", "d"))),
    ok("obs-text-value", req(b"GET / HTTP/1.1", HOST, b"X-T: caf\xe9 \xff"),
       headers=(H, ("x-t", "caf\xe9 \xff"))),
    ok("quoted-commas-kept", req(b"GET / HTTP/1.1", HOST, b'X-List: a, "b,c", d'),
       headers=(H, ("x-list", 'a, "b,c", d'))),
    ok("host-with-port", req(b"GET / HTTP/1.1", b"Host: example.com:8080"),
       headers=(("host", "example.com:8080"),)),
    ok("host-ipv6-literal", req(b"GET / HTTP/1.1", b"Host: [::1]:8000"),
       headers=(("host", "[::1]:8000"),)),
    ok("host-empty", req(b"GET / HTTP/1.1", b"Host:"), headers=(("host", ""),)),
    ok("most-fields", req(b"GET / HTTP/1.1", HOST, *MOST_FIELDS),
       headers=(H, *((f"x-f{n:02d}", f"v{n}") for n in range(FIELDS_LIMIT - 1)))),
    ok("longest-field", req(b"GET / HTTP/1.1", HOST, LONGEST_FIELD),
       headers=(H, ("x-long", "v" * (FIELD_LIMIT - 6)))),
    ok("big-head-within-limit", req(b"GET / HTTP/1.1", HOST, *BIG_HEAD),
       headers=(H, *((f"x-b{n}", "b" * 1000) for n in range(7)))),
    ok("content-type", req(b"POST /p HTTP/1.1", HOST, b"Content-Type: text/plain; charset=utf-8",
                           b"Content-Length: 2", body=b"hi"),
       method="POST", path="/p", body=b"hi",
       headers=(H, ("content-type", "text/plain; charset=utf-8"), ("content-length", "2"))),
    ok("upgrade-h2c-ignored", req(b"GET / HTTP/1.1", HOST, b"Connection: Upgrade, HTTP2-Settings",
                                  b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"),
       headers=(H, ("connection", "Upgrade, HTTP2-Settings"), ("upgrade", "h2c"),
                ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"))),
    ok("expect-unknown-expectation", req(b"POST /p HTTP/1.1", HOST, b"Expect: x-later",
                                         b"Content-Length: 1", body=b"z"),
       method="POST", path="/p", body=b"z",
       headers=(H, ("expect", "x-later"), ("content-length", "1"))),
    ok("bare-lf-line-ends", b"GET /lf HTTP/1.1\nHost: x\nX-A: 1\n\n", path="/lf",
       headers=(H, ("x-a", "1"))),
    ok("mixed-line-ends", b"GET /mixed HTTP/1.1\r\nHost: x\nX-A: 1\r\n\n", path="/mixed",
       headers=(H, ("x-a", "1"))),
    # -- bodies
    ok("content-length-zero", req(b"POST /p HTTP/1.1", HOST, b"Content-Length: 0"),
       method="POST", path="/p", headers=(H, ("content-length", "0"))),
    ok("content-length-leading-zeros", req(b"POST /p HTTP/1.1", HOST, b"Content-Length: 005",
                                           body=b"hello"),
       method="POST", path="/p", headers=(H, ("content-length", "005")), body=b"hello"),
    ok("content-length-repeated-equal", req(b"POST /p HTTP/1.1", HOST, b"Content-Length: 5",
                                            b"Content-Length: 5", body=b"hello"),
       method="POST", path="/p", headers=(H, ("content-length", "5")), body=b"hello"),
    ok("content-length-list-equal", req(b"POST /p HTTP/1.1", HOST, b"Content-Length: 5, 5",
                                        body=b"hello"),
       method="POST", path="/p", headers=(H, ("content-length", "5")), body=b"hello"),
    ok("chunked", req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                      body=b"5\r\nhello\r\n0\r\n\r\n"),
       method="POST", path="/p", headers=(H, ("transfer-encoding", "chunked")), body=b"hello"),
    ok("chunk-sizes-any-case", req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                   body=b"3\r\nabc\r\nA\r\n0123456789\r\na\r\nABCDEFGHIJ\r\n"
                                        b"0\r\n\r\n"),
       method="POST", path="/p", headers=(H, ("transfer-encoding", "chunked")),
       body=b"abc0123456789ABCDEFGHIJ"),
    ok("chunk-size-leading-zeros", req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                       body=b"0003\r\nabc\r\n000\r\n\r\n"),
       method="POST", path="/p", headers=(H, ("transfer-encoding", "chunked")), body=b"abc"),
    ok("chunk-extensions-ignored", req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                       body=b'3;a=1;b\r\nabc\r\n4;q="x;y"\r\ndefg\r\n'
                                            b"0;end=1\r\n\r\n"),
       method="POST", path="/p", headers=(H, ("transfer-encoding", "chunked")), body=b"abcdefg"),
    ok("chunk-extension-after-whitespace", req(b"POST /p HTTP/1.1", HOST,
                                               b"Transfer-Encoding: chunked",
                                               body=b"3 ;a=1\r\nabc\r\n0\r\n\r\n"),
       method="POST", path="/p", headers=(H, ("transfer-encoding", "chunked")), body=b"abc"),
    ok("trailers-ignored", req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                               body=b"3\r\nabc\r\n0\r\nX-Trailer: t\r\nContent-Length: 99\r\n\r\n"),
       method="POST", path="/p", headers=(H, ("transfer-encoding", "chunked")), body=b"abc"),
    ok("chunked-empty", req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                            body=b"0\r\n\r\n"),
       method="POST", path="/p", headers=(H, ("transfer-encoding", "chunked"))),
    ok("transfer-coding-case", req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: ChUnKeD",
                                   body=b"2\r\nok\r\n0\r\n\r\n"),
       method="POST", path="/p", headers=(H, ("transfer-encoding", "chunked")), body=b"ok"),
    ok("chunked-binary", req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                             body=chunked(BINARY[:100], BINARY[100:])),
       method="POST", path="/p", headers=(H, ("transfer-encoding", "chunked")), body=BINARY),
    ok("body-100k", req(b"POST /p HTTP/1.1", HOST, b"Content-Length: 100000", body=BODY_100K),
       method="POST", path="/p", headers=(H, ("content-length", "100000")), body=BODY_100K),
    ok("body-at-max", req(b"POST /p HTTP/1.1", HOST, b"Content-Length: %d" % MAX_BODY,
                          body=BODY_MAX),
       method="POST", path="/p", headers=(H, ("content-length", str(MAX_BODY))), body=BODY_MAX),
    ok("chunked-at-max", req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                             body=chunked(*[BODY_MAX[:100_000]] * 10)),
       method="POST", path="/p", headers=(H, ("transfer-encoding", "chunked")), body=BODY_MAX),
    # -- versions and connection management
    ok("http10-no-host", req(b"GET /p HTTP/1.0"), path="/p", headers=(), protocol="HTTP/1.0",
       closes=True),
    ok("http10-with-host", req(b"GET /p HTTP/1.0", HOST), path="/p", protocol="HTTP/1.0",
       closes=True),
    ok("http10-keep-alive", req(b"GET /p HTTP/1.0", b"Connection: keep-alive"), path="/p",
       headers=(("connection", "keep-alive"),), protocol="HTTP/1.0"),
    ok("http10-post", req(b"POST /p HTTP/1.0", b"Content-Length: 4", body=b"data"),
       method="POST", path="/p", headers=(("content-length", "4"),), body=b"data",
       protocol="HTTP/1.0", closes=True),
    ok("connection-close", req(b"GET / HTTP/1.1", HOST, b"Connection: close"),
       headers=(H, ("connection", "close")), closes=True),
    ok("connection-close-among-options", req(b"GET / HTTP/1.1", HOST, b"Connection: x-a, close"),
       headers=(H, ("connection", "x-a, close")), closes=True),
    ok("connection-close-upper-case", req(b"GET / HTTP/1.1", HOST, b"Connection: CLOSE"),
       headers=(H, ("connection", "CLOSE")), closes=True),
    ok("connection-keep-alive", req(b"GET / HTTP/1.1", HOST, b"Connection: keep-alive"),
       headers=(H, ("connection", "keep-alive"))),
    ok("leading-empty-line", b"\r\n" + req(b"GET / HTTP/1.1", HOST)),
    ok("leading-bare-lf", b"\n" + req(b"GET / HTTP/1.1", HOST)),
    ok("crlf-after-http10-post-body", req(b"POST /p HTTP/1.0", b"Content-Length: 4",
                                          body=b"data\r\n"),
       method="POST", path="/p", headers=(("content-length", "4"),), body=b"data",
       protocol="HTTP/1.0", closes=True),
    ok("crlf-after-http11-post-body", req(b"POST /p HTTP/1.1", HOST, b"Content-Length: 4",
                                          body=b"data\r\n"),
       method="POST", path="/p", headers=(H, ("content-length", "4")), body=b"data"),
    ok("http-1.2-served-as-1.1", req(b"GET / HTTP/1.2", HOST)),
]  # fmt: skip


# -- valid requests ------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "sees"), VALID)
def test_valid_request_reaches_the_app_as_sent(target: Target, raw: bytes, sees: Sees) -> None:
    """The app sees exactly what was sent; the framing leaves the connection in step."""
    with target.connect() as conn:
        conn.send(raw)
        reply = conn.response(sees.method)
        assert reply is not None, "closed without a response"
        assert reply.status == 200, reply
        assert_sees(target, reply, sees)
        if sees.closes:
            assert reply.header("connection") == "close"
            assert conn.closed_within(2)
        else:
            assert reply.header("connection") != "close"
            conn.send(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
            again = conn.response()
            assert again is not None and (again.status, again.body) == (200, FIXED), again


def without_date(reply: Reply) -> list[tuple[bytes, bytes]]:
    """The headers of `reply` but Date, which may tick between two responses."""
    return [(name, value) for name, value in reply.headers if name != b"date"]


def test_head_has_get_headers_and_no_body(target: Target) -> None:
    """HEAD gets GET's status and headers (Date aside) and not one body byte."""
    with target.connect() as conn:
        conn.send(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\nHEAD /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
        get = conn.response("GET")
        head = conn.response("HEAD")
        assert get is not None and head is not None
        assert (get.status, get.body) == (200, FIXED)
        assert (head.status, head.body) == (200, b"")
        assert without_date(head) == without_date(get)
        assert head.header("content-length") == str(len(FIXED))
        conn.send(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")  # no stray body bytes came
        again = conn.response()
        assert again is not None and again.body == FIXED


def test_expect_100_continue_is_answered_before_the_body(target: Target) -> None:
    """Expect: 100-continue gets 100 before the client sends the body, then the answer."""
    with target.connect() as conn:
        conn.send(req(b"POST /p HTTP/1.1", HOST, b"Expect: 100-continue", b"Content-Length: 5"))
        interim = read_head(conn.sock)
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        assert interim.endswith(b"\r\n\r\n"), "bytes after the 100 before the body was sent"
        conn.send(b"hello")
        reply = conn.response("POST")
        assert reply is not None and reply.status == 200
        sees = Sees(method="POST", path="/p", body=b"hello",
                    headers=(H, ("expect", "100-continue"), ("content-length", "5")))  # fmt: skip
        assert_sees(target, reply, sees)


def test_http10_expect_100_continue_is_ignored(target: Target) -> None:
    """RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored."""
    with target.connect() as conn:
        conn.send(req(b"POST /p HTTP/1.0", b"Expect: 100-continue", b"Content-Length: 5"))
        time.sleep(0.3)  # room for a wrong 100 Continue: an absence has no event to wait for
        conn.send(b"hello")
        reply = conn.response("POST")
        assert reply is not None and reply.status == 200
        assert conn.informational == []
        assert reply.json()["body"] == "hello"


def test_pipelined_requests_are_answered_in_order(target: Target) -> None:
    """GET, POST, chunked POST, HEAD and GET in one write: five answers, in order."""
    data = (
        req(b"GET /p?0 HTTP/1.1", HOST)
        + req(b"POST /p?1 HTTP/1.1", HOST, b"Content-Length: 3", body=b"one")
        + req(b"POST /p?2 HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=chunked(b"two"))
        + req(b"HEAD /p?3 HTTP/1.1", HOST)
        + req(b"GET /p?4 HTTP/1.1", HOST, b"Connection: close")
    )
    with target.connect() as conn:
        conn.send(data)
        methods = ["GET", "POST", "POST", "HEAD", "GET"]
        replies = [conn.response(method) for method in methods]
        assert all(r is not None and r.status == 200 for r in replies), replies
        echoes = [r.json() for r in replies if r is not None and r.body]
        assert [(e["query"], e["body"]) for e in echoes] == [
            ("0", ""), ("1", "one"), ("2", "two"), ("4", "")
        ]  # fmt: skip
        assert replies[3] is not None and replies[3].body == b""
        assert conn.closed_within(2)


@pytest.mark.parametrize("trailers", [b"", b"X-Trailer: t\r\n"], ids=["plain", "trailers"])
def test_blank_lines_after_a_chunked_request_in_the_same_write(
    target: Target, trailers: bytes
) -> None:
    """RFC 9112 2.2: blank lines before the next request are ignored, also when they
    arrive in the same write as the end of a chunked body (found by the property test:
    the fast driver left that request unanswered)."""
    head = req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked")
    with target.connect() as conn:
        conn.send(head + b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n" + b"\r\n\r\n")
        reply = conn.response("POST")
        assert reply is not None and reply.status == 200, reply
        assert reply.json()["body"] == "hello"
        conn.send(req(b"GET /p?next HTTP/1.1", HOST))
        follow = conn.response()
        assert follow is not None and follow.json()["query"] == "next"


def test_bytes_after_a_chunked_request_that_closes_are_ignored(target: Target) -> None:
    """A chunked request with Connection: close, and more bytes in the same write: the
    request is answered, what follows it is never read, the connection closes."""
    head = req(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked", b"Connection: close")
    with target.connect() as conn:
        conn.send(head + b"5\r\nhello\r\n0\r\n\r\n" + req(b"GET /p?never HTTP/1.1", HOST))
        reply = conn.response("POST")
        assert reply is not None and reply.status == 200, reply
        assert reply.json()["body"] == "hello"
        assert conn.closed_within(2)


def test_head_split_into_single_bytes(target: Target) -> None:
    """A head that arrives one byte per segment is parsed like one that arrives whole."""
    raw = req(b"GET /split?q=1 HTTP/1.1", HOST, b"X-A: a b")
    with target.connect() as conn:
        for byte in raw:
            conn.send(bytes([byte]))
        reply = conn.response()
        assert reply is not None and reply.status == 200
        assert_sees(target, reply, Sees(path="/split", query="q=1", headers=(H, ("x-a", "a b"))))


def test_chunked_body_split_into_single_bytes(target: Target) -> None:
    """A chunked body cut at every byte (sizes, extensions, CRLFs) still arrives whole."""
    body = b"4;e=1\r\nabcd\r\n1\r\ne\r\n0\r\nX-T: 1\r\n\r\n"
    with target.connect() as conn:
        conn.send(req(b"POST /split HTTP/1.1", HOST, b"Transfer-Encoding: chunked"))
        for byte in body:
            conn.send(bytes([byte]))
        reply = conn.response("POST")
        assert reply is not None and reply.status == 200
        sees = Sees(method="POST", path="/split", body=b"abcde",
                    headers=(H, ("transfer-encoding", "chunked")))  # fmt: skip
        assert_sees(target, reply, sees)


# -- invalid requests ----------------------------------------------------------------------


def no(case_id: str, raw: bytes, *statuses: int, marks: Any = ()) -> Any:
    """A refused request: one of `statuses`; none given means a close without a word."""
    return pytest.param(raw, frozenset(statuses), id=case_id, marks=marks)


OVER_LINE = b"/" + b"t" * (LINE_LIMIT - 13)  # one byte past limit_request_line
MAX_PLUS = str(MAX_BODY + 1).encode()
TLS_CLIENT_HELLO = (
    b"\x16\x03\x01\x00\xc4\x01\x00\x00\xc0\x03\x03" + bytes(range(32)) + b"\x00\x00\x02\x13\x01"
    + b"\x01\x00\x00\x95" + b"\x00" * 20
)  # fmt: skip

INVALID = [
    # -- request line
    no("garbage", b"GARBAGE\r\n\r\n", 400),
    no("every-byte", bytes(range(256)) + b"\r\n\r\n", 400),
    no("high-bytes", bytes(range(128, 256)) + b"\r\n\r\n", 400),
    no("http09-simple-request", b"GET /\r\n\r\n", 400),
    no("protocol-lower-case", req(b"GET / http/1.1", HOST), 400),
    no("protocol-name-wrong", req(b"GET / HTTQ/1.1", HOST), 400),
    no("version-without-minor", req(b"GET / HTTP/1", HOST), 400),
    no("version-two-digit-minor", req(b"GET / HTTP/1.10", HOST), 400),
    no("version-three-parts", req(b"GET / HTTP/1.1.1", HOST), 400),
    no("double-space-after-method", req(b"GET  / HTTP/1.1", HOST), 400),
    no("double-space-before-version", req(b"GET /  HTTP/1.1", HOST), 400),
    no("space-after-version", req(b"GET / HTTP/1.1 ", HOST), 400),
    no("tab-as-separator", req(b"GET\t/ HTTP/1.1", HOST), 400),
    no("missing-method", req(b" / HTTP/1.1", HOST), 400),
    no("missing-target", req(b"GET HTTP/1.1", HOST), 400),
    no("method-non-token", req(b"GE(T / HTTP/1.1", HOST), 400),
    no("method-non-ascii", req(b"G\xc9T / HTTP/1.1", HOST), 400),
    no("target-control-char", req(b"GET /a\x01b HTTP/1.1", HOST), 400),
    no("target-del", req(b"GET /a\x7fb HTTP/1.1", HOST), 400),
    no("target-nul", req(b"GET /a\x00b HTTP/1.1", HOST), 400),
    no("target-space", req(b"GET /a b HTTP/1.1", HOST), 400),
    no("target-tab", req(b"GET /a\tb HTTP/1.1", HOST), 400),
    no("target-raw-utf8", req(b"GET /caf\xc3\xa9 HTTP/1.1", HOST), 400),
    no("bare-cr-in-request-line", b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400),
    no("request-line-over-limit", req(b"GET " + OVER_LINE + b" HTTP/1.1", HOST), 414),
    no("request-line-far-over-limit", req(b"GET /" + b"t" * 4000 + b" HTTP/1.1", HOST), 414),
    no("request-line-unterminated", b"GET /" + b"t" * (HEAD_LIMIT + 100), 414, 431),
    # -- header fields
    no("nul-in-name", req(b"GET / HTTP/1.1", HOST, b"X\x00Y: v"), 400),
    no("nul-in-value", req(b"GET / HTTP/1.1", HOST, b"X: a\x00b"), 400),
    no("space-in-name", req(b"GET / HTTP/1.1", HOST, b"X Y: v"), 400),
    no("no-colon", req(b"GET / HTTP/1.1", HOST, b"NoColon"), 400),
    no("empty-name", req(b"GET / HTTP/1.1", HOST, b": v"), 400),
    no("space-before-colon", req(b"GET / HTTP/1.1", HOST, b"X-A : v"), 400),
    no("tab-before-colon", req(b"GET / HTTP/1.1", HOST, b"X-A\t: v"), 400),
    no("whitespace-before-first-field", req(b"GET / HTTP/1.1", b" Host: x"), 400),
    no("bare-cr-in-value", req(b"GET / HTTP/1.1", HOST, b"X: a\rb"), 400),
    no("vertical-tab-in-value", req(b"GET / HTTP/1.1", HOST, b"X: a\x0bb"), 400),
    no("name-non-token", req(b"GET / HTTP/1.1", HOST, b"X(Y): v"), 400),
    no("name-non-ascii", req(b"GET / HTTP/1.1", HOST, b"X\xe9: v"), 400),
    no("host-missing", req(b"GET / HTTP/1.1"), 400),
    no("host-twice", req(b"GET / HTTP/1.1", b"Host: x", b"Host: y"), 400),
    no("host-twice-same-value", req(b"GET / HTTP/1.1", b"Host: x", b"host: x"), 400),
    no("host-with-space", req(b"GET / HTTP/1.1", b"Host: a b"), 400),
    no("host-list", req(b"GET / HTTP/1.1", b"Host: x, y"), 400),
    no("host-with-userinfo", req(b"GET / HTTP/1.1", b"Host: u@a"), 400),
    no("host-with-path", req(b"GET / HTTP/1.1", b"Host: a/b"), 400),
    no("host-port-not-digits", req(b"GET / HTTP/1.1", b"Host: x:y"), 400),
    no("host-ipv6-unbracketed", req(b"GET / HTTP/1.1", b"Host: ::1"), 400),
    no("too-many-fields", req(b"GET / HTTP/1.1", HOST, *MOST_FIELDS, b"X-One-More: v"), 431),
    no("too-many-repeats", req(b"GET / HTTP/1.1", HOST, *[b"X: v"] * FIELDS_LIMIT), 431),
    no("field-over-limit", req(b"GET / HTTP/1.1", HOST, LONGEST_FIELD + b"v"), 431),
    no("head-over-limit", req(b"GET / HTTP/1.1", HOST, *BIG_HEAD, *BIG_HEAD[:2]), 431),
    no("head-over-limit-unterminated", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: v\r\n" * 1500, 431),
    # -- message framing
    no("te-gzip-chunked", req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: gzip, chunked",
                              body=b"0\r\n\r\n"), 501),
    no("te-identity", req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: identity"), 501),
    no("te-unknown", req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: xchunked"), 501),
    no("te-empty", req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding:"), 400, 501),
    no("te-chunked-twice", req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked, chunked",
                               body=b"0\r\n\r\n"), 400, 501),
    no("te-two-fields", req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                            b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400, 501),
    no("te-chunked-then-gzip", req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                   b"Transfer-Encoding: gzip", body=b"0\r\n\r\n"), 400, 501),
    no("te-space-before-colon", req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding : chunked",
                                    body=b"0\r\n\r\n"), 400),
    no("te-vertical-tab", req(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding:\x0bchunked",
                              body=b"0\r\n\r\n"), 400),
    no("cl-list-differing", req(b"POST / HTTP/1.1", HOST, b"Content-Length: 1,2", body=b"ab"), 400),
    no("cl-two-differing", req(b"POST / HTTP/1.1", HOST, b"Content-Length: 5",
                               b"Content-Length: 6", body=b"hello!"), 400),
    no("cl-negative", req(b"POST / HTTP/1.1", HOST, b"Content-Length: -1"), 400),
    no("cl-plus-sign", req(b"POST / HTTP/1.1", HOST, b"Content-Length: +5", body=b"hello"), 400),
    no("cl-hex", req(b"POST / HTTP/1.1", HOST, b"Content-Length: 0x5", body=b"hello"), 400),
    no("cl-decimal-point", req(b"POST / HTTP/1.1", HOST, b"Content-Length: 5.0", body=b"hello"),
       400),
    no("cl-empty", req(b"POST / HTTP/1.1", HOST, b"Content-Length:"), 400),
    no("cl-inner-space", req(b"POST / HTTP/1.1", HOST, b"Content-Length: 1 2"), 400),
    no("cl-too-many-digits", req(b"POST / HTTP/1.1", HOST, b"Content-Length: " + b"0" * 20 + b"5",
                                 body=b"hello"), 400),
    no("cl-over-max", req(b"POST / HTTP/1.1", HOST, b"Content-Length: " + MAX_PLUS), 413),
    no("cl-huge", req(b"POST / HTTP/1.1", HOST, b"Content-Length: " + b"9" * 20), 413),
    no("cl-over-max-hides-request", req(b"POST / HTTP/1.1", HOST, b"Content-Length: " + MAX_PLUS,
                                        body=req(b"GET /smuggled HTTP/1.1", HOST)), 413),
    no("chunk-size-not-hex", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                 body=b"zz\r\nabc\r\n0\r\n\r\n"), 400),
    no("chunk-size-overflow", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                  body=b"1" + b"0" * 20 + b"\r\nabc\r\n0\r\n\r\n"), 400),
    no("chunk-size-negative", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                  body=b"-3\r\nabc\r\n0\r\n\r\n"), 400),
    no("chunk-size-0x", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                            body=b"0x3\r\nabc\r\n0\r\n\r\n"), 400),
    no("chunk-size-leading-space", req(b"POST /chunks HTTP/1.1", HOST,
                                       b"Transfer-Encoding: chunked",
                                       body=b" 3\r\nabc\r\n0\r\n\r\n"), 400),
    no("chunk-size-missing", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                 body=b"\r\nabc\r\n0\r\n\r\n"), 400),
    no("chunk-data-over-size", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                   body=b"3\r\nabcd\r\n0\r\n\r\n"), 400),
    no("chunk-data-bare-lf", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                 body=b"3\r\nabc\n0\r\n\r\n"), 400),
    no("chunk-size-bare-lf", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                 body=b"3\nabc\r\n0\r\n\r\n"), 400),
    no("chunk-ext-bare-lf", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                body=b"3;a\nb\r\nabc\r\n0\r\n\r\n"), 400),
    no("last-chunk-bare-lf", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                 body=b"3\r\nabc\r\n0\n\r\n"), 400),
    no("trailer-not-a-field", req(b"POST /chunks HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                                  body=b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n"), 400),
    # -- protocol versions and request-target forms
    no("http-2.0", req(b"GET / HTTP/2.0", HOST), 505),
    no("http-3.0", req(b"GET / HTTP/3.0", HOST), 505),
    no("http-0.9-version", req(b"GET / HTTP/0.9", HOST), 400, 505),
    no("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, 505),
    no("target-relative", req(b"GET a HTTP/1.1", HOST), 400),
    no("target-asterisk-for-get", req(b"GET * HTTP/1.1", HOST), 400),
    no("target-authority-for-get", req(b"GET example.com:80 HTTP/1.1", HOST), 400),
    no("tls-client-hello", TLS_CLIENT_HELLO),
    no("connect-not-a-proxy", req(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443"),
       501),
    no("head-over-max-body", req(b"HEAD / HTTP/1.1", HOST, b"Content-Length: " + MAX_PLUS),
       413),
    no("head-with-bad-host", req(b"HEAD / HTTP/1.1", b"Host: a b"), 400),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "statuses"), INVALID)
def test_invalid_request_is_refused(target: Target, raw: bytes, statuses: frozenset[int]) -> None:
    """The right status and a close (or, for non-HTTP, a bare close); never a 2xx, never
    the app; the same workers serve the next client."""
    if raw == TLS_CLIENT_HELLO and target.transport == "tls":
        # The mirror case: plain HTTP to the TLS port gets a bare close.
        since = target.checkpoint()
        with socket.create_connection((target.server.host, target.server.port), 5) as plain:
            plain.sendall(req(b"GET / HTTP/1.1", HOST))
            assert Client(plain).response() is None, "answered plain HTTP on the TLS port"
        target.assert_serves_on(since)
        return
    since = target.checkpoint()
    with target.connect() as conn:
        conn.send_refusable(raw)
        reply = conn.response("HEAD" if raw.startswith(b"HEAD ") else "GET")
        if statuses:
            assert reply is not None, "closed without a response"
            assert reply.status in statuses, reply
            assert reply.header("connection") == "close", reply
        else:
            assert reply is None, f"answered a non-HTTP client: {reply}"
        assert conn.closed_within(2), "the connection stayed open"
        assert 100 not in conn.informational
    target.assert_serves_on(since, maybe=[BROKEN_BODY])


def test_content_length_over_max_with_expect_gets_413_not_100(target: Target) -> None:
    """An Expect: 100-continue upload above max_body_size gets 413 instead of 100."""
    since = target.checkpoint()
    with target.connect() as conn:
        conn.send(req(b"POST / HTTP/1.1", HOST, b"Expect: 100-continue",
                      b"Content-Length: " + MAX_PLUS))  # fmt: skip
        reply = conn.response()
        assert reply is not None and reply.status == 413
        assert conn.informational == []
        assert conn.closed_within(2)
    target.assert_serves_on(since)


def test_obs_fold_is_refused_or_unfolded(target: Target) -> None:
    """RFC 9112 5.2: obs-fold gets 400, or is replaced by SP before the app sees the value."""
    since = target.checkpoint()
    with target.connect() as conn:
        conn.send(req(b"GET /fold HTTP/1.1", HOST, b"X-Fold: a", b" \tb", b"X-After: c"))
        reply = conn.response()
        assert reply is not None
        if reply.status == 200:
            assert_sees(
                target, reply, Sees(path="/fold", headers=(H, ("x-fold", "a b"), ("x-after", "c")))
            )
            return
        assert reply.status == 400
        assert conn.closed_within(2)
    target.assert_serves_on(since)


SMUGGLED = req(b"GET /smuggled HTTP/1.1", HOST)
SMUGGLING = [
    pytest.param(req(b"POST /front HTTP/1.1", HOST, b"Content-Length: 5",
                     b"Transfer-Encoding: chunked", body=b"0\r\n\r\n" + SMUGGLED),
                 False, id="cl-then-te"),
    pytest.param(req(b"POST /front HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                     b"Content-Length: 40", body=b"0\r\n\r\n" + SMUGGLED),
                 False, id="te-then-cl"),
    pytest.param(req(b"POST /front HTTP/1.1", HOST, b"Content-Length: 0",
                     b"Transfer-Encoding: chunked", body=b"3\r\nabc\r\n0\r\n\r\n" + SMUGGLED),
                 False, id="cl-zero-then-te"),
    pytest.param(req(b"POST /front HTTP/1.0", b"Transfer-Encoding: chunked", b"Content-Length: 5",
                     body=b"0\r\n\r\n" + SMUGGLED),
                 False, id="http10-te-cl"),
    pytest.param(req(b"GET /front HTTP/1.1", HOST, b"Connection: close") + SMUGGLED,
                 True, id="after-connection-close"),
    pytest.param(req(b"GET /front HTTP/1.0") + SMUGGLED,
                 True, id="after-http10-request"),
    pytest.param(req(b"POST /front HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                     body=b"5\r\nabc\r\n0\r\n\r\n" + SMUGGLED),
                 False, id="chunk-shorter-than-size"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "front_valid"), SMUGGLING)
def test_request_hidden_behind_another_never_reaches_the_app(
    target: Target, raw: bytes, front_valid: bool
) -> None:
    """The front request is refused, or answered with Connection: close and a close (it
    must be answered when valid); the request behind it never reaches the app."""
    since = target.checkpoint()
    with target.connect() as conn:
        conn.send_refusable(raw)
        reply = conn.response("POST" if raw.startswith(b"POST") else "GET")
        assert reply is not None, "closed without a response"
        try:  # before any verdict: whatever the server does next must have happened
            closed: bool | AssertionError = conn.closed_within(1)
        except AssertionError as exc:  # bytes after the response: it answered the hidden one
            closed = exc
    served = 200 <= reply.status < 300
    if front_valid:
        assert served, reply
    if served:
        assert reply.json()["path"] == "/front"
    assert reply.header("connection") == "close", reply
    assert closed is True, closed or "the connection stayed open"
    if served:
        target.assert_serves_on(since, entered=["/front"])
    else:
        target.assert_serves_on(since, maybe=["/front"])


TRUNCATED = [
    pytest.param(req(b"POST /cut?{t} HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                     body=b"5\r\nab"), id="chunked-mid-chunk"),
    pytest.param(req(b"POST /cut?{t} HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                     body=b"5\r\nhello\r\n"), id="chunked-no-last-chunk"),
    pytest.param(req(b"POST /cut?{t} HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                     body=b"5\r\nhello\r\n0\r\n"), id="chunked-no-final-crlf"),
    pytest.param(req(b"POST /cut?{t} HTTP/1.1", HOST, b"Transfer-Encoding: chunked",
                     body=b"5\r\nhello\r\n1"), id="chunked-mid-size"),
    pytest.param(req(b"POST /cut?{t} HTTP/1.1", HOST, b"Content-Length: 10", body=b"ab"),
                 id="content-length-short"),
]  # fmt: skip


@pytest.mark.parametrize("raw", TRUNCATED)
def test_truncated_body_never_looks_complete(target: Target, raw: bytes) -> None:
    """A body cut off by the client's close: the app's read fails (WSGI: an OSError from
    wsgi.input; ASGI: http.disconnect), never a short body answered 200."""
    token = uuid.uuid4().hex
    since = target.checkpoint()
    with target.connect() as conn:
        conn.send(raw.replace(b"{t}", token.encode()))
        target.wait_hit(since, token, ["enter"])
        half_close(conn.sock)
        reply = conn.response("POST")
        assert reply is None or not 200 <= reply.status < 300, reply
        assert conn.closed_within(2)
    outcome = target.wait_hit(since, token, ["error", "done"])
    assert outcome["phase"] == "error", outcome
    if target.interface == "wsgi":
        assert outcome["oserror"], outcome
    else:
        assert outcome["error"] == "http.disconnect"
    target.assert_serves_on(since, entered=["/cut"])


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(chunked(*[BODY_MAX[:100_000]] * 10, b"!"), id="chunks-past-max"),
        pytest.param(b"f" * 16 + b"\r\n" + BODY_MAX + b"!!", id="one-huge-chunk"),
    ],
)
def test_chunked_body_over_max_is_413(target: Target, body: bytes) -> None:
    """A chunked body that grows past max_body_size is cut off with 413; the app, already
    reading, gets an error and never a complete body."""
    token = uuid.uuid4().hex
    since = target.checkpoint()
    head = req(b"POST /over?%s HTTP/1.1" % token.encode(), HOST, b"Transfer-Encoding: chunked")
    with target.connect(timeout=10) as conn:
        conn.send_refusable(head + body)
        reply = conn.response("POST", within=10)
        assert reply is not None, "closed without a response"
        assert reply.status == 413, reply
        assert conn.closed_within(2)
    outcome = target.wait_hit(since, token, ["error", "done"])
    assert outcome["phase"] == "error", outcome
    target.assert_serves_on(since, entered=["/over"])


def test_a_storm_of_refused_requests_leaves_the_worker_serving(target: Target) -> None:
    """100 refused connections in a row leak nothing that stops the next client."""
    since = target.checkpoint()
    for number in range(100):
        with target.connect() as conn:
            conn.send_refusable(b"BAD%d\x01 / HTTP/1.1\r\n\r\n" % number)
            reply = conn.response()
            assert reply is not None and reply.status == 400
    target.assert_serves_on(since)


# -- robustness ----------------------------------------------------------------------------


@pytest.mark.slow
def test_slowloris_head_is_cut_off_at_header_timeout(target: Target) -> None:
    """A head dribbled a byte at a time gets 408 (or a close) within header_timeout."""
    since = target.checkpoint()
    head = req(b"GET /slow HTTP/1.1", HOST) + b"X-Slow: " + b"s" * 200
    with target.connect() as conn:
        started = time.monotonic()
        for byte in head:
            try:
                conn.send(bytes([byte]))
            except OSError:
                break
            if conn.readable(0.05) or time.monotonic() - started > HEADER_TIMEOUT + 3:
                break
        reply = conn.response(within=3)
        assert reply is None or reply.status == 408, reply
        assert conn.closed_within(2)
        elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT - 0.1 < elapsed < HEADER_TIMEOUT + 1.5, elapsed
    target.assert_serves_on(since)


@pytest.mark.slow
def test_silent_connection_is_closed_at_header_timeout(target: Target) -> None:
    """A connection that never sends a byte is closed after header_timeout, without a word."""
    since = target.checkpoint()
    with target.connect() as conn:
        started = time.monotonic()
        assert conn.closed_within(HEADER_TIMEOUT + 2)
        elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT - 0.1 < elapsed < HEADER_TIMEOUT + 1.5, elapsed
    target.assert_serves_on(since)


@pytest.mark.slow
def test_unfinished_head_gets_408(target: Target) -> None:
    """A head that stops short of its empty line gets 408 after header_timeout."""
    since = target.checkpoint()
    with target.connect() as conn:
        started = time.monotonic()
        conn.send(b"GET /stalled HTTP/1.1\r\nHost: x\r\n")
        reply = conn.response(within=HEADER_TIMEOUT + 2)
        elapsed = time.monotonic() - started
        assert reply is not None and reply.status == 408, reply
        assert reply.header("connection") == "close"
        assert conn.closed_within(2)
    assert HEADER_TIMEOUT - 0.1 < elapsed < HEADER_TIMEOUT + 1.5, elapsed
    target.assert_serves_on(since)


@pytest.mark.slow
def test_slow_body_is_not_cut_by_header_timeout(target: Target) -> None:
    """header_timeout bounds the head only: a body trickling in for longer is served."""
    body = b"0123456789" * 2
    with target.connect() as conn:
        conn.send(req(b"POST /trickle HTTP/1.1", HOST, b"Content-Length: %d" % len(body)))
        started = time.monotonic()
        for start_at in range(0, len(body), 2):
            conn.send(body[start_at : start_at + 2])
            time.sleep(0.15)  # a slow client: two bytes every 150 ms
        assert time.monotonic() - started > HEADER_TIMEOUT + 0.2
        reply = conn.response("POST")
        assert reply is not None and reply.status == 200, reply
        assert reply.json()["body"] == body.decode()


@pytest.mark.slow
def test_idle_flood_does_not_block_a_new_client(target: Target) -> None:
    """400 idle connections: a new client is served at once, and the idle ones are
    closed at header_timeout."""
    since = target.checkpoint()
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(target.connect()) for _ in range(400)]
        started = time.monotonic()
        with target.connect() as conn:
            conn.send(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = conn.response(within=2)
            assert reply is not None and (reply.status, reply.body) == (200, FIXED)
        assert time.monotonic() - started < 1.0
        assert all(c.closed_within(HEADER_TIMEOUT + 3) for c in idle)
    target.assert_serves_on(since, entered=["/fixed"])


def test_client_gone_mid_body(target: Target) -> None:
    """A client that leaves halfway through its upload: the app's read fails, the worker
    serves on."""
    token = uuid.uuid4().hex
    since = target.checkpoint()
    with target.connect() as conn:
        conn.send(req(b"POST /gone?%s HTTP/1.1" % token.encode(), HOST,
                      b"Content-Length: 100000", body=b"x" * 1000))  # fmt: skip
        target.wait_hit(since, token, ["enter"])
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    outcome = target.wait_hit(since, token, ["error", "done"])
    assert outcome["phase"] == "error", outcome
    target.assert_serves_on(since, entered=["/gone"])


def test_client_gone_mid_response(target: Target) -> None:
    """A client that leaves while a large response streams: the worker serves on."""
    since = target.checkpoint()
    with target.connect() as conn:
        conn.send(b"GET /big?size=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_head(conn.sock).startswith(b"HTTP/1.1 200 ")
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    target.assert_serves_on(since, entered=None)


def test_client_reset_mid_head(target: Target) -> None:
    """A client that resets the connection halfway through its head harms no one."""
    since = target.checkpoint()
    with target.connect() as conn:
        conn.send(b"GET /reset HTTP/1.1\r\nHost: x\r\nX-Half: ")
        # The worker has read the half head: the reset meets a connection mid-parse.
        # (Not wait_read(): under TLS 1.3 the session tickets make the socket readable.)
        assert wait_until(lambda: read_by_server(conn.sock), timeout=5), "the head was not read"
        inode = server_inode(conn.sock)
        assert inode, "no process holds the server's end of the connection"
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # The worker has seen the reset and closed its end: whatever it logs about it is in.
    assert wait_until(lambda: not target.server.holds_socket(inode), timeout=5)
    target.assert_serves_on(since)


@pytest.mark.slow
def test_thousand_requests_on_one_connection(target: Target) -> None:
    """1,000 keep-alive requests on one connection, each answered in turn."""
    with target.connect() as conn:
        for number in range(1000):
            conn.send(b"GET /ka?%d HTTP/1.1\r\nHost: x\r\n\r\n" % number)
            reply = conn.response()
            assert reply is not None and reply.status == 200
            assert reply.json()["query"] == str(number)


def test_pipelined_burst_is_answered_in_order(target: Target) -> None:
    """100 requests (GETs and POSTs) in one write get 100 answers, in order."""
    data = b"".join(
        req(b"POST /burst?%d HTTP/1.1" % n, HOST, b"Content-Length: %d" % len(b"%d" % n),
            body=b"%d" % n)
        if n % 3 == 0
        else req(b"GET /burst?%d HTTP/1.1" % n, HOST)
        for n in range(100)
    )  # fmt: skip
    with target.connect() as conn:
        conn.send(data)
        for number in range(100):
            reply = conn.response("POST" if number % 3 == 0 else "GET")
            assert reply is not None and reply.status == 200
            echo = reply.json()
            assert echo["query"] == str(number)
            assert echo["body"] == (str(number) if number % 3 == 0 else "")


def test_large_response_read_slowly(target: Target) -> None:
    """8 MiB to a client that lets the buffers fill and then reads in small bites arrives
    whole and in order; the connection serves on."""
    size = 8 * 1024 * 1024
    with target.connect(timeout=10) as conn:
        conn.send(b"GET /big?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        time.sleep(0.5)  # the server must wait for the client, not give up or buffer it all
        parser = conn.parser
        parser.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        parser.send(h11.EndOfMessage())
        received = bytearray()
        reads = 0
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                conn.sock.settimeout(10)
                data = conn.sock.recv(16384)
                assert data, "closed mid-response"
                parser.receive_data(data)
                reads += 1
                if reads % 64 == 0:
                    time.sleep(0.005)  # a slow reader: the server must keep waiting
            elif isinstance(event, h11.Response):
                assert event.status_code == 200
            elif isinstance(event, h11.Data):
                received += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        assert len(received) == size
        pattern = bytes(range(251)) * (size // 251 + 1)
        assert received == pattern[:size]
        conn.send(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
        again = conn.response()
        assert again is not None and again.body == FIXED

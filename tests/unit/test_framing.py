"""framing.Framer against h11 0.16 as a server: a table of cases, then a differential
property test. Both frame the same response; both must refuse it at the same step, or
an h11 client must read the same status, headers, body, trailers and keep-alive verdict
from both."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gunrunner.protocols import framing
from gunrunner.protocols.framing import BadResponse, Framer
from gunrunner.protocols.http11 import keep_http10_alive

Pairs = list[tuple[Any, Any]]


@dataclasses.dataclass
class Case:
    """One request's response, as the app gives it; the request is described by
    method, version and keep_alive (the request side's verdict)."""

    status: int = 200
    headers: Pairs = dataclasses.field(default_factory=list)
    body: list[tuple[str, Any]] = dataclasses.field(default_factory=list)  # data / span
    trailers: Pairs | None = None
    method: bytes = b"GET"
    version: bytes = b"1.1"
    keep_alive: bool = True
    reason: bytes = b"OK"
    informational: list[tuple[int, bytes, Pairs]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Outcome:
    failed_at: str | None  # the step that raised ("head", "data 0", "end"...), or None
    wire: bytes  # what went out before that
    keep_alive: bool | None  # after a whole response: the connection stays open


def run_framer(case: Case) -> Outcome:
    framer = Framer()
    out: list[bytes] = []
    step = "start"
    try:
        for i, (status, reason, headers) in enumerate(case.informational):
            step = f"informational {i}"
            out.append(framer.informational(status, reason, headers))
        step = "head"
        out.append(
            framer.head(
                case.status,
                case.reason,
                case.headers,
                method=case.method,
                http_version=case.version,
                keep_alive=case.keep_alive,
            )
        )
        for i, (kind, piece) in enumerate(case.body):
            step = f"{kind} {i}"
            if kind == "data":
                out.append(framer.data(piece))
            else:
                before, after = framer.span(piece)
                out += [before, b"x" * piece, after]
        step = "end"
        out.append(framer.end(case.trailers))
    except BadResponse:
        return Outcome(step, b"".join(out), None)
    return Outcome(None, b"".join(out), framer.keep_alive)


def request_bytes(case: Case) -> bytes:
    target = b"example.com:443" if case.method == b"CONNECT" else b"/"
    head = b"%s %s HTTP/%s\r\nHost: example.com\r\n" % (case.method, target, case.version)
    if case.version == b"1.1" and not case.keep_alive:
        head += b"Connection: close\r\n"
    elif case.version == b"1.0" and case.keep_alive:
        head += b"Connection: keep-alive\r\n"
    return head + b"\r\n"


def run_h11(case: Case) -> Outcome:
    """The same response sent by h11 as gunrunner's h11 driver sends it."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(request_bytes(case))
    request = conn.next_event()
    assert isinstance(request, h11.Request)
    if case.version == b"1.0" and case.keep_alive:
        assert keep_http10_alive(conn, list(request.headers))
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    out: list[bytes] = []
    step = "start"
    try:
        for i, (status, reason, headers) in enumerate(case.informational):
            step = f"informational {i}"
            event = h11.InformationalResponse(status_code=status, reason=reason, headers=headers)
            out.append(conn.send(event))
        step = "head"
        response = h11.Response(status_code=case.status, reason=case.reason, headers=case.headers)
        out.append(conn.send(response))
        for i, (kind, piece) in enumerate(case.body):
            step = f"{kind} {i}"
            out.append(conn.send(h11.Data(data=piece if kind == "data" else b"x" * piece)))
        step = "end"
        end = h11.EndOfMessage(headers=case.trailers) if case.trailers else h11.EndOfMessage()
        out.append(conn.send(end))
    except h11.LocalProtocolError:
        return Outcome(step, b"".join(out), None)
    return Outcome(None, b"".join(out), conn.our_state is not h11.MUST_CLOSE)


def _multiset(headers: Any) -> Counter[tuple[bytes, bytes]]:
    return Counter((name.lower(), value) for name, value in headers)


def read_back(case: Case, wire: bytes) -> tuple[Any, ...]:
    """What an h11 client reads from `wire`: 1xx heads, status, reason, headers, body,
    trailers (headers as multisets)."""
    client = h11.Connection(h11.CLIENT)
    target = b"example.com:443" if case.method == b"CONNECT" else b"/"
    client.send(h11.Request(method=case.method, target=target, headers=[(b"host", b"x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(wire)
    client.receive_data(b"")  # (a close-delimited body ends here)
    infos = []
    head: tuple[Any, ...] = ()
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.InformationalResponse):
            infos.append((event.status_code, event.reason, _multiset(event.headers)))
        elif isinstance(event, h11.Response):
            head = (event.status_code, event.reason, _multiset(event.headers))
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return (infos, *head, body, _multiset(event.headers))
        else:
            raise AssertionError(f"unexpected {event!r} reading back {wire!r}")


def assert_same_as_h11(case: Case) -> Outcome:
    """Framer and h11 refuse at the same step, or an h11 client reads the same thing
    from both and both keep the connection alike."""
    ours = run_framer(case)
    theirs = run_h11(case)
    assert ours.failed_at == theirs.failed_at, (ours, theirs)
    if ours.failed_at is None:
        assert read_back(case, ours.wire) == read_back(case, theirs.wire), (ours, theirs)
        assert ours.keep_alive == theirs.keep_alive, (ours, theirs)
    return ours


def header_lines(wire: bytes) -> list[bytes]:
    return wire.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]


def start(framer: Framer, status: int, headers: Pairs, reason: bytes = b"OK") -> bytes:
    """A head for a keep-alive HTTP/1.1 GET."""
    return framer.head(status, reason, headers, method=b"GET", http_version=b"1.1", keep_alive=True)


# -- the table -----------------------------------------------------------------------------

CT = (b"Content-Type", b"text/plain")


def cl(n: int | bytes) -> tuple[bytes, bytes]:
    return (b"Content-Length", n if isinstance(n, bytes) else b"%d" % n)


# (id, case, the step that fails or None, lines the head has, lines it has not, keep-alive)
TABLE: list[tuple[str, Case, str | None, list[bytes], list[bytes], bool | None]] = [
    ("hello", Case(headers=[CT, cl(5)], body=[("data", b"hello")]),
     None, [b"Content-Length: 5"], [b"transfer-encoding: chunked"], True),
    ("no length: chunked", Case(headers=[CT], body=[("data", b"hel"), ("span", 2)]),
     None, [b"transfer-encoding: chunked"], [], True),
    ("HEAD keeps a GET's headers", Case(method=b"HEAD", headers=[cl(5)]),
     None, [b"Content-Length: 5"], [], True),
    ("HEAD without length says chunked", Case(method=b"HEAD"),
     None, [b"transfer-encoding: chunked"], [], True),
    ("HEAD with a body byte", Case(method=b"HEAD", headers=[cl(5)], body=[("data", b"h")]),
     "data 0", [], [], None),
    ("HEAD with empty data", Case(method=b"HEAD", body=[("data", b""), ("span", 0)]),
     None, [], [], True),
    ("204: no framing headers added", Case(status=204),
     None, [], [b"transfer-encoding: chunked", b"content-length: 0"], True),
    ("204 with a body byte", Case(status=204, body=[("span", 1)]), "span 0", [], [], None),
    ("304 keeps its Content-Length", Case(status=304, headers=[cl(10)]),
     None, [b"Content-Length: 10"], [], True),
    ("HTTP/1.0 keep-alive with a length", Case(version=b"1.0", headers=[cl(2)],
     body=[("data", b"hi")]), None, [b"Content-Length: 2"], [b"connection: close"], True),
    ("HTTP/1.0 keep-alive, unknown length: close-delimited",
     Case(version=b"1.0", body=[("data", b"hi")]),
     None, [b"connection: close"], [b"transfer-encoding: chunked"], False),
    ("HTTP/1.0 without keep-alive", Case(version=b"1.0", keep_alive=False, headers=[cl(0)]),
     None, [b"connection: close"], [], False),
    ("HTTP/1.0 HEAD, unknown length: no close needed", Case(version=b"1.0", method=b"HEAD"),
     None, [], [b"connection: close", b"transfer-encoding: chunked"], True),
    ("app says Connection: close", Case(headers=[cl(0), (b"Connection", b"close")]),
     None, [b"Connection: close"], [], False),
    ("request said close: tokens rewritten",
     Case(keep_alive=False, headers=[cl(0), (b"Connection", b"Upgrade, keep-alive")]),
     None, [b"connection: close", b"connection: upgrade"], [b"Connection: Upgrade, keep-alive"],
     False),
    ("chunked with trailers", Case(headers=[(b"Trailer", b"x-sum")], body=[("data", b"hi")],
     trailers=[(b"x-sum", b"abc")]), None, [b"transfer-encoding: chunked"], [], True),
    ("trailers and Content-Length", Case(headers=[cl(0)], trailers=[(b"x-sum", b"a")]),
     "end", [], [], None),
    ("trailers to HTTP/1.0", Case(version=b"1.0", trailers=[(b"x-sum", b"a")]),
     "end", [], [], None),
    ("trailers on HEAD", Case(method=b"HEAD", trailers=[(b"x-sum", b"a")]), "end", [], [], None),
    ("invalid trailer", Case(trailers=[(b"x-sum", b" a")]), "end", [], [], None),
    ("Content-Length too short", Case(headers=[cl(5)], body=[("data", b"hi")]),
     "end", [], [], None),
    ("Content-Length too long", Case(headers=[cl(1)], body=[("data", b"hi")]),
     "data 0", [], [], None),
    ("span too long", Case(headers=[cl(1)], body=[("span", 2)]), "span 0", [], [], None),
    ("conflicting Content-Length headers", Case(headers=[cl(5), cl(6)]), "head", [], [], None),
    ("conflicting Content-Length list", Case(headers=[cl(b"5, 6")]), "head", [], [], None),
    ("leading zero conflicts", Case(headers=[cl(b"5"), cl(b"05")]), "head", [], [], None),
    ("repeated Content-Length is sent once", Case(headers=[cl(b"2 , 2"), cl(2)],
     body=[("data", b"hi")]), None, [b"Content-Length: 2"], [b"Content-Length: 2 , 2"], True),
    ("Content-Length not a number", Case(headers=[cl(b"-1")]), "head", [], [], None),
    ("Content-Length of 21 digits", Case(headers=[cl(b"1" * 21)]), "head", [], [], None),
    ("Transfer-Encoding gzip", Case(headers=[(b"Transfer-Encoding", b"gzip")]),
     "head", [], [], None),
    ("two Transfer-Encoding headers", Case(headers=[(b"Transfer-Encoding", b"chunked")] * 2),
     "head", [], [], None),
    ("Transfer-Encoding beats Content-Length",
     Case(headers=[(b"Transfer-Encoding", b"Chunked"), cl(9)], body=[("data", b"hi")]),
     None, [b"transfer-encoding: chunked"], [b"Content-Length: 9"], True),
    ("empty name", Case(headers=[(b"", b"x")]), "head", [], [], None),
    ("space in name", Case(headers=[(b"a b", b"x")]), "head", [], [], None),
    ("colon in name", Case(headers=[(b"a: b", b"x")]), "head", [], [], None),
    ("NUL in value", Case(headers=[(b"x-a", b"a\x00b")]), "head", [], [], None),
    ("CR in value", Case(headers=[(b"x-a", b"a\rb")]), "head", [], [], None),
    ("LF in value", Case(headers=[(b"x-a", b"a\nb")]), "head", [], [], None),
    ("header injection", Case(headers=[(b"x-a", b"a\r\nSet-Cookie: x=1")]),
     "head", [], [], None),
    ("leading space in value: refused, not stripped", Case(headers=[(b"x-a", b" a")]),
     "head", [], [], None),
    ("trailing tab in value", Case(headers=[(b"x-a", b"a\t")]), "head", [], [], None),
    ("bad Connection value", Case(keep_alive=False, headers=[(b"Connection", b"\x0bclose")]),
     "head", [], [], None),
    ("controls and obs-text are fine", Case(headers=[cl(0), (b"x-a", b"\x01a \tb\x80\xff")]),
     None, [b"x-a: \x01a \tb\x80\xff"], [], True),
    ("status 99", Case(status=99), "head", [], [], None),
    ("status 1000", Case(status=1000), "head", [], [], None),
    ("status 101 as final", Case(status=101), "head", [], [], None),
    ("status 199 as final", Case(status=199), "head", [], [], None),
    ("status not an int", Case(status=200.0, headers=[cl(0)]), "head", [], [], None),  # type: ignore[arg-type]
    ("status 999", Case(status=999, headers=[cl(0)]), None, [], [], True),
    ("100 Continue first", Case(headers=[cl(0)], informational=[(100, b"Continue", [])]),
     None, [], [], True),
    ("Connection: close on a 1xx is ignored",
     Case(headers=[cl(0)], informational=[(103, b"", [(b"connection", b"close")])]),
     None, [], [], True),
    ("1xx with status 200", Case(informational=[(200, b"OK", [])]),
     "informational 0", [], [], None),
    ("1xx with a bad header", Case(informational=[(103, b"", [(b"link", b" x")])]),
     "informational 0", [], [], None),
    ("2xx to CONNECT is a tunnel", Case(method=b"CONNECT"), "end", [], [], None),
    ("304 to CONNECT is a response", Case(method=b"CONNECT", status=304), None, [], [], True),
    ("4xx to CONNECT is a response", Case(method=b"CONNECT", status=405, headers=[cl(0)]),
     None, [], [], True),
    ("str and bytearray headers, as h11 takes them",
     Case(headers=[("Content-Type", "text/plain"), (bytearray(b"content-length"), b"2")],
     body=[("data", b"hi")], trailers=None), None, [b"Content-Type: text/plain"], [], True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "failed_at", "present", "absent", "keep_alive"),
    [pytest.param(*row[1:], id=row[0]) for row in TABLE],
)
def test_table(
    case: Case,
    failed_at: str | None,
    present: list[bytes],
    absent: list[bytes],
    keep_alive: bool | None,
) -> None:
    ours = assert_same_as_h11(case)
    assert ours.failed_at == failed_at
    assert ours.keep_alive == keep_alive
    lines = header_lines(ours.wire)
    for line in present:
        assert line in lines
    for line in absent:
        assert line not in lines


def test_chunked_bytes() -> None:
    framer = Framer()
    head = start(framer, 200, [CT])
    assert (
        head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    assert framer.chunked
    assert framer.data(b"") == b""
    assert framer.data(b"hello" * 4) == b"14\r\n" + b"hello" * 4 + b"\r\n"
    assert framer.span(0) == (b"", b"")
    assert framer.span(300) == (b"12c\r\n", b"\r\n")
    assert framer.end([(b"X-Sum", b"abc"), (b"content-length", b"5, 5")]) == (
        b"0\r\nX-Sum: abc\r\ncontent-length: 5\r\n\r\n"
    )
    # The framer is ready for the next response of the connection.
    assert start(framer, 204, [], b"") == b"HTTP/1.1 204 \r\n\r\n"
    assert not framer.chunked
    assert framer.end() == b""


def test_content_length_body_is_passed_through() -> None:
    framer = Framer()
    start(framer, 200, [cl(4)])
    data = b"ab"
    assert framer.data(data) is data
    assert framer.span(2) == (b"", b"")
    assert framer.end() == b""


def test_calls_out_of_order() -> None:
    framer = Framer()
    with pytest.raises(BadResponse, match="before a response head"):
        framer.data(b"x")
    with pytest.raises(BadResponse, match="before a response head"):
        framer.end()
    start(framer, 200, [])
    with pytest.raises(BadResponse, match="under way"):
        start(framer, 200, [])
    with pytest.raises(BadResponse, match="under way"):
        framer.informational(100, b"Continue", [])


def test_refused_head_leaves_the_framer_ready() -> None:
    """The driver answers 500 after the app's head was refused (as with h11, whose
    Response() refuses before the connection state changes)."""
    framer = Framer()
    with pytest.raises(BadResponse, match="invalid header name"):
        start(framer, 200, [(b"a b", b"x")])
    head = start(framer, 500, [cl(0)], b"")
    assert head.startswith(b"HTTP/1.1 500 \r\n")
    assert framer.end() == b""


def test_refused_body_refuses_everything_after() -> None:
    """As h11's ERROR state: the driver closes the connection."""
    framer = Framer()
    start(framer, 200, [cl(1)])
    with pytest.raises(BadResponse):
        framer.data(b"xx")
    with pytest.raises(BadResponse, match="was refused"):
        framer.end()
    with pytest.raises(BadResponse, match="was refused"):
        start(framer, 500, [cl(0)], b"")


def test_no_request_read_is_taken_for_http10() -> None:
    """h11 with no request read (their_http_version None): a body of unknown length
    ends with the close."""
    framer = Framer()
    head = framer.head(400, b"", [], method=b"", http_version=b"", keep_alive=True)
    assert b"connection: close" in header_lines(head)
    assert not framer.keep_alive
    assert not framer.chunked


@pytest.mark.parametrize("reason", [b"a\r\nX-Injected: 1", b"a\nb", b"a\rb", b"a\x00b", b"\x0b"])
def test_reason_phrase_is_checked(reason: bytes) -> None:
    """Rule 6, stricter than h11: h11 writes such a reason as given, and its own client
    refuses what it wrote, or reads something else (a header of the reason's making)."""
    case = Case(reason=reason, headers=[cl(0)])
    assert run_framer(case).failed_at == "head"
    theirs = run_h11(case)
    assert theirs.failed_at is None
    try:
        _, _, read_reason, headers, _, _ = read_back(case, theirs.wire)
    except h11.RemoteProtocolError:
        return
    assert read_reason != reason
    assert headers[(b"x-injected", b"1")] == 1


def test_non_bytes_like_h11() -> None:
    framer = Framer()
    with pytest.raises(UnicodeEncodeError):
        start(framer, 200, [("x-a", "\xe9")], b"")
    with pytest.raises(TypeError):
        start(framer, 200, [(b"x-a", 5)], b"")
    with pytest.raises(TypeError):
        h11.Response(status_code=200, headers=[(b"x-a", 5)])
    head = framer.head(
        200,
        b"",
        [
            (b"Connection", bytearray(b"close")),
            (memoryview(b"x-a"), memoryview(b"b")),
            (b"x-b", memoryview(bytearray(b"c"))),  # (unhashable: writable)
        ],
        method=b"GET",
        http_version=b"1.1",
        keep_alive=True,
    )
    assert header_lines(head) == [
        b"x-a: b",
        b"x-b: c",
        b"transfer-encoding: chunked",
        b"Connection: close",
    ]
    assert not framer.keep_alive


def test_caches_are_bounded() -> None:
    """Rule 8: names and values seen are remembered, but not without end."""
    framer = Framer()
    for i in range(3 * framing._CACHE_ENTRIES):
        start(framer, 200, [(b"x-%d" % i, b"v%d" % i), cl(0)])
        framer.end()
        assert len(framing._names) <= framing._CACHE_ENTRIES
        assert len(framing._values) <= framing._CACHE_ENTRIES
    start(framer, 200, [(b"x-a", b"v" * (framing._CACHE_VALUE_SIZE + 1))])
    assert b"v" * (framing._CACHE_VALUE_SIZE + 1) not in framing._values


# -- the differential property test ---------------------------------------------------------

GOOD_NAMES = [b"Content-Type", b"x-a", b"Set-Cookie", b"Host", b"date", b"a", b"!#$%&'*+-.^_`|~"]
BAD_NAMES = [b"", b"a b", b"a:b", b"a: b", b"x\x00", b" x", b"x ", b"x\r\ny", b"\xff", b"(x)"]
GOOD_VALUES = [b"", b"v", b"a b", b"a \t b", b"\x01\x7f", b"\x80\xff", b"a:b", b"x, y", b"close"]
BAD_VALUES = [
    b" v", b"v ", b"\tv", b"v\t", b" ", b"a\x00b", b"a\rb", b"a\nb", b"a\r\nX-I: 1", b"\x0b",
    b"a\x0cb",
]  # fmt: skip
REASONS = [b"", b"OK", b"Not Found", b"a\tb ", b" x", b"\x80\xff\x01"]
LENGTH_NAMES = [b"Content-Length", b"content-length", b"CONTENT-LENGTH"]
TE_NAMES = [b"Transfer-Encoding", b"transfer-encoding"]
TE_VALUES = [
    b"chunked", b"Chunked", b"CHUNKED", b"gzip", b"chunked, chunked", b"gzip, chunked",
    b" chunked", b"", b"identity",
]  # fmt: skip
CONNECTION_VALUES = [
    b"close", b"keep-alive", b"Close", b"Upgrade, keep-alive", b"close, close", b"",
    b"x , close", b"Keep-Alive", b",,", b"upgrade", b"close\x00", b" close",
]  # fmt: skip


def length_values(total: int) -> list[bytes]:
    n = b"%d" % total
    return [
        n, n, n, b"%d" % (total + 1), b"%d" % max(total - 1, 0), b"0", b"0" + n,
        n + b", " + n, n + b" ,\t" + n, n + b"," + n + b"1", n + b",", b"", b"-1", b"1" * 20,
        b"1" * 21, b"abc", b" " + n, n + b" ",
    ]  # fmt: skip


@st.composite
def header(draw: st.DrawFn, total: int) -> tuple[bytes, bytes]:
    kind = draw(st.sampled_from(["plain"] * 9 + ["bad"] + ["length"] * 3 + ["te"] + ["conn"] * 2))
    if kind == "plain":
        return draw(st.sampled_from(GOOD_NAMES)), draw(st.sampled_from(GOOD_VALUES))
    if kind == "bad":
        if draw(st.booleans()):
            return draw(st.sampled_from(BAD_NAMES)), draw(st.sampled_from(GOOD_VALUES))
        return draw(st.sampled_from(GOOD_NAMES)), draw(st.sampled_from(BAD_VALUES))
    if kind == "length":
        return draw(st.sampled_from(LENGTH_NAMES)), draw(st.sampled_from(length_values(total)))
    if kind == "te":
        return draw(st.sampled_from(TE_NAMES)), draw(st.sampled_from(TE_VALUES))
    return draw(st.sampled_from([b"Connection", b"connection"])), draw(
        st.sampled_from(CONNECTION_VALUES)
    )


PIECES = st.one_of(
    st.tuples(st.just("data"), st.binary(max_size=6)),
    st.tuples(st.just("span"), st.integers(0, 6)),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    body = draw(st.lists(PIECES, max_size=3))
    total = sum(len(piece) if kind == "data" else piece for kind, piece in body)
    informational = []
    if draw(st.integers(0, 3)) == 0:
        status = draw(st.sampled_from([100, 103, 199, 99, 200]))
        headers = draw(st.lists(header(0), max_size=2))
        informational.append((status, draw(st.sampled_from(REASONS)), headers))
    return Case(
        status=draw(st.sampled_from([200] * 4 + [201, 204, 205, 304, 404, 999, 199, 1000, 0, 101])),
        reason=draw(st.sampled_from(REASONS)),
        headers=draw(st.lists(header(total), max_size=4)),
        body=body,
        trailers=draw(st.none() | st.lists(header(0), max_size=2)),
        method=draw(st.sampled_from([b"GET", b"GET", b"HEAD", b"POST", b"CONNECT"])),
        version=draw(st.sampled_from([b"1.1", b"1.0"])),
        keep_alive=draw(st.booleans()),
        informational=informational,
    )


@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(cases())
def test_same_as_h11(case: Case) -> None:
    assert_same_as_h11(case)

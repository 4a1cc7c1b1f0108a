"""The WSGI bridge without sockets: wsgi.input over a fake fetch, the environ, responses."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import check_environ

import pytest

from gunrunner.apps.types import ClientDisconnected
from gunrunner.apps.wsgi import (
    LOOP_SIGNALS,
    ErrorStream,
    FileWrapper,
    ThreadPool,
    WSGIBridge,
    WSGIInput,
)
from tests.helpers.fakes import FakeExchange

Fetch = Callable[[], tuple[bytes, bool]]


class Fetcher:
    """A fetch() that hands out `pieces` in order and counts its calls."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)
        self.calls = 0

    def __call__(self) -> tuple[bytes, bool]:
        self.calls += 1
        assert self.pieces, "fetch() called after it reported the end of the body"
        data = self.pieces.pop(0)
        return data, bool(self.pieces)


def body(*pieces: bytes) -> tuple[WSGIInput, Fetcher]:
    fetch = Fetcher(*pieces)
    return WSGIInput(fetch), fetch


# -- wsgi.input ----------------------------------------------------------------------------


def test_read_all_joins_pieces_and_stops_at_eof() -> None:
    """read() returns the whole body; later reads return b"" without fetching."""
    stream, fetch = body(b"ab", b"cd", b"ef")
    assert stream.read() == b"abcdef"
    assert stream.read() == b""
    assert stream.read(10) == b""
    assert stream.readline() == b""
    assert fetch.calls == 3


def test_read_none_reads_all() -> None:
    """read(None) is read()."""
    stream, _ = body(b"ab", b"cd")
    assert stream.read(None) == b"abcd"


def test_read_size_spans_pieces() -> None:
    """read(n) returns exactly n bytes while the body lasts, fetching as needed."""
    stream, fetch = body(b"ab", b"cd", b"ef")
    assert stream.read(3) == b"abc"
    assert fetch.calls == 2
    assert stream.read(1) == b"d"
    assert fetch.calls == 2  # served from the buffer
    assert stream.read(10) == b"ef"
    assert stream.read(1) == b""


def test_read_zero_does_not_fetch() -> None:
    """read(0) returns b"" without waiting for the body."""
    stream, fetch = body(b"ab")
    assert stream.read(0) == b""
    assert fetch.calls == 0


def test_empty_pieces_with_more_are_skipped() -> None:
    """An empty piece that says more follows does not end the body."""
    stream, _ = body(b"", b"", b"x\n", b"", b"y")
    assert stream.readline() == b"x\n"
    assert stream.read(1) == b"y"
    assert stream.read() == b""


def test_no_body() -> None:
    """WSGIInput(None): an empty body for every kind of read."""
    stream = WSGIInput(None)
    assert stream.read() == b""
    assert stream.read(5) == b""
    assert stream.readline() == b""
    assert stream.readlines() == []
    assert list(stream) == []


def test_readline_spans_pieces() -> None:
    """readline(): lines that cross piece boundaries, and a last line without newline."""
    stream, _ = body(b"ab", b"c\nde", b"f\n", b"tail")
    assert stream.readline() == b"abc\n"
    assert stream.readline() == b"def\n"
    assert stream.readline() == b"tail"
    assert stream.readline() == b""


def test_readline_only_fetches_what_it_needs() -> None:
    """readline() stops fetching at the first newline."""
    stream, fetch = body(b"one\ntwo\n", b"three\n")
    assert stream.readline() == b"one\n"
    assert stream.readline() == b"two\n"
    assert fetch.calls == 1
    assert stream.readline() == b"three\n"


def test_readline_size_limit() -> None:
    """readline(n): at most n bytes; the rest of the line comes next."""
    stream, _ = body(b"abcdef\nxy\n")
    assert stream.readline(3) == b"abc"
    assert stream.readline() == b"def\n"
    assert stream.readline(10) == b"xy\n"


def test_readline_size_limit_across_pieces() -> None:
    """readline(n) with no newline in reach returns n bytes, fetching only what it needs."""
    stream, fetch = body(b"ab", b"cd", b"ef\n")
    assert stream.readline(3) == b"abc"
    assert fetch.calls == 2
    assert stream.readline(None) == b"def\n"


def test_readline_zero_and_negative() -> None:
    """readline(0) returns b""; a negative size means no limit."""
    stream, fetch = body(b"line\n")
    assert stream.readline(0) == b""
    assert fetch.calls == 0
    assert stream.readline(-5) == b"line\n"


def test_readlines_and_hint() -> None:
    """readlines() returns every line; with a hint it stops once that many bytes are in."""
    stream, _ = body(b"a\nbb\n", b"ccc\ndddd\n")
    assert stream.readlines() == [b"a\n", b"bb\n", b"ccc\n", b"dddd\n"]
    stream, _ = body(b"a\nbb\n", b"ccc\ndddd\n")
    assert stream.readlines(3) == [b"a\n", b"bb\n"]
    assert stream.readline() == b"ccc\n"


def test_iteration_yields_lines() -> None:
    """Iterating wsgi.input yields its lines, the last one without newline."""
    stream, _ = body(b"x\ny", b"\nz")
    assert list(stream) == [b"x\n", b"y\n", b"z"]


def test_large_body_in_many_pieces() -> None:
    """A 1 MB body in uneven pieces reads back identical with read(8192) loops."""
    data = bytes(range(256)) * 4096
    cuts = [0, 1, 7, 65536, 65539, 300000, 700001, len(data)]
    stream, _ = body(*[data[a:b] for a, b in itertools.pairwise(cuts)])
    out = bytearray()
    while piece := stream.read(8192):
        assert len(piece) == 8192 or len(out) + len(piece) == len(data)
        out += piece
    assert bytes(out) == data


def test_client_gone_raises() -> None:
    """A fetch that reports a disconnect raises ClientDisconnected, an OSError."""

    def fetch() -> tuple[bytes, bool]:
        raise ClientDisconnected("gone")

    stream = WSGIInput(fetch)
    with pytest.raises(OSError):
        stream.read()
    with pytest.raises(ClientDisconnected):
        stream.readline()


# -- wsgi.errors and wsgi.file_wrapper ------------------------------------------------------


def test_error_stream_logs_lines(caplog: pytest.LogCaptureFixture) -> None:
    """wsgi.errors: each written line is an error record of the gunrunner.app logger."""
    stream = ErrorStream()
    with caplog.at_level(logging.ERROR, logger="gunrunner.app"):
        assert stream.write("first\nsecond\n") == len("first\nsecond\n")
        stream.writelines(["third\n"])
        stream.flush()
    assert [r.getMessage() for r in caplog.records if r.name == "gunrunner.app"] == [
        "first",
        "second",
        "third",
    ]


def test_file_wrapper_blocks_and_close() -> None:
    """wsgi.file_wrapper yields the file in blocks and passes close() through."""
    data = io.BytesIO(b"x" * 10)
    wrapper = FileWrapper(data, 4)
    assert list(wrapper) == [b"xxxx", b"xxxx", b"xx"]
    wrapper.close()  # type: ignore[attr-defined]
    assert data.closed


# -- the bridge, with a fake Exchange (tests/helpers/fakes.py) ---------------------------


WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def serve(app: WSGIApp, exchange_factory: Callable[[], FakeExchange]) -> FakeExchange:
    """Run `app` for one exchange through a real WSGIBridge; return the exchange once the
    bridge's threads have exited, so that a stray call after the last one is in `calls`."""

    async def scenario() -> FakeExchange:
        exchange = exchange_factory()
        before = set(threading.enumerate())
        bridge = WSGIBridge(app, threads=2)
        threads = [t for t in threading.enumerate() if t not in before]
        try:
            bridge.handle(exchange)  # type: ignore[arg-type]
            await asyncio.wait_for(exchange.done.wait(), 5)
        finally:
            bridge.shutdown()
        for thread in threads:
            await asyncio.to_thread(thread.join, 5)
            assert not thread.is_alive(), "a WSGI thread is still busy"
        for _ in range(3):  # what the threads handed to the loop last runs now
            await asyncio.sleep(0)
        return exchange

    return asyncio.run(scenario())


def build_environ(exchange_factory: Callable[[], FakeExchange], **options: Any) -> dict[str, Any]:
    """The environ a WSGIBridge builds for one exchange."""

    async def scenario() -> dict[str, Any]:
        bridge = WSGIBridge(lambda e, s: [], threads=options.pop("threads", 2), **options)
        try:
            return bridge.environ(exchange_factory())  # type: ignore[arg-type]
        finally:
            bridge.shutdown()

    return asyncio.run(scenario())


def test_environ_fields() -> None:
    """The environ: CGI keys, decoded PATH_INFO, raw QUERY_STRING, header rules."""
    headers = [
        (b"host", b"example.com"),
        (b"content-type", b"text/plain"),
        (b"content-length", b"3"),
        (b"x-multi", b"a"),
        (b"x-multi", b"b"),
        (b"x_under", b"spoofed"),
        (b"x-under", b"real"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
    ]
    env = build_environ(
        lambda: FakeExchange(
            "POST", b"/caf%C3%A9/a%2Fb", b"q=%20x", headers=headers, pieces=[b"abc"]
        )
    )
    assert env["REQUEST_METHOD"] == "POST"
    assert env["PATH_INFO"] == "/caf\xc3\xa9/a/b"
    assert env["QUERY_STRING"] == "q=%20x"
    assert env["SCRIPT_NAME"] == ""
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("10.1.2.3", "41000")
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/plain", "3")
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_HOST"] == "example.com"
    assert env["HTTP_X_MULTI"] == "a, b"
    assert env["HTTP_X_UNDER"] == "real"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    check_environ(env)  # wsgiref.validate's own checks


def test_environ_one_thread_and_multiprocess() -> None:
    """wsgi.multithread follows threads, wsgi.multiprocess the option."""
    env = build_environ(FakeExchange, threads=1, multiprocess=True)
    assert env["wsgi.multithread"] is False
    assert env["wsgi.multiprocess"] is True


def test_environ_no_client_address() -> None:
    """A connection without a peer address (unix socket) has no REMOTE_ADDR."""

    def make() -> FakeExchange:
        exchange = FakeExchange()
        exchange.client = None
        return exchange

    env = build_environ(make)
    assert "REMOTE_ADDR" not in env
    check_environ(env)


def test_environ_root_path() -> None:
    """root_path: SCRIPT_NAME, and PATH_INFO without it (a trailing slash is ignored)."""
    env = build_environ(lambda: FakeExchange(raw_path=b"/api/users"), root_path="/api/")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/api", "/users")
    env = build_environ(lambda: FakeExchange(raw_path=b"/api"), root_path="/api")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/api", "")
    check_environ(env)


def test_environ_root_path_matches_whole_segments() -> None:
    """root_path /api and path /apiary: PATH_INFO is not cut mid-segment (PEP 3333)."""
    env = build_environ(lambda: FakeExchange(raw_path=b"/apiary"), root_path="/api")
    assert env["PATH_INFO"].startswith("/"), (env["SCRIPT_NAME"], env["PATH_INFO"])


def test_environ_input_reads_body_through_receive() -> None:
    """wsgi.input reads the body from Exchange.receive(), and is empty when there is none."""
    seen: dict[str, bytes] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["body"] = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b""]

    serve(app, lambda: FakeExchange("POST", pieces=[b"ab", b"cd", b"e"]))
    assert seen["body"] == b"abcde"
    serve(app, FakeExchange)
    assert seen["body"] == b""


def test_list_response_is_one_respond() -> None:
    """A list body goes back in one respond() call, joined."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("201 Created", [("X-A", "1")])
        return [b"he", b"llo"]

    exchange = serve(app, FakeExchange)
    assert exchange.calls == [("respond", 201, [(b"X-A", b"1")], b"hello")]


def test_generator_chunk_is_sent_before_the_next_is_asked_for() -> None:
    """PEP 3333: a yielded block goes out before the app is asked for the next one."""
    seen: list[list[Any]] = []
    holder: dict[str, FakeExchange] = {}

    class Recording(FakeExchange):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            holder["exchange"] = self

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"event 1"
        seen.append(list(holder["exchange"].calls))
        yield b"event 2"

    calls = serve(app, Recording).calls
    assert seen == [[("start", 200, []), ("write", b"event 1")]]
    assert calls[-1] == ("end",)


def test_iterable_filling_its_content_length_is_one_respond() -> None:
    """Flask and Django return iterables: a first block that is the whole declared body
    goes out as one respond(), like a list."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "4")])
        yield b"body"

    calls = serve(app, FakeExchange).calls
    assert calls == [("respond", 200, [(b"Content-Length", b"4")], b"body")]


def test_multi_chunk_generator_streams_in_order() -> None:
    """A generator with several chunks: start, the chunks in order, end."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"a"
        yield b""
        yield b"b"
        yield b"c"

    calls = serve(app, FakeExchange).calls
    assert calls == [
        ("start", 200, []),
        ("write", b"a"),
        ("write", b"b"),
        ("write", b"c"),
        ("end",),
    ]


def test_write_callable_goes_first() -> None:
    """write() from start_response sends before the iterable's chunks."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"1")
        write(b"2")
        return [b"3"]

    calls = serve(app, FakeExchange).calls
    assert calls[0] == ("start", 200, [])
    assert [c[1] for c in calls if c[0] == "write"] == [b"1", b"2", b"3"]
    assert calls[-1] == ("end",)


def test_exception_before_start_response_is_500() -> None:
    """An app that raises at once: 500 with Connection: close."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise ValueError("nope")

    ((kind, status, headers, _),) = serve(app, FakeExchange).calls
    assert (kind, status) == ("respond", 500)
    assert (b"connection", b"close") in headers


@pytest.mark.parametrize(
    "misuse",
    ["no-start-response", "twice", "bad-status", "non-latin-1-header"],
)
def test_misused_start_response_is_500(misuse: str) -> None:
    """start_response misuse (missing, twice, bad status, bad header) answers 500."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if misuse == "twice":
            start_response("200 OK", [])
            start_response("200 OK", [])
        elif misuse == "bad-status":
            start_response("OK", [])
        elif misuse == "non-latin-1-header":
            start_response("200 OK", [("X-Name", "\u20ac")])
        return [b"body"]

    calls = serve(app, FakeExchange).calls
    assert [c[:2] for c in calls] == [("respond", 500)]


def test_exc_info_before_body_replaces_status() -> None:
    """start_response with exc_info before any body: the new status and headers win."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise KeyError("x")
        except KeyError:
            start_response("500 Internal Server Error", [("X-Second", "2")], sys.exc_info())
        return [b"oops"]

    assert serve(app, FakeExchange).calls == [("respond", 500, [(b"X-Second", b"2")], b"oops")]


def test_exc_info_after_body_aborts() -> None:
    """start_response with exc_info after body went out re-raises: the connection drops."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"partial")
        try:
            raise KeyError("x")
        except KeyError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"never"]

    calls = serve(app, FakeExchange).calls
    assert calls[-1] == ("abort",)
    assert ("end",) not in calls


class Closing:
    """An iterable that records close(); raises after `fail_after` chunks if set."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = chunks
        self.fail_after = fail_after
        self.closed = 0
        self.closed_event = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.fail_after is not None and index >= self.fail_after:
                raise RuntimeError("iteration failed")
            yield chunk

    def close(self) -> None:
        self.closed += 1
        self.closed_event.set()


@pytest.mark.parametrize(
    ("fail_after", "expected_last"),
    [(None, "end"), (0, "respond"), (1, "abort"), (2, "abort")],
    ids=["success", "fails-at-once", "fails-after-first-chunk", "fails-mid-stream"],
)
def test_iterable_close_always_called(fail_after: int | None, expected_last: str) -> None:
    """close() is called once whether the iteration succeeds or raises."""
    body_iterable = Closing([b"a", b"b", b"c"], fail_after)

    def app(environ: dict[str, Any], start_response: Any) -> Closing:
        start_response("200 OK", [])
        return body_iterable

    calls = serve(app, FakeExchange).calls
    assert calls[-1][0] == expected_last
    if expected_last == "respond":
        assert calls[-1][1] == 500  # nothing had gone out: a clean 500
    assert body_iterable.closed_event.wait(5), "close() was not called"
    assert body_iterable.closed == 1


def test_pool_threads_leave_the_loops_signals_to_the_loop_thread() -> None:
    """A pool thread blocks TERM and the rest, so the kernel delivers them to the loop's
    thread; the loop thread's own mask is left as it was."""
    loop = asyncio.new_event_loop()
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        pool = ThreadPool(2, loop)
        masks: list[set[signal.Signals]] = []
        done = threading.Event()

        def job() -> None:
            masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
            done.set()

        pool.submit(job)
        assert done.wait(5)
        pool.shutdown()
        assert LOOP_SIGNALS.issubset(masks[0])
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
        assert signal.SIGTERM not in before
    finally:
        loop.close()

"""The ASGI bridge without sockets: scopes, messages mapped to Exchange calls, errors,
lifespan, ASGI 2 (gunrunner/apps/asgi.py).

The driver side is a FakeExchange / FakeSession (tests/helpers/fakes.py) that records
every call; a test runs the app's task to its end and asserts on that record.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from gunrunner.apps.asgi import ASGI_VERSION, ASGIBridge, Lifespan, as_asgi3
from gunrunner.apps.types import ASGI3App, ClientDisconnected, Message, Receive, Scope, Send
from gunrunner.errors import BootError
from tests.helpers.fakes import FakeExchange, FakeSession, in_loop

App = ASGI3App
LOGGER = "gunrunner.apps.asgi"
ERROR_500 = (
    "respond",
    500,
    [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"22"),
        (b"connection", b"close"),
    ],
    b"Internal Server Error\n",
)


async def serve(app: App, exchange: FakeExchange, **options: Any) -> FakeExchange:
    """Run `app` for one exchange through a real ASGIBridge, to the end of its cycle (at
    once, or as a task once it waited)."""
    bridge = ASGIBridge(app, **options)
    bridge.handle(exchange)
    for task in list(bridge.tasks):
        await asyncio.wait_for(task, 5)
    assert not bridge.tasks  # the bridge lets go of a finished task
    return exchange


async def serve_websocket(app: App, session: FakeSession, **options: Any) -> FakeSession:
    """Run `app` for one WebSocket session through a real ASGIBridge, to its end."""
    bridge = ASGIBridge(app, **options)
    bridge.handle_websocket(session)
    for task in list(bridge.tasks):
        await asyncio.wait_for(task, 5)
    assert not bridge.tasks
    return session


def scope_of(seen: list[Scope]) -> App:
    """An app that keeps its scope in `seen` and answers 204."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close"})
            return
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    return app


def sends(*messages: Message) -> App:
    """An app that sends `messages` in order and returns."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)

    return app


START = {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]}


# -- the http scope ------------------------------------------------------------------------


@in_loop
async def test_http_scope() -> None:
    """Every key of the http scope (ASGI spec 2.4), from the Exchange as it is."""
    headers = [(b"host", b"example.com"), (b"x-multi", b"a"), (b"x-multi", b"b")]
    exchange = FakeExchange("POST", b"/caf%C3%A9/a%2Fb", b"q=%20x", headers=headers)
    exchange.path = "/café/a/b"  # the driver decodes it
    seen: list[Scope] = []
    await serve(scope_of(seen), exchange, root_path="/api")
    (scope,) = seen
    assert scope == {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/café/a/b",
        "raw_path": b"/caf%C3%A9/a%2Fb",
        "query_string": b"q=%20x",
        "root_path": "/api",
        "headers": headers,
        "client": ("10.1.2.3", 41000),
        "server": ("127.0.0.1", 8000),
        "extensions": {"http.response.trailers": {}, "http.response.pathsend": {}},
    }
    assert scope["asgi"] == ASGI_VERSION


@in_loop
async def test_http_scope_tls_state_and_request_id() -> None:
    """TLS adds the tls extension; lifespan state is a copy per request; the request id
    (access log on) is passed as gunrunner.request_id."""
    exchange = FakeExchange()
    exchange.tls = {"server_cert": None, "tls_version": 0x0304}
    exchange.request_id = "abc-123"
    state = {"db": "pool"}
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)
        scope["state"]["added"] = True  # a request's change stays in its copy
        await sends(START, {"type": "http.response.body"})(scope, receive, send)

    await serve(app, exchange, state=state)
    (scope,) = seen
    assert scope["extensions"]["tls"] == {"server_cert": None, "tls_version": 0x0304}
    assert scope["state"] == {"db": "pool", "added": True}
    assert state == {"db": "pool"}
    assert scope["gunrunner.request_id"] == "abc-123"


@in_loop
async def test_http_scope_without_state_tls_or_request_id() -> None:
    """No lifespan state: no "state" key (the spec: absent, not empty); no tls, no id."""
    seen: list[Scope] = []
    await serve(scope_of(seen), FakeExchange())
    (scope,) = seen
    assert "state" not in scope
    assert "tls" not in scope["extensions"]
    assert "gunrunner.request_id" not in scope


# -- responses -----------------------------------------------------------------------------


@in_loop
async def test_one_message_body_is_one_respond() -> None:
    """Rule 2: start is held; a body in one message goes out with it in one call."""
    exchange = await serve(
        sends(START, {"type": "http.response.body", "body": b"hello"}), FakeExchange()
    )
    assert exchange.calls == [("respond", 200, [(b"x-a", b"1")], b"hello")]


@in_loop
async def test_streamed_body() -> None:
    """more_body: start, each non-empty part written in order, then end."""
    exchange = await serve(
        sends(
            START,
            {"type": "http.response.body", "body": b"a", "more_body": True},
            {"type": "http.response.body", "body": b"", "more_body": True},
            {"type": "http.response.body", "body": b"b", "more_body": True},
            {"type": "http.response.body"},
        ),
        FakeExchange(),
    )
    assert exchange.calls == [
        ("start", 200, [(b"x-a", b"1")]),
        ("write", b"a"),
        ("write", b"b"),
        ("end",),
    ]


@in_loop
async def test_trailers_end_the_response() -> None:
    """trailers: True: the body is streamed; the trailers messages end the response."""
    exchange = await serve(
        sends(
            {**START, "trailers": True},
            {"type": "http.response.body", "body": b"data"},
            {"type": "http.response.trailers", "headers": [(b"x-d", b"1")], "more_trailers": True},
            {"type": "http.response.trailers", "headers": [(b"x-n", b"2")]},
        ),
        FakeExchange(),
    )
    assert exchange.calls == [
        ("start", 200, [(b"x-a", b"1")]),
        ("write", b"data"),
        ("end", [(b"x-d", b"1"), (b"x-n", b"2")]),
    ]


@in_loop
async def test_pathsend_sends_the_file(tmp_path: Path) -> None:
    """http.response.pathsend: the whole body is the file, through Exchange.sendfile()."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    exchange = await serve(
        sends(START, {"type": "http.response.pathsend", "path": str(path)}), FakeExchange()
    )
    assert exchange.calls == [
        ("start", 200, [(b"x-a", b"1")]),
        ("sendfile", b"0123456789"),
        ("end",),
    ]


@pytest.mark.parametrize("where", ["relative", "directory", "missing"])
@in_loop
async def test_pathsend_of_a_bad_path_is_500(
    where: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A relative path, a directory or a missing file: an app error before the response
    started, so a 500 (and the traceback in the log)."""
    path = {"relative": "f.bin", "directory": str(tmp_path), "missing": str(tmp_path / "no")}
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        exchange = await serve(
            sends(START, {"type": "http.response.pathsend", "path": path[where]}), FakeExchange()
        )
    assert exchange.calls == [ERROR_500]
    assert "exception in ASGI app while serving GET /" in caplog.text


# -- the request body and disconnects ------------------------------------------------------


def reader(got: list[Message], reads: int, respond_first: bool = False) -> App:
    """An app that calls receive() `reads` times (after answering, if `respond_first`)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if respond_first:
            await sends(START, {"type": "http.response.body"})(scope, receive, send)
        for _ in range(reads):
            got.append(await receive())
        if not respond_first:
            await sends(START, {"type": "http.response.body"})(scope, receive, send)

    return app


@in_loop
async def test_body_arrives_in_http_request_messages() -> None:
    """Each piece is one http.request; more_body is False on the last."""
    got: list[Message] = []
    await serve(reader(got, 2), FakeExchange("POST", pieces=[b"ab", b"cd"]))
    assert got == [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]


@in_loop
async def test_no_body_is_one_empty_message() -> None:
    got: list[Message] = []
    await serve(reader(got, 1), FakeExchange())
    assert got == [{"type": "http.request", "body": b"", "more_body": False}]


@in_loop
async def test_receive_after_the_response_is_disconnect() -> None:
    """Once the body was read and the response is over, receive() says http.disconnect."""
    got: list[Message] = []
    await serve(reader(got, 2, respond_first=True), FakeExchange())
    assert got == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]


@in_loop
async def test_client_gone_mid_body_is_disconnect() -> None:
    """The client leaves before the body is complete: http.disconnect, never a short body
    marked complete."""
    got: list[Message] = []
    exchange = FakeExchange("POST", pieces=[b"ab", ClientDisconnected("gone")])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        got.append(await receive())
        got.append(await receive())

    await serve(app, exchange)
    assert got == [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert exchange.calls == []  # nobody to answer; no 500, no error logged


@in_loop
async def test_send_after_the_client_left_raises_and_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """send() once the client is gone raises ClientDisconnected (an OSError); the bridge
    logs it at DEBUG only and sends nothing more."""
    raised: list[BaseException] = []
    exchange = FakeExchange()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        exchange.disconnect()
        try:
            await send({"type": "http.response.body", "body": b"more", "more_body": True})
        except OSError as exc:
            raised.append(exc)
            raise

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        await serve(app, exchange)
    assert [type(e) for e in raised] == [ClientDisconnected]
    assert exchange.calls == [("start", 200, [(b"x-a", b"1")]), ("write", b"part")]
    assert "client went away during GET /" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- errors (Rule 3) -----------------------------------------------------------------------


@in_loop
async def test_exception_before_the_response_is_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("nope")

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        exchange = await serve(app, FakeExchange("GET", b"/x"))
    assert exchange.calls == [ERROR_500]
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    assert record.getMessage() == "exception in ASGI app while serving GET /x"
    assert record.exc_info is not None and record.exc_info[0] is ValueError


@in_loop
async def test_exception_after_the_response_started_aborts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Part of the body is out: the connection is dropped, never a 500 in the middle."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("mid-body")

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        exchange = await serve(app, FakeExchange())
    assert exchange.calls == [("start", 200, [(b"x-a", b"1")]), ("write", b"part"), ("abort",)]
    assert "exception in ASGI app while serving GET /" in caplog.text


@in_loop
async def test_exception_after_a_complete_response_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The response went out whole: nothing more is sent; the log says what happened."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await sends(START, {"type": "http.response.body", "body": b"ok"})(scope, receive, send)
        raise ValueError("after")

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        exchange = await serve(app, FakeExchange())
    assert exchange.calls == [("respond", 200, [(b"x-a", b"1")], b"ok")]
    assert "exception in ASGI app" in caplog.text


@in_loop
async def test_returning_without_a_response_is_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        exchange = await serve(app, FakeExchange("GET", b"/quiet"))
    assert exchange.calls == [ERROR_500]
    assert "ASGI app returned without sending a response to GET /quiet" in caplog.text


@in_loop
async def test_returning_mid_body_aborts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        exchange = await serve(
            sends(START, {"type": "http.response.body", "body": b"a", "more_body": True}),
            FakeExchange(),
        )
    assert exchange.calls[-1] == ("abort",)
    assert "ASGI app returned before finishing the response body" in caplog.text


MISUSE: dict[str, list[Message]] = {
    "body-before-start": [{"type": "http.response.body", "body": b"x"}],
    "start-twice": [START, START],
    "status-too-low": [{"type": "http.response.start", "status": 99}],
    "status-as-text": [{"type": "http.response.start", "status": "200"}],
    "unknown-type": [{"type": "http.response.push"}],
    "trailers-not-announced": [START, {"type": "http.response.trailers"}],
    "pathsend-after-body": [
        {**START, "trailers": True},
        {"type": "http.response.body", "body": b"x", "more_body": True},
        {"type": "http.response.pathsend", "path": "/etc/hostname"},
    ],
}


@pytest.mark.parametrize("case", list(MISUSE))
@in_loop
async def test_protocol_misuse_is_an_app_error(case: str, caplog: pytest.LogCaptureFixture) -> None:
    """A message out of order or malformed raises RuntimeError in the app's send(): a 500
    if nothing went out yet, else the connection is dropped."""
    raised: list[BaseException] = []
    messages = MISUSE[case]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            for message in messages:
                await send(message)
        except RuntimeError as exc:
            raised.append(exc)
            raise

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        exchange = await serve(app, FakeExchange())
    assert len(raised) == 1
    if exchange.calls and exchange.calls[0][0] == "start":
        assert exchange.calls[-1] == ("abort",)
    else:
        assert exchange.calls == [ERROR_500]


@in_loop
async def test_body_after_the_end_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """A second final body message: RuntimeError; the complete response stands."""
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        exchange = await serve(
            sends(
                START,
                {"type": "http.response.body", "body": b"a"},
                {"type": "http.response.body", "body": b"b"},
            ),
            FakeExchange(),
        )
    assert exchange.calls == [("respond", 200, [(b"x-a", b"1")], b"a")]
    assert "RuntimeError: ASGI app sent http.response.body after the response ended" in (
        caplog.text
    )


@in_loop
async def test_cancelled_request_aborts_the_exchange() -> None:
    """Shutdown cancels the tasks: the exchange is aborted, the cancellation goes on."""
    started = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await asyncio.Event().wait()  # forever

    exchange = FakeExchange()
    bridge = ASGIBridge(app)
    bridge.handle(exchange)
    (task,) = bridge.tasks
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert exchange.calls == [("abort",)]
    assert not bridge.tasks  # a cancelled task is let go too


# -- ASGI 2 --------------------------------------------------------------------------------


@in_loop
async def test_asgi2_app_is_wrapped() -> None:
    """interface asgi2: app(scope) makes an instance, which is awaited with (receive, send)."""
    made: list[Scope] = []

    class Asgi2:
        def __init__(self, scope: Scope) -> None:
            made.append(scope)

        async def __call__(self, receive: Receive, send: Send) -> None:
            await send(START)
            await send({"type": "http.response.body", "body": b"two"})

    app = as_asgi3(Asgi2, "asgi2")
    exchange = await serve(app, FakeExchange("GET", b"/v2"))
    assert [scope["path"] for scope in made] == ["/v2"]
    assert exchange.calls == [("respond", 200, [(b"x-a", b"1")], b"two")]


def test_asgi3_app_is_not_wrapped() -> None:
    app = sends()
    assert as_asgi3(app, "asgi3") is app
    assert as_asgi3(app, "asgi") is app


# -- WebSocket -----------------------------------------------------------------------------


@in_loop
async def test_websocket_scope() -> None:
    session = FakeSession("/chat", b"room=1", [(b"host", b"x")], ["a", "b"])
    session.tls = {"tls_version": 0x0304}
    seen: list[Scope] = []
    await serve_websocket(scope_of(seen), session, root_path="/r", state={"k": 1})
    (scope,) = seen
    assert scope == {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/chat",
        "raw_path": b"/chat",
        "query_string": b"room=1",
        "root_path": "/r",
        "headers": [(b"host", b"x")],
        "client": ("10.1.2.3", 41000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": ["a", "b"],
        "extensions": {"websocket.http.response": {}, "tls": {"tls_version": 0x0304}},
        "state": {"k": 1},
    }


@in_loop
async def test_websocket_echo_until_disconnect() -> None:
    """connect first; then each message maps to send(); the close ends receive()."""
    got: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        got.append(await receive())
        await send({"type": "websocket.accept", "subprotocol": "b", "headers": [(b"x", b"1")]})
        while True:
            message = await receive()
            got.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send(
                {
                    "type": "websocket.send",
                    **{k: message[k] for k in ("text", "bytes") if k in message},
                }
            )

    session = FakeSession()
    session.client_sends("hi")
    session.client_sends(b"\x00\x01")
    session.client_closes(4000, "bye")
    await serve_websocket(app, session)
    assert got == [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.receive", "bytes": b"\x00\x01"},
        {"type": "websocket.disconnect", "code": 4000, "reason": "bye"},
    ]
    assert session.calls == [("accept", "b", [(b"x", b"1")]), ("send", "hi"), ("send", b"\x00\x01")]


@in_loop
async def test_websocket_denial_response() -> None:
    """websocket.http.response.*: the handshake is rejected with the app's response."""
    app = sends(
        {"type": "websocket.http.response.start", "status": 401, "headers": [(b"x", b"1")]},
        {"type": "websocket.http.response.body", "body": b"no, ", "more_body": True},
        {"type": "websocket.http.response.body", "body": b"go away"},
    )
    session = await serve_websocket(app, FakeSession())
    assert session.calls == [
        ("reject", 401, [(b"x", b"1")], b"no, ", True),
        ("reject", 401, [], b"go away", False),
    ]


@in_loop
async def test_websocket_close_before_accept_and_return_without_close() -> None:
    """Returning without accepting is a close (a 403); returning after accept closes 1000."""
    session = await serve_websocket(sends(), FakeSession())
    assert session.calls == [("close", 1000, "")]
    session = await serve_websocket(sends({"type": "websocket.accept"}), FakeSession())
    assert session.calls == [("accept", None, []), ("close", 1000, "")]


@pytest.mark.parametrize("accepted", [False, True], ids=["before-accept", "after-accept"])
@in_loop
async def test_websocket_app_error(accepted: bool, caplog: pytest.LogCaptureFixture) -> None:
    """An exception before accept: a 500 response; after: close 1011. Logged either way."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if accepted:
            await send({"type": "websocket.accept"})
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        session = await serve_websocket(app, FakeSession("/ws"))
    if accepted:
        assert session.calls == [("accept", None, []), ("close", 1011, "internal error")]
    else:
        assert session.calls == [
            ("reject", 500, [(b"content-length", b"22")], b"Internal Server Error\n", False)
        ]
    assert "exception in ASGI app while serving WebSocket /ws" in caplog.text


# -- lifespan ------------------------------------------------------------------------------


def lifespan_app(
    startup: Message | None = None,
    shutdown: Message | None = None,
    raise_at: str = "",
    seen: list[Message] | None = None,
) -> App:
    """A lifespan app: answers startup and shutdown with the given messages (or raises)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        assert scope["asgi"] == ASGI_VERSION
        if raise_at == "at-once":
            raise RuntimeError("no lifespan here")
        message = await receive()
        if seen is not None:
            seen.append(message)
        scope["state"]["greeting"] = "hello"
        if raise_at == "startup":
            raise RuntimeError("cache warm-up failed")
        await send(startup or {"type": "lifespan.startup.complete"})
        message = await receive()
        if seen is not None:
            seen.append(message)
        if raise_at == "shutdown":
            raise RuntimeError("flush failed")
        if shutdown is not None:
            await send(shutdown)

    return app


@in_loop
async def test_lifespan_startup_and_shutdown() -> None:
    """startup.complete, then shutdown.complete; the state the app set is kept."""
    seen: list[Message] = []
    lifespan = Lifespan(
        lifespan_app(shutdown={"type": "lifespan.shutdown.complete"}, seen=seen), "auto"
    )
    await lifespan.startup()
    assert lifespan.supported
    assert lifespan.state == {"greeting": "hello"}
    await lifespan.shutdown(5)
    assert seen == [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"type": "lifespan.startup.failed", "message": "db down"}, "db down"),
        ({"type": "lifespan.startup.failed"}, "(the app gave no message)"),
    ],
    ids=["with-message", "without-message"],
)
@pytest.mark.parametrize("mode", ["auto", "on"])
@in_loop
async def test_lifespan_startup_failed_is_a_boot_error(
    mode: str, message: Message, reason: str
) -> None:
    lifespan = Lifespan(lifespan_app(startup=message), mode)
    with pytest.raises(BootError, match=re.escape(f"ASGI lifespan startup failed: {reason}")):
        await lifespan.startup()


@in_loop
async def test_lifespan_auto_app_without_lifespan(caplog: pytest.LogCaptureFixture) -> None:
    """mode auto: an app that raises at once does not speak lifespan: INFO, serve on."""
    with caplog.at_level(logging.INFO, logger=LOGGER):
        lifespan = Lifespan(lifespan_app(raise_at="at-once"), "auto")
        await lifespan.startup()
        await lifespan.shutdown(5)  # nothing to shut down: returns at once
    assert not lifespan.supported
    assert (
        "ASGI lifespan not supported by the app (RuntimeError: no lifespan here); "
        "going on without it"
    ) in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@in_loop
async def test_lifespan_on_app_raising_is_a_boot_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        lifespan = Lifespan(lifespan_app(raise_at="startup"), "on")
        with pytest.raises(
            BootError, match="ASGI lifespan startup failed: RuntimeError: cache warm-up failed"
        ):
            await lifespan.startup()
    assert "exception in ASGI lifespan startup" in caplog.text


@in_loop
async def test_lifespan_error_after_startup_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in the shutdown phase: logged with its traceback; shutdown returns."""
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        lifespan = Lifespan(lifespan_app(raise_at="shutdown"), "auto")
        await lifespan.startup()
        await lifespan.shutdown(5)
    assert lifespan.supported
    assert "exception in ASGI lifespan after startup" in caplog.text


@in_loop
async def test_lifespan_shutdown_failed_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        lifespan = Lifespan(
            lifespan_app(shutdown={"type": "lifespan.shutdown.failed", "message": "disk full"}),
            "auto",
        )
        await lifespan.startup()
        await lifespan.shutdown(5)
    assert "ASGI lifespan shutdown failed: disk full" in caplog.text


@in_loop
async def test_lifespan_shutdown_that_never_finishes_is_cut(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An app that never answers shutdown: a warning after the timeout, its task
    cancelled (timeout 0 here: no test waits)."""

    async def stuck(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await asyncio.Event().wait()  # never answers the shutdown

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        lifespan = Lifespan(stuck, "auto")
        await lifespan.startup()
        await lifespan.shutdown(0)
    assert "ASGI lifespan shutdown did not finish within 0.0s" in caplog.text
    task = lifespan._task
    assert task is not None
    with pytest.raises(asyncio.CancelledError):
        await task

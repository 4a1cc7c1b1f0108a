"""Apps for tests/integration/test_http.py (module path: tests.apps.http_apps).

`wsgi_app` and `asgi_app` answer the same paths the same way, so that one test can run
against either. What a test cannot see on the wire (close() calls, http.disconnect) is
recorded in STATE and read back with GET /state; the tests that use it run one worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs
from wsgiref.validate import validator

StartResponse = Callable[..., Callable[[bytes], None]]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

HELLO = b"hello, world\n"
# What the apps saw, for GET /state (one worker: every request meets the same dict).
STATE: dict[str, list[Any]] = {
    "closed": [],
    "disconnects": [],
    "after_response": [],
    "waiting": [],  # /longpoll tokens whose app reached receive() after the body
}


def _mark(text: str) -> bytes:
    """GET /marker?TEXT: one "app marker: TEXT" line in the server's log (stderr), written
    before the answer; a test waits for it to know that what came before has landed."""
    print(f"app marker: {text}", file=sys.stderr, flush=True)
    return b"marked\n"


def _query(query_string: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(query_string).items()}


def _digest(data: bytes) -> dict[str, Any]:
    return {"len": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _chunk(index: int, size: int) -> bytes:
    """Body piece `index` of /stream: "chunkN\\n", or `size` bytes of one letter."""
    if size:
        return bytes([65 + index % 26]) * size
    return b"chunk%d\n" % index


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


# -- WSGI ----------------------------------------------------------------------------------


class _ClosingIterable:
    """A body iterable that records its close(); `fail_after` chunks, then it raises."""

    def __init__(self, token: str, chunks: list[bytes], fail_after: int | None) -> None:
        self.token = token
        self.chunks = chunks
        self.fail_after = fail_after

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if self.fail_after is not None and index >= self.fail_after:
                raise RuntimeError("boom while iterating the body")
            yield chunk

    def close(self) -> None:
        STATE["closed"].append(self.token)


def _wsgi_environ_view(environ: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in environ.items() if isinstance(v, str)}
    for key in ("wsgi.multiprocess", "wsgi.multithread", "wsgi.run_once", "wsgi.input_terminated"):
        shown[key] = environ.get(key)
    shown["wsgi.version"] = list(environ["wsgi.version"])
    return shown


def wsgi_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Routes on PATH_INFO; an unknown path gets 404 and the environ as JSON."""
    path = environ["PATH_INFO"]
    query = _query(environ["QUERY_STRING"])
    stream = environ["wsgi.input"]
    text = [("Content-Type", "text/plain")]
    as_json = [("Content-Type", "application/json")]

    if path == "/hello":
        start_response("200 OK", text)
        return [HELLO]
    if path == "/environ":
        shown = _wsgi_environ_view(environ)
        shown["body"] = _digest(stream.read())
        start_response("200 OK", as_json)
        return [_json(shown)]
    if path == "/file":
        # ?path=P[&offset=N][&cl=N][&wrap=pipe]: the file through wsgi.file_wrapper.
        opened = open(query["path"], "rb")  # noqa: SIM115 (the server closes it)
        opened.seek(int(query.get("offset", "0")))
        headers = [("Content-Type", "application/octet-stream")]
        if "cl" in query:
            headers.append(("Content-Length", query["cl"]))
        start_response("200 OK", headers)
        if query.get("wrap") == "pipe":  # not a regular file: iterated, not sendfile
            import io

            buffered = io.BytesIO(opened.read())
            opened.close()
            return environ["wsgi.file_wrapper"](buffered, 4096)  # type: ignore[no-any-return]
        return environ["wsgi.file_wrapper"](opened)  # type: ignore[no-any-return]
    if path == "/tls":
        start_response("200 OK", as_json)
        return [_json(environ.get("gunrunner.tls"))]
    if path == "/stream":
        count = int(query.get("n", "3"))
        size = int(query.get("size", "0"))
        start_response("200 OK", text)
        return (_chunk(i, size) for i in range(count))
    if path in ("/read", "/read-sized", "/readline", "/readline-limit", "/iter"):
        if path == "/read":
            body = stream.read()
        elif path == "/read-sized":
            parts = []
            while part := stream.read(65536):
                parts.append(part)
            body = b"".join(parts)
        elif path == "/readline":
            parts = []
            while line := stream.readline():
                parts.append(line)
            body = b"".join(parts)
        elif path == "/readline-limit":
            parts = []
            while line := stream.readline(1000):
                assert len(line) <= 1000
                parts.append(line)
            body = b"".join(parts)
        else:
            parts = list(stream)
            body = b"".join(parts)
        result = _digest(body)
        if path not in ("/read", "/read-sized"):
            result["lines"] = len(parts)
        start_response("200 OK", as_json)
        return [_json(result)]
    if path == "/noread":
        start_response("200 OK", text)
        return [b"did not read\n"]
    if path == "/error":
        raise RuntimeError("boom before the response")
    if path == "/error-streaming":
        start_response("200 OK", text)
        return _ClosingIterable("error-streaming", [b"first\n", b"second\n", b"third\n"], 2)
    if path == "/close-raises":
        start_response("200 OK", text)
        return _ClosingIterable(query.get("token", "raises"), [b"a\n", b"b\n"], 0)
    if path == "/close-ok":
        start_response("200 OK", text)
        return _ClosingIterable(query.get("token", "ok"), [b"a\n", b"b\n"], None)
    if path == "/no-start-response":
        return [b"never started\n"]
    if path == "/bad-length":
        start_response("200 OK", [*text, ("Content-Length", "10")])
        return [b"12345"]
    if path == "/write":
        write = start_response("200 OK", text)
        write(b"part1,")
        write(b"part2,")
        return [b"part3"]
    if path == "/exc-info":
        start_response("200 OK", text)
        try:
            raise ValueError("failed after start_response")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Recovered", "yes")], sys.exc_info())
        return [b"recovered\n"]
    if path == "/status204":
        start_response("204 No Content", [])
        return []
    if path == "/server-header":
        start_response("200 OK", [*text, ("Server", "custom")])
        return [b"custom server\n"]
    if path == "/state":
        start_response("200 OK", as_json)
        return [_json(STATE)]
    if path == "/pid":
        start_response("200 OK", text)
        return [str(os.getpid()).encode()]
    if path == "/sleep":
        time.sleep(float(query.get("s", "1")))
        start_response("200 OK", text)
        return [b"slept\n"]
    if path == "/marker":
        body = _mark(environ["QUERY_STRING"])
        start_response("200 OK", text)
        return [body]
    shown = _wsgi_environ_view(environ)
    start_response("404 Not Found", as_json)
    return [_json(shown)]


class WsgiClass:
    """A WSGI app written as a class (PEP 3333 allows it); needs --interface wsgi."""

    def __init__(self, environ: dict[str, Any], start_response: StartResponse) -> None:
        self.environ = environ
        self.start_response = start_response

    def __iter__(self) -> Iterator[bytes]:
        self.start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"wsgi class at " + self.environ["PATH_INFO"].encode("latin-1")


def create_wsgi_app() -> Callable[..., Iterable[bytes]]:
    """An app factory (--factory)."""
    return wsgi_app


def _plain_wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A by-the-book app for wsgiref.validate: GET says hello, POST echoes the body."""
    if environ["REQUEST_METHOD"] == "POST":
        length = int(environ.get("CONTENT_LENGTH") or "0")
        stream = environ["wsgi.input"]
        first = stream.readline(5)
        body = first + stream.read(length - len(first))
    else:
        body = HELLO
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


validated_app = validator(_plain_wsgi)


# -- ASGI ----------------------------------------------------------------------------------


async def _read_body(receive: Receive) -> tuple[bytes, int]:
    """The whole request body and the number of http.request messages it came in."""
    parts = []
    messages = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise OSError(f"unexpected {message['type']} while reading the body")
        messages += 1
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), messages


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers if headers is not None else [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _scope_view(scope: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key, value in scope.items():
        if key == "headers":
            shown["headers_types"] = sorted(
                {
                    f"{type(pair).__name__}[{','.join(type(x).__name__ for x in pair)}]"
                    for pair in value
                }
            )
            shown[key] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in value]
        elif key == "raw_path":
            shown["raw_path_type"] = type(value).__name__
            shown[key] = value.decode("latin-1")
        elif key == "query_string":
            shown["query_string_type"] = type(value).__name__
            shown[key] = value.decode("latin-1")
        elif key in ("client", "server"):
            shown[key] = list(value) if value is not None else None
        elif key == "state":
            shown[key] = dict(value)
        elif key == "extensions":
            shown[key] = sorted(value)
        else:
            shown[key] = value
    return shown


async def asgi_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """ASGI twin of wsgi_app (no lifespan: it raises, which lifespan=auto accepts)."""
    if scope["type"] != "http":
        raise RuntimeError("lifespan not supported")
    path = scope["path"]
    query = _query(scope["query_string"].decode("latin-1"))
    json_headers = [(b"content-type", b"application/json")]

    if path == "/hello":
        await _respond(send, 200, HELLO)
    elif path == "/scope":
        body, _ = await _read_body(receive)
        shown = _scope_view(scope)
        shown["body"] = _digest(body)
        await _respond(send, 200, _json(shown), json_headers)
    elif path == "/tls":
        await _respond(send, 200, _json(scope["extensions"].get("tls")), json_headers)
    elif path == "/pathsend":
        # ?path=P[&cl=1]: the file through the http.response.pathsend extension.
        headers = [(b"content-type", b"application/octet-stream")]
        if "cl" in query:
            headers.append((b"content-length", b"%d" % os.path.getsize(query["path"])))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": query["path"]})
    elif path == "/close-stream":
        # Connection: close and five chunks 0.2 s apart (bytes from the client meanwhile
        # must not cut it).
        headers = [(b"content-type", b"text/plain"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"c%d\n" % i, "more_body": True})
            await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/bad-trailer":
        await send({"type": "http.response.start", "status": 200, "headers": [],
                    "trailers": True})  # fmt: skip
        await send({"type": "http.response.body", "body": b"hello"})
        await send({"type": "http.response.trailers", "headers": [(b"x-bad", b"a\nb")]})
    elif path == "/trailers":
        # ?parts=N[&cl=1]: a body in N messages, then two trailers messages.
        parts = int(query.get("parts", "2"))
        body = [b"part %d\n" % i for i in range(parts)]
        headers = [(b"content-type", b"text/plain"), (b"trailer", b"x-digest, x-count")]
        if "cl" in query:
            headers.append((b"content-length", b"%d" % len(b"".join(body))))
        await send(
            {"type": "http.response.start", "status": 200, "headers": headers, "trailers": True}
        )
        for i, chunk in enumerate(body):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < parts - 1})
        if not body:
            await send({"type": "http.response.body", "body": b""})
        digest = hashlib.sha256(b"".join(body)).hexdigest().encode()
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-digest", digest)],
                "more_trailers": True,
            }
        )
        await send({"type": "http.response.trailers", "headers": [(b"x-count", b"%d" % parts)]})
    elif path == "/stream":
        count = int(query.get("n", "3"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        size = int(query.get("size", "0"))
        for i in range(count):
            await send({"type": "http.response.body", "body": _chunk(i, size), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/read":
        body, messages = await _read_body(receive)
        result = _digest(body)
        result["messages"] = messages
        await _respond(send, 200, _json(result), json_headers)
    elif path == "/noread":
        await _respond(send, 200, b"did not read\n")
    elif path == "/error":
        raise RuntimeError("boom before the response")
    elif path == "/error-streaming":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        raise RuntimeError("boom in the middle of the body")
    elif path == "/no-response":
        return
    elif path == "/bad-length":
        await _respond(send, 200, b"12345", [(b"content-length", b"10")])
    elif path == "/disconnect":
        await _disconnect_watch(query.get("token", "disconnect"), receive, send)
    elif path == "/longpoll":
        await _read_body(receive)
        STATE["waiting"].append(query.get("token", "longpoll"))
        try:
            message = await asyncio.wait_for(receive(), float(query.get("wait", "5")))
            STATE["disconnects"].append([query.get("token", "longpoll"), message["type"]])
        except asyncio.TimeoutError:
            STATE["disconnects"].append([query.get("token", "longpoll"), "no message"])
    elif path == "/after-response":
        await _read_body(receive)
        await _respond(send, 200, b"done\n")
        message = await asyncio.wait_for(receive(), 5)
        STATE["after_response"].append(message["type"])
    elif path == "/status204":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/server-header":
        await _respond(send, 200, b"custom server\n", [(b"server", b"custom")])
    elif path == "/state":
        await _respond(send, 200, _json(STATE), json_headers)
    elif path == "/pid":
        await _respond(send, 200, str(os.getpid()).encode())
    elif path == "/sleep":
        await asyncio.sleep(float(query.get("s", "1")))
        await _respond(send, 200, b"slept\n")
    elif path == "/marker":
        await _respond(send, 200, _mark(scope["query_string"].decode("latin-1")))
    else:
        await _respond(send, 404, _json(_scope_view(scope)), json_headers)


async def _disconnect_watch(token: str, receive: Receive, send: Send) -> None:
    """Stream ticks until receive() reports http.disconnect; record what it said."""
    await _read_body(receive)
    watcher = asyncio.ensure_future(receive())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        for _ in range(200):  # 10 s at most
            if watcher.done():
                break
            await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
            await asyncio.sleep(0.05)
    except OSError:
        pass  # send() after the client left: allowed to raise
    try:
        message = await asyncio.wait_for(watcher, 5)
        STATE["disconnects"].append([token, message["type"]])
    except asyncio.TimeoutError:
        STATE["disconnects"].append([token, "no message"])
        raise


async def asgi_lifespan(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Puts a greeting into the lifespan state; requests show their scope["state"]."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "set at startup"
                scope["state"]["startup_pid"] = os.getpid()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    state = scope.get("state")
    shown = {
        "has_state": state is not None,
        "state": dict(state) if state is not None else None,
        "pid": os.getpid(),
    }
    if state is not None and scope["path"] == "/mutate":
        state["mutated"] = True
    await _respond(send, 200, _json(shown), [(b"content-type", b"application/json")])


class Asgi2App:
    """An ASGI 2 (double-callable) app."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Receive, send: Send) -> None:
        if self.scope["type"] != "http":
            raise RuntimeError("lifespan not supported")
        await _respond(send, 200, b"asgi2 at " + self.scope["path"].encode())


def asgi2_varargs(*args: Any) -> Callable[[Receive, Send], Any]:
    """ASGI 2 behind a signature auto-detection cannot read (needs --interface asgi2)."""
    (scope,) = args

    async def instance(receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError("lifespan not supported")
        await _respond(send, 200, b"asgi2 varargs at " + scope["path"].encode())

    return instance


def create_asgi_app() -> Callable[..., Any]:
    """An app factory (--factory)."""
    return asgi_app

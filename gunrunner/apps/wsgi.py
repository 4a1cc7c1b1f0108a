"""WSGI (PEP 3333) apps, run in a per-worker thread pool.

Rules:
1. The app runs in a pool thread, never on the event loop: a slow request does not
   stall the worker's other connections.
2. A response the app returns as a list or tuple goes back to the loop in one hop and
   out in one write. Other iterables stream: each block is sent as it is yielded
   (PEP 3333 forbids holding one back).
3. `wsgi.input` streams the body from the loop; a client gone mid-body raises
   ClientDisconnected (an OSError), never a short body the app would take for whole.
4. The iterable's close() is always called.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import os
import queue
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from gunrunner.apps.types import (
    INTERNAL_ERROR,
    ClientDisconnected,
    Exchange,
    Headers,
    WSGIApp,
    internal_error_headers,
)

log = logging.getLogger(__name__)

# HTTP header name -> environ key; bounded so hostile clients cannot grow it forever.
_ENVIRON_KEYS: dict[bytes, str] = {}
_ENVIRON_KEYS_MAX = 512
# Signals the worker's loop handles: blocked in pool threads (see ThreadPool).
LOOP_SIGNALS = frozenset({
    signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
    signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD,
})  # fmt: skip


def _environ_key(name: bytes) -> str:
    key = _ENVIRON_KEYS.get(name)
    if key is None:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if len(_ENVIRON_KEYS) < _ENVIRON_KEYS_MAX:
            _ENVIRON_KEYS[name] = key
    return key


class WSGIInput:
    """`wsgi.input`: the request body, read from the event loop as the app asks for it."""

    def __init__(self, fetch: Callable[[], tuple[bytes, bool]] | None) -> None:
        self._fetch = fetch
        self._buffer = bytearray()
        self._eof = fetch is None

    def _fill(self) -> bool:
        if self._eof:
            return False
        assert self._fetch is not None
        data, more = self._fetch()
        self._buffer += data
        self._eof = not more
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            size = len(self._buffer)
        else:
            while len(self._buffer) < size and self._fill():
                pass
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        start = 0
        while True:
            newline = self._buffer.find(b"\n", start)
            if newline >= 0:
                end = newline + 1
                break
            if 0 <= limit <= len(self._buffer):
                end = limit
                break
            start = len(self._buffer)
            if not self._fill():
                end = len(self._buffer)
                break
        if 0 <= limit < end:
            end = limit
        line = bytes(self._buffer[:end])
        del self._buffer[:end]
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class ErrorStream:
    """`wsgi.errors`: what the app writes goes to the error log, a line at a time."""

    def __init__(self) -> None:
        self._log = logging.getLogger("gunrunner.app")

    def write(self, text: str) -> int:
        for line in text.rstrip("\n").splitlines():
            self._log.error("%s", line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


class FileWrapper:
    """`wsgi.file_wrapper`: a file to send; by sendfile(2) when it is a regular file."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block

    def span(self, headers: Headers) -> tuple[int, int] | None:
        """(offset, count) to send from a regular file, or None: iterate it instead.

        From the file's position to its end, or fewer if the app set Content-Length
        (PEP 3333: never send more than it says).
        """
        if not isinstance(self.filelike, (io.FileIO, io.BufferedReader)):
            return None  # gzip.open() has a fileno() too, of the compressed bytes
        try:
            fd = self.filelike.fileno()
            offset = self.filelike.tell()
            info = os.fstat(fd)
        except (OSError, ValueError):  # io.UnsupportedOperation too
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        count = max(info.st_size - offset, 0)
        for name, value in headers:
            if name.lower() == b"content-length" and value.strip().isdigit():
                count = min(count, int(value))
        return offset, count


class ThreadPool:
    """Threads that run WSGI calls, and a batched way back to the event loop.

    Lighter than concurrent.futures (no Future per call), and finished calls are handed
    back in batches: one loop wake-up (a self-pipe write) serves every call that
    finished since the last one, instead of one write per request.
    """

    def __init__(self, threads: int, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._results: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._wakeup_scheduled = False
        self._threads = [
            threading.Thread(target=self._work, name=f"gunrunner-wsgi-{n}", daemon=True)
            for n in range(threads)
        ]
        # The threads start with the process's signals blocked (they inherit the mask), so
        # the kernel hands TERM and the rest to the loop's thread. A signal sent while
        # the worker is stopped would otherwise wake whichever thread runs first; its
        # wakeup byte could then trail a finished call's, and a response go out before
        # the loop saw the stop.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, LOOP_SIGNALS)
        try:
            for thread in self._threads:
                thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    @property
    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._jobs.put((fn, args))

    def call_in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """From a pool thread: run fn(*args) on the loop, in order, soon."""
        self._results.append((fn, args))
        if not self._wakeup_scheduled:
            self._wakeup_scheduled = True
            self.loop.call_soon_threadsafe(self._run_results)

    def _run_results(self) -> None:
        # Reset the flag before draining: a result appended after a thread saw the flag
        # set is still drained by this call.
        self._wakeup_scheduled = False
        results = self._results
        while results:
            fn, args = results.popleft()
            fn(*args)

    def _work(self) -> None:
        get = self._jobs.get
        while True:
            job = get()
            if job is None:
                return
            fn, args = job
            fn(*args)

    def shutdown(self) -> None:
        """Let idle threads exit; busy ones finish their call (they are daemons)."""
        for _ in self._threads:
            self._jobs.put(None)


class WSGIBridge:
    """Runs a WSGI app for each Exchange, in a thread pool."""

    def __init__(
        self, app: WSGIApp, *, threads: int, root_path: str = "", multiprocess: bool = False
    ) -> None:
        self.app = app
        self.root_path = root_path.rstrip("/")
        self.loop = asyncio.get_running_loop()
        self.pool = ThreadPool(threads, self.loop)
        self.errors = ErrorStream()
        self.base_environ: dict[str, Any] = {
            "SCRIPT_NAME": self.root_path,
            "wsgi.version": (1, 0),
            "wsgi.errors": self.errors,
            "wsgi.multithread": threads > 1,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
        }

    def handle(self, exchange: Exchange) -> None:
        self.pool.submit(self._run, exchange)

    def shutdown(self) -> None:
        self.pool.shutdown()

    # -- in a pool thread -----------------------------------------------------------------
    def environ(self, exchange: Exchange) -> dict[str, Any]:
        environ = self.base_environ.copy()
        path = exchange.raw_path
        if b"%" in path:
            path = unquote_to_bytes(path)
        path_info = path.decode("latin-1")
        root = self.root_path
        if root and (path_info == root or path_info.startswith(root + "/")):
            path_info = path_info[len(root) :]
        server = exchange.server or ("", 0)
        client = exchange.client
        environ["REQUEST_METHOD"] = exchange.method
        environ["PATH_INFO"] = path_info
        environ["QUERY_STRING"] = exchange.query_string.decode("latin-1")
        environ["SERVER_NAME"] = server[0]
        environ["SERVER_PORT"] = str(server[1])
        environ["SERVER_PROTOCOL"] = "HTTP/" + exchange.http_version
        environ["wsgi.url_scheme"] = exchange.scheme
        if client is not None:
            environ["REMOTE_ADDR"] = client[0]
            environ["REMOTE_PORT"] = str(client[1])
        for name, value in exchange.headers:
            if name == b"content-type":
                environ["CONTENT_TYPE"] = value.decode("latin-1")
            elif name == b"content-length":
                environ["CONTENT_LENGTH"] = value.decode("latin-1")
            elif b"_" in name:
                # X_Forwarded_For would land on the same key as X-Forwarded-For: a
                # spoofing vector behind proxies that only strip the dashed form.
                continue
            else:
                key = _environ_key(name)
                text = value.decode("latin-1")
                if key in environ:
                    separator = "; " if key == "HTTP_COOKIE" else ", "
                    text = environ[key] + separator + text
                environ[key] = text
        if exchange.request_id is not None:
            environ["gunrunner.request_id"] = exchange.request_id
        if exchange.tls is not None:
            environ["gunrunner.tls"] = exchange.tls  # the ASGI tls extension's dict
        if exchange.body_known_empty():
            environ["wsgi.input"] = WSGIInput(None)
        else:
            environ["wsgi.input"] = WSGIInput(lambda: self._call(exchange.receive()))
        return environ

    def _call(self, coroutine: Any) -> Any:
        """Run a coroutine on the loop and wait for its result, from a pool thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def _run(self, exchange: Exchange) -> None:
        response = _Response(self, exchange)
        try:
            environ = self.environ(exchange)
            result = self.app(environ, response.start_response)
            try:
                response.consume(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:
            if isinstance(exc, ClientDisconnected) or exchange.disconnected:
                log.debug("client went away during %s %s", exchange.method, exchange.path)
                return
            log.exception(
                "exception in WSGI app while serving %s %s", exchange.method, exchange.path
            )
            self.pool.call_in_loop(_fail, exchange)
            if not isinstance(exc, Exception):
                raise


def _fail(exchange: Exchange) -> None:
    if exchange.disconnected:
        return
    if exchange.response_started:
        exchange.abort()
    else:
        exchange.respond(500, internal_error_headers(), INTERNAL_ERROR)


class _Response:
    """start_response, write() and the body iteration for one request (pool thread)."""

    __slots__ = ("bridge", "exchange", "head_sent", "headers", "status")

    def __init__(self, bridge: WSGIBridge, exchange: Exchange) -> None:
        self.bridge = bridge
        self.exchange = exchange
        self.status: int | None = None
        self.headers: Headers = []
        self.head_sent = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise RuntimeError("start_response() called a second time without exc_info")
        if not isinstance(status, str) or len(status) < 3 or not status[:3].isdigit():
            raise ValueError(f'WSGI status must be a string like "200 OK", got {status!r}')
        try:
            encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        except (AttributeError, ValueError, TypeError):
            raise ValueError(
                f"WSGI headers must be a list of (str, str) in latin-1, got {headers!r}"
            ) from None
        self.status = int(status[:3])
        self.headers = encoded
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy write() callable, and each streamed chunk: sent before returning."""
        if self.status is None:
            raise RuntimeError("the WSGI app wrote body data before calling start_response()")
        exchange = self.exchange
        first = not self.head_sent
        self.head_sent = True

        async def send() -> None:
            if first:
                exchange.start(self.status, self.headers)  # type: ignore[arg-type]
            if data:
                await exchange.write(data)

        self.bridge._call(send())

    def consume(self, result: Iterable[bytes]) -> None:
        pool = self.bridge.pool
        if isinstance(result, FileWrapper) and not self.head_sent:
            self._check_started()
            span = result.span(self.headers)
            if span is not None:
                self._send_file(result.filelike, *span)
                return
        if isinstance(result, (list, tuple)) and not self.head_sent:
            body = b"".join(result)
            self._check_started()
            pool.call_in_loop(self._respond, body)
            return
        chunks = iter(result)
        for chunk in chunks:
            if not chunk:
                continue
            if not self.head_sent and self._declared_length() == len(chunk):
                # The first block is the whole body the app declared (Flask, Django):
                # one hop to the loop and one write, as for a list.
                self.head_sent = True
                pool.call_in_loop(self._respond, chunk)
                if any(chunks):
                    raise RuntimeError("the WSGI app yielded more than its Content-Length")
                return
            # PEP 3333: no block may wait for the next one (server-sent events).
            self.write(chunk)
        if not self.head_sent:
            self._check_started()
            pool.call_in_loop(self._respond, b"")
            return
        pool.call_in_loop(self.exchange.end)

    def _send_file(self, file: Any, offset: int, count: int) -> None:
        exchange = self.exchange
        self.head_sent = True

        async def send() -> None:
            exchange.start(self.status, self.headers)  # type: ignore[arg-type]
            await exchange.sendfile(file, offset, count)
            exchange.end()

        self.bridge._call(send())

    def _declared_length(self) -> int | None:
        for name, value in self.headers:
            if name.lower() == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    def _check_started(self) -> None:
        if self.status is None:
            raise RuntimeError("the WSGI app returned without calling start_response()")

    def _respond(self, body: bytes) -> None:
        self.exchange.respond(self.status, self.headers, body)  # type: ignore[arg-type]

"""Flask, Django (WSGI and ASGI) and Starlette apps served by the real gunrunner command.

For each framework: uploads (a multipart file with the checksum the app computed, a
urlencoded form, a raw body streamed chunked by the client), streamed responses (chunks
readable while the app is still blocked, and the whole body), files, and errors (a 500
with the worker serving on and the traceback in the log, a 404, the framework's own 4xx).
One server per framework (and Django interface) is shared by the module.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from gunrunner.protocols.http11 import BODY_HIGH_WATER
from tests.helpers import Server, running

pytestmark = pytest.mark.usefixtures("http_driver")  # every server: h11, then httptools

FLASK = "tests.apps.flask_app:app"
STARLETTE = "tests.apps.starlette_app:app"
DJANGO = {
    "wsgi": "tests.apps.django_app.wsgi:application",
    "asgi": "tests.apps.django_app.asgi:application",
}
DJANGO_ENV = {"DJANGO_SETTINGS_MODULE": "tests.apps.django_app.settings"}
DJANGO_WORKERS = {"wsgi": 1, "asgi": 2}
ROOT = "/mount"
MiB = 1024 * 1024
# How long a chunk the app has already yielded may take to reach the client.
CHUNK_WAIT = 3.0


def payload(size: int) -> bytes:
    """`size` pseudo-random bytes, the same for the same size."""
    return random.Random(size).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pieces(data: bytes, size: int = 100_000) -> Iterator[bytes]:
    """`data` in pieces: httpx sends a generator body chunked."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def serving_pids(server: Server) -> set[int]:
    """The processes that serve: the workers, or the main process with --workers 1."""
    return set(server.workers()) or {server.pid}


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A file a gated app waits for; created at teardown too, to release the app."""
    path = tmp_path / "gate"
    yield path
    path.touch()


@pytest.fixture
def big_file(tmp_path: Path) -> tuple[Path, bytes]:
    """A 3 MiB file for the file responses, and its content."""
    data = payload(3 * MiB + 7)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    return path, data


# -- checks every framework goes through -----------------------------------------------------


def check_multipart_upload(client: httpx.Client, path: str) -> dict[str, Any]:
    """A 3 MiB file and a text field in a multipart form, as the app saw them."""
    content = payload(3 * MiB + 1)
    response = client.post(
        path,
        data={"name": "Zoë"},
        files={"file": ("data.bin", content, "application/x-test-data")},
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    assert {key: data[key] for key in ("name", "filename", "content_type", "len", "sha256")} == {
        "name": "Zoë",
        "filename": "data.bin",
        "content_type": "application/x-test-data",
        "len": len(content),
        "sha256": sha256(content),
    }
    return data


FORM = {"a": ["1", "2"], "name": "Zoë & co=1", "empty": ""}
FORM_PARSED = {"a": ["1", "2"], "name": ["Zoë & co=1"], "empty": [""]}


def check_raw_body(client: httpx.Client, path: str) -> None:
    """A 3 MiB body streamed chunked by the client, then sent with a length: every byte."""
    body = payload(3 * MiB + 3)
    response = client.post(path, content=pieces(body))
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["len"], data["sha256"], data["chunked"]) == (len(body), sha256(body), True)
    response = client.post(path, content=body)
    data = response.json()
    assert (data["len"], data["sha256"], data["chunked"]) == (len(body), sha256(body), False)


def check_gated_stream(client: httpx.Client, path: str, gate: Path, before: int) -> None:
    """The app yields `before` chunks, then blocks until `gate` exists.

    The first chunk must be readable while the app is blocked; then the rest.
    """
    expected = b"".join(b"before %d\n" % i for i in range(before))
    first = b"before 0\n"
    timeout = httpx.Timeout(10, read=CHUNK_WAIT)
    params = {"gate": str(gate), "before": str(before)}
    with client.stream("GET", path, params=params, timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        chunks = response.iter_raw()
        got = b""
        while len(got) < len(first):
            got += next(chunks)  # a chunk held back: ReadTimeout after CHUNK_WAIT
        assert got.startswith(first)
        assert b"released" not in got
        gate.touch()
        got += b"".join(chunks)
    assert got == expected + b"released\n"


def check_error_then_serves(
    client: httpx.Client, server: Server, path: str, next_path: str, logged: list[str]
) -> None:
    """A view raising: 500, the same processes serve on, the `logged` lines in the log."""
    pids = serving_pids(server)
    assert client.get(path).status_code == 500
    for _ in range(4):
        assert client.get(next_path).status_code == 200
    for line in logged:
        server.wait_for(re.escape(line), timeout=5)
    assert serving_pids(server) == pids
    assert server.proc.poll() is None


def check_stream_error(
    client: httpx.Client, server: Server, path: str, next_path: str, logged: str
) -> None:
    """An iterator raising mid-body: the connection is cut (no clean end), logged, served on."""
    pids = serving_pids(server)
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        client.get(path)
    assert client.get(next_path).status_code == 200
    server.wait_for(re.escape(logged), timeout=5)
    assert serving_pids(server) == pids


def check_file(client: httpx.Client, path: str, big_file: tuple[Path, bytes]) -> None:
    """A 3 MiB file: its length and checksum, sent with a Content-Length."""
    file, data = big_file
    response = client.get(path, params={"path": str(file)})
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in response.headers
    assert sha256(response.content) == sha256(data)


def check_file_head_and_range(
    client: httpx.Client, path: str, big_file: tuple[Path, bytes]
) -> None:
    """HEAD of the file: its length and no body; a byte range: 206 and those bytes."""
    file, data = big_file
    params = {"path": str(file)}
    response = client.head(path, params=params)
    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["content-length"] == str(len(data))
    response = client.get(path, params=params, headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert response.content == data[1000:2000]
    # The connection is still in step: a HEAD body or a short range would show here.
    assert sha256(client.get(path, params=params).content) == sha256(data)


def check_unread_body(client: httpx.Client, path: str, next_path: str, gate: Path) -> None:
    """The app answers without reading a body that arrived whole: the client goes on."""
    body = payload(BODY_HIGH_WATER + 4096)

    def send() -> Iterator[bytes]:
        yield from pieces(body, 64 * 1024)
        gate.touch()  # the last piece is written: now the app may answer

    response = client.post(
        path,
        params={"gate": str(gate)},
        content=send(),
        headers={"content-length": str(len(body))},
    )
    assert response.status_code == 200
    assert client.get(next_path, timeout=2).status_code == 200


# -- Flask (WSGI, two workers) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def flask_server(http_driver: tuple[str, ...]) -> Iterator[Server]:
    with running(FLASK, "--workers", "2", ready=2) as server:
        yield server


@pytest.fixture
def flask(flask_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=flask_server.url, timeout=10) as client:
        yield client


def test_flask_detected_as_wsgi(flask_server: Server) -> None:
    """A Flask app object is served as WSGI by both workers."""
    flask_server.wait_for(r"serving WSGI app tests\.apps\.flask_app:app", count=2, timeout=5)
    assert "serving ASGI" not in flask_server.log()


def test_flask_json(flask: httpx.Client, flask_server: Server) -> None:
    """Flask GET route: JSON with the query, from a worker process."""
    response = flask.get("/json", params={"q": "a b", "n": "1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["framework"] == "flask"
    assert data["args"] == {"q": "a b", "n": "1"}
    assert data["pid"] in flask_server.workers()


def test_flask_multipart_upload(flask: httpx.Client) -> None:
    """Flask multipart form: the field and a 3 MiB file arrive intact."""
    check_multipart_upload(flask, "/upload")


def test_flask_urlencoded_form(flask: httpx.Client) -> None:
    """Flask urlencoded form: repeated, escaped and empty values."""
    assert flask.post("/form", data=FORM).json() == FORM_PARSED


def test_flask_raw_body(flask: httpx.Client) -> None:
    """Flask request.stream: a chunked body (wsgi.input_terminated) and a sized one."""
    check_raw_body(flask, "/raw")


def test_flask_body_over_max_content_length(flask: httpx.Client) -> None:
    """Flask MAX_CONTENT_LENGTH: 413 before the body is read, then the client goes on."""
    response = flask.post("/raw", content=payload(4 * MiB + 64 * 1024))
    assert response.status_code == 413
    assert response.headers["connection"] == "close"  # the body was not read
    assert flask.get("/json").status_code == 200


@pytest.mark.slow
def test_flask_unread_body_then_next_request(flask: httpx.Client, gate: Path) -> None:
    """Flask view ignoring a body just over BODY_HIGH_WATER: the next request is served."""
    check_unread_body(flask, "/ignore-body", "/json", gate)


def test_flask_streaming_generator(flask: httpx.Client) -> None:
    """Flask response from a generator: chunked, complete."""
    response = flask.get("/stream", params={"n": "50"})
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text == "".join(f"line {i}\n" for i in range(50))


def test_flask_stream_with_context_is_incremental(flask: httpx.Client, gate: Path) -> None:
    """Flask stream_with_context: a chunk is out while the generator is blocked."""
    check_gated_stream(flask, "/gated", gate, before=2)


@pytest.mark.slow
def test_flask_stream_sends_each_chunk_at_once(flask: httpx.Client, gate: Path) -> None:
    """Flask: the only chunk yielded before the generator blocks reaches the client."""
    check_gated_stream(flask, "/gated", gate, before=1)


def test_flask_send_file(flask: httpx.Client, big_file: tuple[Path, bytes]) -> None:
    """Flask send_file (wsgi.file_wrapper) of a 3 MiB file."""
    check_file(flask, "/file", big_file)


def test_flask_send_file_head_and_range(flask: httpx.Client, big_file: tuple[Path, bytes]) -> None:
    """Flask send_file: HEAD and a Range request."""
    check_file_head_and_range(flask, "/file", big_file)


def test_flask_404(flask: httpx.Client) -> None:
    """Flask unknown route: 404; a wrong method: 405."""
    assert flask.get("/no/such/route").status_code == 404
    assert flask.get("/upload").status_code == 405


def test_flask_error_is_500_and_serving_goes_on(flask: httpx.Client, flask_server: Server) -> None:
    """Flask route raising: Flask's 500, its traceback logged through wsgi.errors."""
    check_error_then_serves(
        flask,
        flask_server,
        "/error",
        "/json",
        ["Exception on /error [GET]", "RuntimeError: flask route failed"],
    )


def test_flask_error_mid_stream(flask: httpx.Client, flask_server: Server) -> None:
    """Flask generator raising after its first chunks: the connection is cut."""
    check_stream_error(flask, flask_server, "/stream-error", "/json", "flask stream failed")


# -- Django (WSGI with one process, ASGI with two workers; mounted under ROOT) --------------


class DjangoServer(NamedTuple):
    server: Server
    interface: str


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def django_server(
    request: pytest.FixtureRequest, http_driver: tuple[str, ...]
) -> Iterator[DjangoServer]:
    interface: str = request.param
    workers = DJANGO_WORKERS[interface]
    args = (DJANGO[interface], "--workers", str(workers), "--root-path", ROOT)
    with running(*args, env=DJANGO_ENV, ready=workers) as server:
        yield DjangoServer(server, interface)


@pytest.fixture
def django(django_server: DjangoServer) -> Iterator[httpx.Client]:
    """A client for the project mounted under ROOT."""
    with httpx.Client(base_url=django_server.server.url + ROOT, timeout=10) as client:
        yield client


def test_django_interface(django: httpx.Client, django_server: DjangoServer) -> None:
    """Django's WSGI and ASGI entry points are detected as such and serve."""
    server, interface = django_server
    server.wait_for(rf"serving {interface.upper()} app tests\.apps\.django_app\.{interface}:")
    data = django.get("/info/").json()
    assert data["interface"] == interface
    assert data["pid"] in serving_pids(server)


def test_django_root_path(django: httpx.Client, django_server: DjangoServer) -> None:
    """--root-path: SCRIPT_NAME, request.path, path_info, reverse() and absolute URLs."""
    data = django.get("/info/").json()
    assert data["script_name"] == ROOT
    assert (data["path"], data["path_info"]) == (f"{ROOT}/info/", "/info/")
    assert data["reverse"] == f"{ROOT}/info/"
    assert data["absolute"] == f"{django_server.server.url}{ROOT}/info/"


def test_django_plain_http_is_not_secure(django: httpx.Client) -> None:
    """Over plain HTTP from a direct client: is_secure() is false, the peer is the client."""
    data = django.get("/info/").json()
    assert (data["is_secure"], data["scheme"]) == (False, "http")
    assert data["remote_addr"] == "127.0.0.1"


def test_django_forwarded_headers(django: httpx.Client, django_server: DjangoServer) -> None:
    """X-Forwarded-* from 127.0.0.1 (trusted by default): REMOTE_ADDR, scheme and host."""
    headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    data = django.get("/info/", headers=headers).json()
    assert data["remote_addr"] == "203.0.113.9"  # the rightmost untrusted hop
    assert data["is_secure"] is False
    headers.update({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "localhost:8443"})
    data = django.get("/info/", headers=headers).json()
    assert data["remote_addr"] == "203.0.113.9"
    assert (data["is_secure"], data["scheme"]) == (True, "https")
    assert data["host"] == "localhost:8443"
    assert data["absolute"] == f"https://localhost:8443{ROOT}/info/"


def test_django_multipart_upload(django: httpx.Client) -> None:
    """Django request.FILES: a 3 MiB file (spooled to disk) and the text field."""
    assert (
        check_multipart_upload(django, "/upload/")["on_disk"] is True
    )  # above FILE_UPLOAD_MAX_MEMORY_SIZE


def test_django_urlencoded_form(django: httpx.Client) -> None:
    """Django request.POST: repeated, escaped and empty values."""
    assert django.post("/form/", data=FORM).json() == FORM_PARSED


def test_django_raw_body(django: httpx.Client) -> None:
    """Django: a chunked and a sized raw body, read in blocks."""
    check_raw_body(django, "/raw/")


def test_django_form_over_data_upload_max_memory_size(django: httpx.Client) -> None:
    """Django DATA_UPLOAD_MAX_MEMORY_SIZE (64 KiB): a 100 KB form gets 400, then the next."""
    response = django.post("/form/", data={"field": "x" * 100_000})
    assert response.status_code == 400
    assert "Bad Request" in response.text
    assert django.post("/form/", data={"a": "1"}).json() == {"a": ["1"]}


def test_django_streaming_response(django: httpx.Client, django_server: DjangoServer) -> None:
    """StreamingHttpResponse: a sync iterator under WSGI, an async one under ASGI; whole."""
    response = django.get("/stream/", params={"n": "200"})
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    iterator = "async" if django_server.interface == "asgi" else "sync"
    assert response.headers["x-iterator"] == iterator
    assert response.content == b"".join(b"line %d\n" % i for i in range(200))


def test_django_streaming_is_incremental(django: httpx.Client, gate: Path) -> None:
    """StreamingHttpResponse: a chunk is out while the iterator is blocked."""
    check_gated_stream(django, "/gated/", gate, before=2)


@pytest.mark.slow
def test_django_stream_sends_each_chunk_at_once(django: httpx.Client, gate: Path) -> None:
    """StreamingHttpResponse: the only chunk yielded before the iterator blocks arrives."""
    check_gated_stream(django, "/gated/", gate, before=1)


def test_django_file_response(django: httpx.Client, big_file: tuple[Path, bytes]) -> None:
    """Django FileResponse of a 3 MiB file (wsgi.file_wrapper under WSGI)."""
    check_file(django, "/file/", big_file)


def test_django_404(django: httpx.Client) -> None:
    """Django unknown URL: its 404 page."""
    response = django.get("/no/such/url/")
    assert response.status_code == 404
    assert "Not Found" in response.text


def test_django_error_is_500_and_serving_goes_on(
    django: httpx.Client, django_server: DjangoServer
) -> None:
    """Django view raising: Django's 500, traceback logged by django.request to stderr."""
    check_error_then_serves(
        django,
        django_server.server,
        "/error/",
        "/info/",
        [f"Internal Server Error: {ROOT}/error/", "RuntimeError: django view failed"],
    )


def test_django_error_mid_stream(django: httpx.Client, django_server: DjangoServer) -> None:
    """Django streaming iterator raising: the connection is cut, the server logs it."""
    check_stream_error(
        django, django_server.server, "/stream-error/", "/info/", "django stream failed"
    )


# -- Starlette (ASGI, two workers) -----------------------------------------------------------


@pytest.fixture(scope="module")
def starlette_server(http_driver: tuple[str, ...]) -> Iterator[Server]:
    with running(STARLETTE, "--workers", "2", ready=2) as server:
        yield server


@pytest.fixture
def starlette(starlette_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=starlette_server.url, timeout=10) as client:
        yield client


def test_starlette_json(starlette: httpx.Client, starlette_server: Server) -> None:
    """Starlette JSON route, answered by a worker process."""
    response = starlette.get("/")
    assert response.status_code == 200
    assert response.json()["framework"] == "starlette"
    assert response.json()["pid"] in starlette_server.workers()


def test_starlette_path_params(starlette: httpx.Client) -> None:
    """Starlette path parameters, converted and percent-decoded."""
    response = starlette.get("/items/42/caf%C3%A9%20au%20lait")
    assert response.status_code == 200
    assert response.json() == {"item_id": 42, "name": "café au lait"}
    assert starlette.get("/items/not-a-number/x").status_code == 404


def test_starlette_request_body(starlette: httpx.Client) -> None:
    """Starlette request.body(): 3 MB, sent with a length and chunked."""
    body = bytes(range(256)) * 12288
    expected = {"len": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    response = starlette.post("/echo", content=body, headers={"content-type": "x/y"})
    assert response.json() == {**expected, "content_type": "x/y"}
    response = starlette.post("/echo", content=pieces(body))
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert {k: response.json()[k] for k in ("len", "sha256")} == expected


def test_starlette_raw_body_streams(starlette: httpx.Client) -> None:
    """Starlette request.stream(): every byte, in more than one piece (not buffered whole)."""
    check_raw_body(starlette, "/raw")
    response = starlette.post("/raw", content=pieces(payload(3 * MiB)))
    assert response.json()["pieces"] > 1


def test_starlette_multipart_upload(starlette: httpx.Client) -> None:
    """Starlette: a multipart form decoded from request.stream(): field and 3 MiB file."""
    check_multipart_upload(starlette, "/upload")


def test_starlette_urlencoded_form(starlette: httpx.Client) -> None:
    """Starlette: a urlencoded body, parsed by the app."""
    assert starlette.post("/form", data=FORM).json() == FORM_PARSED


def test_starlette_413_from_the_app(starlette: httpx.Client) -> None:
    """Starlette HTTPException(413) raised while reading: 413, then the next request."""
    response = starlette.post("/limited", content=pieces(payload(200_000), 16_384))
    assert response.status_code == 413
    assert starlette.post("/limited", content=b"small").json() == {"len": 5}


@pytest.mark.slow
def test_starlette_unread_body_then_next_request(starlette: httpx.Client, gate: Path) -> None:
    """Starlette route ignoring a body just over BODY_HIGH_WATER: the next request is served."""
    check_unread_body(starlette, "/ignore-body", "/", gate)


def test_starlette_streaming_response(starlette: httpx.Client) -> None:
    """Starlette StreamingResponse: chunked and complete."""
    response = starlette.get("/stream", params={"n": "100"})
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == b"".join(b"part %d\n" % i for i in range(100))


def test_starlette_stream_sends_each_chunk_at_once(starlette: httpx.Client, gate: Path) -> None:
    """Starlette StreamingResponse: the chunk yielded before the generator blocks arrives."""
    check_gated_stream(starlette, "/gated", gate, before=1)


def test_starlette_file_response(starlette: httpx.Client, big_file: tuple[Path, bytes]) -> None:
    """Starlette FileResponse of a 3 MiB file."""
    check_file(starlette, "/file", big_file)


def test_starlette_file_head_and_range(
    starlette: httpx.Client, big_file: tuple[Path, bytes]
) -> None:
    """Starlette FileResponse: HEAD and a Range request."""
    check_file_head_and_range(starlette, "/file", big_file)


def test_starlette_lifespan_state(starlette: httpx.Client) -> None:
    """Starlette lifespan state reaches request.state, set up by the serving worker."""
    for _ in range(6):
        data = starlette.get("/state").json()
        assert data["greeting"] == "hello from lifespan"
        assert data["startup_pid"] == data["pid"]


def test_starlette_404_and_405(starlette: httpx.Client) -> None:
    """Starlette unknown route: 404; a wrong method: 405."""
    assert starlette.get("/no/such/route").status_code == 404
    assert starlette.get("/raw").status_code == 405


def test_starlette_error_is_500_and_serving_goes_on(
    starlette: httpx.Client, starlette_server: Server
) -> None:
    """Starlette route raising: 500, traceback in the log, the next request is served."""
    check_error_then_serves(
        starlette,
        starlette_server,
        "/error",
        "/",
        ["exception in ASGI app while serving GET /error", "RuntimeError: starlette route failed"],
    )


def test_starlette_error_mid_stream(starlette: httpx.Client, starlette_server: Server) -> None:
    """Starlette generator raising after its first chunk: the connection is cut."""
    check_stream_error(starlette, starlette_server, "/stream-error", "/", "starlette stream failed")

"""Flask and Starlette apps served by gunrunner with two workers, driven by httpx."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import Server, running

FLASK = "tests.apps.flask_app:app"
STARLETTE = "tests.apps.starlette_app:app"


@pytest.fixture(scope="module")
def flask_server() -> Iterator[Server]:
    with running(FLASK, "--workers", "2", ready=2) as server:
        yield server


@pytest.fixture(scope="module")
def starlette_server() -> Iterator[Server]:
    with running(STARLETTE, "--workers", "2", ready=2) as server:
        yield server


@pytest.fixture
def flask(flask_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=flask_server.url, timeout=10) as client:
        yield client


@pytest.fixture
def starlette(starlette_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=starlette_server.url, timeout=10) as client:
        yield client


# -- Flask ---------------------------------------------------------------------------------


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


def test_flask_form_upload(flask: httpx.Client) -> None:
    """Flask POST multipart form: the field and a 1 MB file arrive intact."""
    content = bytes(range(256)) * 4096
    response = flask.post(
        "/upload",
        data={"name": "Zoë"},
        files={"file": ("data.bin", content, "application/octet-stream")},
    )
    assert response.status_code == 200
    assert response.json() == {
        "name": "Zoë",
        "filename": "data.bin",
        "content_type": "application/octet-stream",
        "len": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def test_flask_streaming_generator(flask: httpx.Client) -> None:
    """Flask response from a generator: chunked, complete."""
    response = flask.get("/stream", params={"n": "50"})
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text == "".join(f"line {i}\n" for i in range(50))


def test_flask_404(flask: httpx.Client) -> None:
    """Flask unknown route: 404."""
    assert flask.get("/no/such/route").status_code == 404


def test_flask_error_is_500_and_serving_goes_on(flask: httpx.Client) -> None:
    """Flask route raising: 500, and the next request is served."""
    response = flask.get("/error")
    assert response.status_code == 500
    assert flask.get("/json").status_code == 200


# -- Starlette -----------------------------------------------------------------------------


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
    pieces = [body[i : i + 100_000] for i in range(0, len(body), 100_000)]
    response = starlette.post("/echo", content=iter(pieces))
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert {k: response.json()[k] for k in ("len", "sha256")} == expected


def test_starlette_streaming_response(starlette: httpx.Client) -> None:
    """Starlette StreamingResponse: chunked and complete."""
    response = starlette.get("/stream", params={"n": "100"})
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == b"".join(b"part %d\n" % i for i in range(100))


def test_starlette_lifespan_state(starlette: httpx.Client) -> None:
    """Starlette lifespan state reaches request.state, set up by the serving worker."""
    for _ in range(6):
        data = starlette.get("/state").json()
        assert data["greeting"] == "hello from lifespan"
        assert data["startup_pid"] == data["pid"]


def test_starlette_error_is_500_and_serving_goes_on(
    starlette: httpx.Client, starlette_server: Server
) -> None:
    """Starlette route raising: 500, traceback in the log, the next request is served."""
    response = starlette.get("/error")
    assert response.status_code == 500
    assert starlette.get("/").status_code == 200
    assert "RuntimeError: starlette route failed" in starlette_server.log()

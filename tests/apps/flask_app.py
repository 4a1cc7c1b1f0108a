"""A Flask app for tests/integration/test_frameworks.py (tests.apps.flask_app:app)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, jsonify, request, send_file, stream_with_context

app = Flask(__name__)
# Werkzeug answers 413 for a body above this (uploads in the tests are a few MiB).
app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
CHUNK = 64 * 1024
# Longest a gated stream waits for the test to create its gate file.
GATE_TIMEOUT = 10.0


@app.get("/json")
def get_json() -> Response:
    """A JSON document with the worker pid and the query."""
    return jsonify({"framework": "flask", "pid": os.getpid(), "args": request.args.to_dict()})


@app.post("/upload")
def upload() -> Response:
    """A multipart form with a text field and a file: what arrived."""
    upload = request.files["file"]
    data = upload.read()
    return jsonify(
        {
            "name": request.form["name"],
            "filename": upload.filename,
            "content_type": upload.mimetype,
            "len": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    )


@app.post("/form")
def form() -> Response:
    """A urlencoded form: every value of every field."""
    return jsonify(request.form.to_dict(flat=False))


@app.post("/raw")
def raw() -> Response:
    """The raw body read from request.stream in blocks (chunked or with a length)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := request.stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return jsonify(
        {
            "len": size,
            "sha256": digest.hexdigest(),
            "chunked": "chunked" in request.headers.get("Transfer-Encoding", ""),
        }
    )


@app.get("/stream")
def stream() -> Response:
    """A body from a generator: the server cannot know its length."""
    count = int(request.args.get("n", "5"))

    def generate() -> Iterator[str]:
        for i in range(count):
            yield f"line {i}\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/gated")
def gated() -> Response:
    """`before` chunks, then nothing until the file `gate` exists (bounded), then the end.

    stream_with_context keeps the request usable inside the generator.
    """

    def generate() -> Iterator[str]:
        before = int(request.args.get("before", "1"))
        gate = Path(request.args["gate"])
        for i in range(before):
            yield f"before {i}\n"
        deadline = time.monotonic() + GATE_TIMEOUT
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        yield "released\n" if gate.exists() else "gate timed out\n"

    return Response(stream_with_context(generate()), mimetype="text/plain")


@app.get("/stream-error")
def stream_error() -> Response:
    """A streamed body whose generator raises after two chunks."""

    def generate() -> Iterator[str]:
        yield "partial 0\n"
        yield "partial 1\n"
        raise RuntimeError("flask stream failed")

    return Response(generate(), mimetype="text/plain")


@app.get("/file")
def file() -> Response:
    """send_file of the file named by `path` (a file the test wrote); ranges honoured."""
    return send_file(Path(request.args["path"]), mimetype="application/octet-stream")


@app.get("/error")
def error() -> Response:
    """An unhandled exception: Flask answers 500."""
    raise RuntimeError("flask route failed")


@app.post("/ignore-body")
def ignore_body() -> Response:
    """Answers without reading the body, once the file `gate` exists (bounded wait)."""
    gate = Path(request.args["gate"])
    deadline = time.monotonic() + GATE_TIMEOUT
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    return Response("body ignored\n", mimetype="text/plain")

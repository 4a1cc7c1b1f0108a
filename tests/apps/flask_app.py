"""A Flask app for tests/integration/test_frameworks.py (tests.apps.flask_app:app)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


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


@app.get("/stream")
def stream() -> Response:
    """A body from a generator: the server cannot know its length."""
    count = int(request.args.get("n", "5"))

    def generate() -> Iterator[str]:
        for i in range(count):
            yield f"line {i}\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/error")
def error() -> Response:
    """An unhandled exception: Flask answers 500."""
    raise RuntimeError("flask route failed")

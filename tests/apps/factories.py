"""App factories, for the tests of `module:factory()` and of a factory named without
--factory (module path: tests.apps.factories)."""

from __future__ import annotations

from typing import Any


def _hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = b"made by the factory"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def create_app() -> Any:
    """A zero-argument factory that returns a WSGI app."""
    return _hello


class Application:
    """A class whose instances are the app: naming the class itself is a mistake."""

    def __init__(self) -> None:
        self.greeting = b"hello"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return _hello(environ, start_response)

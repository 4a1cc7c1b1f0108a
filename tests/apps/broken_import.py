"""An app module whose import fails (module path: tests.apps.broken_import)."""

from __future__ import annotations

from typing import Any


def _load_settings() -> dict[str, Any]:
    raise KeyError("SECRET_KEY is not set")  # the line the traceback must point at


SETTINGS = _load_settings()


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"unreachable"]

"""An app that says which process imported it (preload_app tests)."""

from __future__ import annotations

import os
from typing import Any

IMPORTED_BY = os.getpid()


def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = f"{IMPORTED_BY} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

"""An app that shows what the platform left in its process environment (#12)."""

from __future__ import annotations

import json
import os
from typing import Any

WATCHED = ("LISTEN_", "NOTIFY_SOCKET", "WATCHDOG_")


def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    seen = {k: v for k, v in os.environ.items() if k.startswith(WATCHED)}
    body = json.dumps({"pid": os.getpid(), "environ": seen}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]

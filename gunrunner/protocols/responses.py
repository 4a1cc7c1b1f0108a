"""What the server says by itself, for every driver: the Date value, reason phrases, and
the body and headers of a refusal.

Rules:
1. The Date value is formatted at most once per second: nothing per request
   (DESIGN.md, "Speed").
2. A refusal says its status, its reason phrase and why, as plain text, and closes the
   connection. (The app's failure, a 500, is in apps/types.py: the bridges send it too.)
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from gunrunner.apps.types import Headers

REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
# RFC 9110 6.4.1: these never carry a body, whatever the headers say.
HAS_NO_BODY = frozenset({204, 304})

_date_second = 0
_date_value = b""


def date_header() -> bytes:
    """The Date header value, formatted at most once per second."""
    global _date_second, _date_value
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_value = formatdate(now, usegmt=True).encode("ascii")
    return _date_value


def refusal(status: int, reason: str) -> tuple[Headers, bytes]:
    """Headers and body of the server's own answer to a request it refuses."""
    body = f"{status} {REASONS.get(status, b'').decode()}: {reason}\n".encode("ascii", "replace")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
        (b"date", date_header()),
    ]
    return headers, body

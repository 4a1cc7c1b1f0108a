"""The access log: one line per response, as text (combined log format) or JSON.

It is a response observer (protocols/observers.py): refused requests get a line too,
with the status sent and "-" for a request line that could not be parsed.

Rules:
1. Off unless asked for (on by default in --reload mode): when off, the request path
   pays one attribute check.
2. One write per line to a file opened O_APPEND: workers share the file and lines never
   interleave. Reopened on SIGUSR1 (log rotation).
3. Nothing a client sends can forge a line: text fields have control characters and
   quotes escaped; JSON lines are escaped by json.dumps.
4. `access_log_headers` adds chosen header fields to JSON lines: `request_headers` and
   `response_headers` objects keyed by the lowercased names, null for an absent field,
   repeated fields joined with ", ". Response fields make the worker keep each
   response's header list (ConnectionSettings.keep_response_headers); without them
   nothing more is done per response. A refusal's response fields are null.
"""

from __future__ import annotations

import json
import os
import string
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from gunrunner.apps.types import Headers
    from gunrunner.protocols.observers import ResponseRecord

COMBINED = (
    '{remote_addr} - - [{time}] "{request_line}" {status} {bytes} "{referer}" '
    '"{user_agent}" {duration_ms}ms {request_id}'
)
FIELDS = (
    "remote_addr",
    "time",
    "method",
    "path",
    "query",
    "protocol",
    "request_line",
    "status",
    "bytes",
    "referer",
    "user_agent",
    "duration",
    "duration_ms",
    "request_id",
    "pid",
)
# Control characters, backslash and double quote: escaped in text lines.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(32), 127]}
_ESCAPES[ord("\\")] = "\\\\"
_ESCAPES[ord('"')] = '\\"'


def check_format(fmt: str) -> str | None:
    """Why a format string is unusable (an unknown field), or None."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(fmt) if name is not None]
    except ValueError as exc:
        return f"malformed format: {exc}"
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        return f"unknown field {{{unknown[0]}}}; fields: {', '.join(FIELDS)}"
    return None


class AccessLog:
    """Writes one line per response it observes."""

    def __init__(
        self,
        path: str,
        fmt: str = COMBINED,
        as_json: bool = False,
        headers: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.fmt = fmt
        self.as_json = as_json
        self.pid = os.getpid()
        self._stream = self._open()
        self._time_second = 0
        self._time_text = ""
        # One encoder, not one per line (json.dumps with options builds one per call).
        self._encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
        self._request_names, self._response_names = split_header_names(headers)
        self._with_headers = as_json and bool(self._request_names or self._response_names)
        # The connections' settings read this: exchanges keep their response headers.
        self.wants_response_headers = self._with_headers and bool(self._response_names)

    def _open(self) -> TextIO:
        if self.path == "-":
            # Line-buffered even when stdout is a pipe, so that lines leave at once.
            return open(sys.stdout.fileno(), "w", buffering=1, closefd=False)
        return open(self.path, "a", buffering=1, encoding="utf-8")

    def reopen(self) -> None:
        old, self._stream = self._stream, self._open()
        old.close()

    def close(self) -> None:
        self._stream.close()

    def _clf_time(self) -> str:
        now = int(time.time())
        if now != self._time_second:
            self._time_second = now
            self._time_text = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
        return self._time_text

    def response(self, record: ResponseRecord) -> None:
        """One line for one response (a ResponseObserver)."""
        referer = user_agent = ""
        for name, value in record.headers:
            if name == b"referer":
                referer = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
        method, path, query = record.method, record.path, record.query
        if method is None:
            # A refusal of a line we could not parse or that broke a limit: "-" (Rule 3
            # of protocols/observers.py: no unbounded client bytes in the log).
            method = protocol = request_line = "-"
        else:
            protocol = "HTTP/" + record.http_version
            target = path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
            request_line = f"{method} {target} {protocol}"
        client, duration = record.client, record.duration
        fields: dict[str, Any] = {
            "remote_addr": client[0] if client else "-",
            "time": self._clf_time(),
            "method": method,
            "path": path.decode("latin-1"),
            "query": query.decode("latin-1"),
            "protocol": protocol,
            "request_line": request_line,
            "status": record.status,
            "bytes": record.sent,
            "referer": referer,
            "user_agent": user_agent,
            "duration": round(duration, 6),
            "duration_ms": f"{duration * 1000:.1f}",
            "request_id": record.request_id or "-",
            "pid": self.pid,
        }
        if self.as_json:
            if self._with_headers:
                self._add_headers(fields, record)
            line = self._encode(fields)
        else:
            for key in ("request_line", "referer", "user_agent", "path", "query", "request_id"):
                fields[key] = fields[key].translate(_ESCAPES) or "-"
            line = self.fmt.format(**fields)
        try:
            self._stream.write(line + "\n")
        except (OSError, ValueError):
            pass  # a full disk must not take the server down; the error log still works

    def _add_headers(self, fields: dict[str, Any], record: ResponseRecord) -> None:
        """The chosen request and response header fields (Rule 4)."""
        if self._request_names:
            fields["request_headers"] = _pick(self._request_names, record.headers)
        if self._response_names:
            fields["response_headers"] = _pick(self._response_names, record.response_headers)


def split_header_names(names: Iterable[str]) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """access_log_headers as (request names, response names): lowercased, "response:"
    taken off the response ones, each name once."""
    request: dict[bytes, None] = {}
    response: dict[bytes, None] = {}
    for name in names:
        lowered = name.strip().lower()
        if lowered.startswith("response:"):
            lowered = lowered[len("response:") :].strip()
            if lowered:
                response[lowered.encode("latin-1")] = None
        elif lowered:
            request[lowered.encode("latin-1")] = None
    return tuple(request), tuple(response)


def _pick(names: tuple[bytes, ...], headers: Headers | None) -> dict[str, str | None]:
    found: dict[bytes, str] = {}
    for name, value in headers or ():
        lowered = name.lower()
        if lowered in names:
            text = value.decode("latin-1")
            found[lowered] = found[lowered] + ", " + text if lowered in found else text
    return {name.decode("latin-1"): found.get(name) for name in names}

"""The response hook: each response the server sends passes every observer once.

The access log is one observer (gunrunner/access.py); metrics can be another. A driver
builds one `ResponseRecord` per response and hands it to each observer in turn.

Rules:
1. Answered and refused requests alike: a response the app sent, and one the server
   sent itself without calling the app (400, 408, 413, 414, 431, 501, 505), with the
   status that went out. A response that never went out whole (the client left, the
   connection was dropped mid-body) is not observed.
2. Plain values only (no parser types): every driver fills a record the same way, and
   every observer reads it the same way.
3. Bounded: a refusal whose request line broke a limit or could not be parsed carries no
   method, path or headers, and one whose head was too large carries no headers: no
   client byte past a limit reaches an observer (nginx logs the raw line; we do not).
4. Nothing is built when no observer is configured; an observer must not raise (the
   connection's event loop callback would fail).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from gunrunner.apps.types import Headers


class ResponseRecord(NamedTuple):
    """One response, as observers see it (a tuple: cheap to build once per response)."""

    client: tuple[str, int] | None
    method: str | None  # None: no request line is known (unparsed, or over a limit)
    path: bytes  # raw, not percent-decoded; b"" when method is None
    query: bytes
    http_version: str  # as the request said ("1.0", "1.1"); "" when method is None
    headers: Headers  # the request's; [] for a refused head that broke a size limit
    status: int  # the status sent
    sent: int  # body bytes sent
    duration: float  # seconds from the complete request head; 0.0 if there was none
    request_id: str | None
    refused: bool  # answered by the server itself: the app never saw the request
    # The response's headers as sent (the app's and ours), only where an observer asked
    # for them (ConnectionSettings.keep_response_headers); None otherwise, and for a
    # refusal.
    response_headers: Headers | None = None


class ResponseObserver(Protocol):
    """Told about every response a worker sends (on the event loop thread)."""

    def response(self, record: ResponseRecord) -> None: ...


def refused_head_record(
    client: tuple[str, int] | None,
    head: tuple[bytes, bytes, bytes, Headers] | None,
    *,
    status: int,
    sent: int,
) -> ResponseRecord:
    """The record of a request refused before it reached the app: `head` is its method,
    target, version and headers (Rule 3: a head too large, 431, carries no headers), or
    None when there was none (garbage, a head too large or too slow). A request line too
    long (414) is not recorded either."""
    if head is None or status == 414:
        return ResponseRecord(client, None, b"", b"", "", [], status, sent, 0.0, None, True)
    method, target, http_version, headers = head
    path, _, query = target.partition(b"?")
    return ResponseRecord(
        client,
        method.decode("ascii"),
        path,
        query,
        http_version.decode("ascii"),
        [] if status == 431 else list(headers),
        status,
        sent,
        0.0,
        None,
        True,
    )

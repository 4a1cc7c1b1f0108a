"""Where a chunked request body ends in the bytes read, for the httptools driver.

llhttp reports a chunked body's data but not where its framing (size lines, the last
chunk, trailers) ends, and it parses on into the next pipelined request. The driver
needs that end to know where the next head begins (httptools_driver.py, Rule 2), so
it walks the framing of bytes llhttp already accepted.

Rules:
1. Only bytes llhttp accepted are walked: nothing here validates. A size line is read
   up to its LF and its leading hex digits are the size; a data chunk is its size plus
   CRLF; after the last chunk (size 0), lines up to the empty one are trailers.
2. State carries over from one read to the next, one walk per chunked body; the cost
   is per chunk and per line, never per data byte.
3. The trailer section is kept (up to TRAILERS_KEPT bytes) for the driver to show h11
   when llhttp refuses a trailer field h11 ignores.
"""

from __future__ import annotations

import re

_HEX = re.compile(rb"[0-9A-Fa-f]+")
_SIZE, _DATA, _TRAILER = range(3)
TRAILERS_KEPT = 65536  # bytes of a trailer section kept for a second opinion


class ChunkWalk:
    """The framing of one chunked body, followed across reads."""

    __slots__ = ("_left", "_line", "_line_len", "_state", "trailers")

    def __init__(self) -> None:
        self._state = _SIZE
        self._left = 0  # data bytes (and their CRLF) still to come in this chunk
        self._line = b""  # the start of the size line in progress (enough for its size)
        self._line_len = 0  # bytes of the line in progress so far
        self.trailers = b""  # the trailer section so far (up to TRAILERS_KEPT bytes)

    def feed(self, data: bytes, at: int) -> int:
        """Walk `data` from index `at`: the index just past the body's end, or -1 if the
        body goes on past these bytes."""
        end = len(data)
        while at < end:
            if self._state == _DATA:
                take = min(self._left, end - at)
                at += take
                self._left -= take
                if not self._left:
                    self._state = _SIZE
                continue
            newline = data.find(b"\n", at)
            stop = end if newline < 0 else newline + 1
            if self._state == _TRAILER:
                if len(self.trailers) < TRAILERS_KEPT:
                    self.trailers += data[at:stop]
            elif self._line_len < 24:
                self._line += data[at:stop][:24]
            self._line_len += stop - at
            at = stop
            if newline < 0:
                return -1
            line, length = self._line, self._line_len
            self._line, self._line_len = b"", 0
            if self._state == _TRAILER:
                if length <= 2:  # the empty line (CRLF) after the trailers
                    return at
                continue
            match = _HEX.match(line)
            size = int(match.group(), 16) if match else 0
            if size:
                self._state, self._left = _DATA, size + 2
            else:
                self._state = _TRAILER
        return -1

    @property
    def in_trailers(self) -> bool:
        return self._state == _TRAILER

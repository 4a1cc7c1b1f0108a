"""A chunked request body read for the httptools driver, by h11's rules (as the h11
driver applies them, chunk_header.py included).

llhttp reads chunk headers, chunk ends and trailers by rules of its own (it refuses
extensions RFC 9112 allows, and trailer fields h11 ignores), and does not say where a
chunked body ends in the bytes read. So the driver stops llhttp at the end of a chunked
request's head and reads the body here; llhttp starts afresh on what follows it.

Rules:
1. chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF, the chunk header matched by
   chunk_header.CHUNK_HEADER (what the h11 driver installs into h11); anything else is
   `illegal`, with h11's reason: "illegal chunk header", "malformed chunk footer". A
   chunk header or a trailer section longer than `max_line` bytes is illegal too, as
   h11 refuses a buffer past its max_incomplete_event_size.
2. After the last chunk (size 0), lines up to the empty one are the trailer section,
   kept whole for the driver to show h11 (which decides, and whose fields are dropped).
3. State carries over from one read to the next; the cost is per chunk and per line,
   never per data byte: data is handed on as slices of the reads.
"""

from __future__ import annotations

from gunrunner.protocols.chunk_header import CHUNK_HEADER

_SIZE, _DATA, _FOOTER, _TRAILER, _ENDED, _ILLEGAL = range(6)


class ChunkedBody:
    """One chunked body, read across reads."""

    __slots__ = ("_footer", "_left", "_line", "_state", "illegal", "max_line", "trailers")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._state = _SIZE
        self._left = 0  # data bytes still to come in this chunk
        self._footer = b""  # the part of a chunk's CRLF footer read so far
        self._line = b""  # the chunk header read so far
        self.trailers = b""  # the trailer section, with its empty line
        self.illegal: str | None = None  # why the body was refused (h11's words)

    def feed(self, data: bytes, at: int, pieces: list[bytes]) -> int:
        """Read `data` from index `at`, appending body data to `pieces`: the index just
        past the body's end, or -1 if it goes on past these bytes or is `illegal`."""
        end = len(data)
        while at < end:
            state = self._state
            if state == _DATA:
                take = min(self._left, end - at)
                pieces.append(data if take == end else data[at : at + take])
                at += take
                self._left -= take
                if not self._left:
                    self._state = _FOOTER
                continue
            if state == _FOOTER:
                need = 2 - len(self._footer)
                self._footer += data[at : at + need]
                at += need
                if len(self._footer) < 2:
                    return -1
                if self._footer != b"\r\n":
                    return self._refuse("malformed chunk footer")
                self._footer = b""
                self._state = _SIZE
                continue
            if state >= _ENDED:
                return -1
            newline = data.find(b"\n", at)
            stop = end if newline < 0 else newline + 1
            self._line += data[at:stop]
            at = stop
            if len(self._line) + len(self.trailers) > self.max_line:
                too_long = "illegal chunk header" if state == _SIZE else "trailers too long"
                return self._refuse(too_long)
            if newline < 0:
                return -1
            if state == _TRAILER:
                line, self._line = self._line, b""
                self.trailers += line
                if line in (b"\r\n", b"\n"):  # the empty line that ends the section
                    self._state = _ENDED
                    return at
                continue
            match = CHUNK_HEADER.fullmatch(self._line)
            self._line = b""
            if match is None:
                return self._refuse("illegal chunk header")
            size = int(match.group("chunk_size"), 16)
            if size:
                self._state, self._left = _DATA, size
            else:
                self._state = _TRAILER
        return -1

    def _refuse(self, reason: str) -> int:
        self._state = _ILLEGAL
        self.illegal = reason
        return -1

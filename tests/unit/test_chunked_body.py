"""chunked_body.ChunkedBody: it finds where a chunked body ends and what its data is,
however the bytes are cut into reads, never reads a data byte as framing, and refuses
what the h11 driver refuses."""

from __future__ import annotations

import itertools

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gunrunner.protocols import chunk_header
from gunrunner.protocols.chunked_body import ChunkedBody

EXTENSIONS = st.sampled_from([b"", b";a=1", b' ; name="q;\\"x"', b";flag"])
TRAILERS = st.lists(st.sampled_from([b"X-Sum: 1\r\n", b"Trailer-Name: \r\n"]), max_size=3)
# Data that looks like framing: a walker that reads it as such ends in the wrong place.
DATA = st.binary(max_size=40) | st.sampled_from([b"0\r\n\r\n", b"\r\n\r\n", b"5\r\n"])


def chunked_body(chunks: list[bytes], extensions: list[bytes], trailers: list[bytes]) -> bytes:
    out = [
        b"%x%s\r\n%s\r\n" % (len(chunk), ext, chunk)
        for chunk, ext in zip(chunks, extensions, strict=False)
        if chunk
    ]
    return b"".join(out) + b"0" + extensions[-1] + b"\r\n" + b"".join(trailers) + b"\r\n"


def walk(reads: list[bytes], start: int, pieces: list[bytes] | None = None) -> tuple[int, int]:
    """(index of the read the body ends in, the end within it); (-1, -1) if it does not."""
    body = ChunkedBody(16384)
    pieces = [] if pieces is None else pieces
    for index, data in enumerate(reads):
        end = body.feed(data, start if index == 0 else 0, pieces)
        if end >= 0:
            return index, end
    return -1, -1


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)] or [b""]


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(DATA, max_size=6),
    extensions=st.lists(EXTENSIONS, min_size=7, max_size=7),
    trailers=TRAILERS,
    head=st.binary(max_size=10),
    after=st.sampled_from([b"", b"GET / HTTP/1.1\r\n\r\n", b"0\r\n\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_the_end_is_found_across_any_reads(  # noqa: PLR0917 (hypothesis draws)
    chunks: list[bytes],
    extensions: list[bytes],
    trailers: list[bytes],
    head: bytes,
    after: bytes,
    cuts: list[int],
) -> None:
    body = chunked_body(chunks, extensions, trailers)
    data = head + body + after
    reads = cut(data, [len(head)] + [len(head) + c for c in cuts])
    # The body begins at the start of the read after the head's last byte.
    first = next(i for i, _ in enumerate(reads) if sum(map(len, reads[:i])) == len(head))
    pieces: list[bytes] = []
    index, end = walk(reads[first:], 0, pieces)
    assert index >= 0, "the end of the body was not found"
    assert sum(map(len, reads[: first + index])) + end == len(head) + len(body)
    assert b"".join(pieces) == b"".join(chunks)


def test_a_body_cut_short_has_no_end() -> None:
    body = chunked_body([b"hello", b"world"], [b""] * 3, [b"X: 1\r\n"])
    for size in range(len(body)):
        assert walk([body[:size]], 0) == (-1, -1)
    assert walk([body], 0) == (0, len(body))


def test_walking_starts_where_it_is_told() -> None:
    data = b"POST / HTTP/1.1\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET"
    start = data.index(b"3\r\n")
    assert walk([data], start) == (0, len(data) - 3)


def test_the_trailer_section_is_kept_across_reads() -> None:
    body = chunked_body([b"abc"], [b""] * 2, [b"Content-Length: 5\r\n", b"X: 1\r\n"])
    for split in range(len(body) + 1):
        reader = ChunkedBody(16384)
        pieces: list[bytes] = []
        first = reader.feed(body[:split], 0, pieces)
        if first < 0:
            assert reader.feed(body[split:], 0, pieces) == len(body) - split
        assert reader.trailers == b"Content-Length: 5\r\nX: 1\r\n\r\n"
        assert b"".join(pieces) == b"abc"


def h11_verdict(body: bytes) -> tuple[bytes, bool]:
    """What the h11 driver reads of `body` (its chunk-header rule installed): the data,
    and whether the body was accepted whole."""
    chunk_header.install()
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.next_event()
    conn.receive_data(body)
    data = b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                return data, True
            else:
                return data, False
    except h11.RemoteProtocolError:
        return data, False


@pytest.mark.parametrize(
    "body",
    [
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5;a=b \r\nhello\r\n0\r\n\r\n",
        b"5 ;name = value\r\nhello\r\n0\r\n\r\n",
        b"5;\r\nhello\r\n0\r\n\r\n",
        b'5;a="b\x00c"\r\nhello\r\n0\r\n\r\n',
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXY0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX: 1\r\n\r\n",
        b"0005\r\nhello\r\n0;last=1\r\n\r\n",
        b"3\r\nabc\r\n" + b"1" * 21 + b"\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
    ],
)
def test_the_same_verdict_as_the_h11_driver(body: bytes) -> None:
    reader = ChunkedBody(16384)
    pieces: list[bytes] = []
    end = reader.feed(body, 0, pieces)
    data, accepted = h11_verdict(body)
    assert (end == len(body)) == accepted, reader.illegal
    if accepted:
        assert b"".join(pieces) == data
    else:
        assert reader.illegal is not None
        assert b"".join(pieces) == data[: len(b"".join(pieces))]

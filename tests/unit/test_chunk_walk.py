"""chunk_walk.ChunkWalk: it finds where a chunked body ends, however the bytes are cut
into reads, and never reads a data byte as framing."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gunrunner.protocols.chunk_walk import ChunkWalk

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


def walk(reads: list[bytes], start: int) -> tuple[int, int]:
    """(index of the read the body ends in, the end within it); (-1, -1) if it does not."""
    walker = ChunkWalk()
    for index, data in enumerate(reads):
        end = walker.feed(data, start if index == 0 else 0)
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
    index, end = walk(reads[first:], 0)
    assert index >= 0, "the end of the body was not found"
    assert sum(map(len, reads[: first + index])) + end == len(head) + len(body)


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
        walker = ChunkWalk()
        assert not walker.in_trailers
        first = walker.feed(body[:split], 0)
        if first < 0:
            assert walker.feed(body[split:], 0) == len(body) - split
        assert walker.trailers == b"Content-Length: 5\r\nX: 1\r\n\r\n"
        assert walker.in_trailers

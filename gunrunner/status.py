"""What a worker tells the arbiter: the status pipe and the heartbeat cell.

Both are created by the arbiter before fork(), so that both processes hold them.

Rules:
1. The status pipe carries, worker -> arbiter: STATUS_READY once the worker serves, and
   STATUS_ERROR + a message + NUL when it is about to exit of a fatal error (whatever
   its exit code), so the arbiter's line about the exit can say why; STATUS_MAX_REQUESTS
   once, before any error, when it has served its max_requests.
2. The heartbeat is stamped by the worker's event loop itself (a side thread would go on
   beating while the loop is stuck) and read by the arbiter.
"""

from __future__ import annotations

import mmap
import os
import time

STATUS_READY = b"R"
STATUS_ERROR = b"E"  # followed by the message and a NUL
STATUS_MAX_REQUESTS = b"M"  # served its max_requests: replace me (recycling.py)


def report(fd: int | None, message: bytes) -> None:
    """Write to the status pipe; a gone arbiter is no error (the worker is stopping)."""
    if fd is None:
        return
    try:
        os.write(fd, message)
    except OSError:
        pass


def error_message(text: str) -> bytes:
    return STATUS_ERROR + text.encode("utf-8", "replace").replace(b"\0", b"") + b"\0"


def reports_max_requests(earlier: bytes | bytearray, data: bytes) -> bool:
    """Whether `data`, received after `earlier`, says STATUS_MAX_REQUESTS (an error
    message's bytes do not count)."""
    return STATUS_ERROR not in earlier and STATUS_MAX_REQUESTS in data.partition(STATUS_ERROR)[0]


def read_available(fd: int) -> bytes:
    """Everything the worker has written so far (the arbiter's end is non-blocking)."""
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # BlockingIOError: nothing more now
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def error_text(received: bytes | bytearray) -> str:
    """The fatal error a worker reported (after STATUS_ERROR), or ""."""
    start = received.find(STATUS_ERROR)
    if start < 0:
        return ""
    text = bytes(received[start + len(STATUS_ERROR) :])
    return text.decode("utf-8", "replace").replace("\0", "").strip()


class Heartbeat:
    """A shared-memory cell the worker's event loop stamps and the arbiter reads.

    The stamp is CLOCK_MONOTONIC, which is the same clock in every process of the machine.
    It is stored through a memoryview of one double: a single aligned 8-byte store, which
    the other process sees whole. (struct.pack_into zero-fills its field before it writes
    the value: an arbiter that read in between saw 0.0, a worker silent since boot, and
    killed a healthy worker.) The reader also keeps the latest stamp it has seen, as stamps
    only go forward.
    """

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, 8)
        self._cell = memoryview(self._map).cast("d")
        self._seen = 0.0
        self.stamp()

    def stamp(self) -> None:
        self._cell[0] = time.monotonic()

    def age(self) -> float:
        self._seen = max(self._seen, self._cell[0])
        return time.monotonic() - self._seen

    def close(self) -> None:
        self._cell.release()
        self._map.close()

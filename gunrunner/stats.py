"""Server statistics: counted by each worker in plain Python ints, published to a shared
memory table once a tick, summed across workers by the arbiter.

Why this design (measured against the alternatives in the #11 note):
- Per request a worker only adds to items of a Python list (no lock, no syscall, no
  shared-memory write on the request path).
- About once a second (the heartbeat tick) and when it stops, the worker copies its list
  into its row of a table the arbiter mapped (MAP_SHARED) before it forked: one memcpy.
- The arbiter owns the rows: it hands one to each worker it forks and, when it reaps the
  worker, folds the row into row 0 (the totals of workers gone) before the row is reused.
  The admin process (admin.py) reads the table to serve /metrics. A dead worker's
  counts stay in the totals (up to one tick of a crashed worker's counts is lost; a
  graceful stop publishes its last counts first).
- prometheus_client's multiprocess mode writes one mmapped file per process and value,
  locks per update and needs a directory cleaned at start; here nothing touches the
  filesystem and the request path takes no lock.

Rules:
1. Every field but GAUGES is a counter that only grows, so a sum over the rows and the
   folded totals is meaningful. Gauges (open connections, requests in flight) are counted
   by the worker when it publishes, from its connection set, and are not folded.
2. A row is written only by its worker; each 8-byte aligned field is written whole on
   the platforms we run on (Linux, 64-bit), so a reader sees each counter old or new.
3. The header and the folding of a reaped worker's row are written by the arbiter under
   a sequence lock (StatsTable.writing); readers retry a snapshot that overlapped it.
Knows nothing of HTTP framing: methods and statuses come in as plain values.
"""

from __future__ import annotations

import array
import mmap
import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Request duration histogram bucket bounds, seconds (Prometheus' defaults).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REFUSED = (400, 408, 413, 414, 431, 501, 505)

_REFUSED_INDEX = {status: i for i, status in enumerate(REFUSED)}

# The layout of one row: named slices of one array of unsigned 64-bit counters.
REQUESTS = 0  # len(METHODS) * len(STATUS_CLASSES): requests by method and status class
DURATION = REQUESTS + len(METHODS) * len(STATUS_CLASSES)  # histogram: buckets, then +Inf
DURATION_SUM_US = DURATION + len(BUCKETS) + 1  # total duration in microseconds
REFUSALS = DURATION_SUM_US + 1  # refused requests by status (REFUSED order)
BYTES_RECEIVED = REFUSALS + len(REFUSED)
BODY_BYTES_SENT = BYTES_RECEIVED + 1
# Gauges, set when the row is published (not per request) and not folded at exit.
OPEN_HTTP = BODY_BYTES_SENT + 1  # open HTTP connections
OPEN_WEBSOCKETS = OPEN_HTTP + 1
IN_FLIGHT = OPEN_WEBSOCKETS + 1  # requests in the app or being answered
GAUGES = range(OPEN_HTTP, IN_FLIGHT + 1)
FIELDS = IN_FLIGHT + 1

ROW_BYTES = FIELDS * 8


# The worker's own list has one more block after the row's fields: requests by method
# and `status // 100` (1..9: apps may answer 100 to 999), ten columns per method, so one
# dict look-up and one add place a request; publish() folds it into REQUESTS.
WIDE_REQUESTS = FIELDS
_WIDE_INDEX = {name: WIDE_REQUESTS + i * 10 for i, name in enumerate(METHODS)}
_WIDE_OTHER = _WIDE_INDEX["other"]
LOCAL_FIELDS = WIDE_REQUESTS + len(METHODS) * 10
_FIRST_BUCKET = BUCKETS[0]


class WorkerStats:
    """One worker's counters (on its event loop thread), published with publish()."""

    __slots__ = ("_row", "counts")

    def __init__(self, row: memoryview | None = None) -> None:
        self.counts: list[Any] = [0] * LOCAL_FIELDS
        self.counts[DURATION_SUM_US] = 0.0  # seconds here; microseconds once published
        self._row = row  # its row in the shared table; None: not published (one process)

    def response(self, method: str, status: int, sent: int, duration: float) -> None:
        # Per request, as little as we can: a request costs 1-2 us in a busy worker's
        # cold caches however short the code (see the #11 note). One look-up, three adds;
        # the first histogram bucket is not counted but derived in publish() (every
        # request not in a later bucket is in it).
        counts = self.counts
        counts[_WIDE_INDEX.get(method, _WIDE_OTHER) + status // 100] += 1
        if duration >= _FIRST_BUCKET:
            counts[DURATION + bisect_left(BUCKETS, duration)] += 1
        counts[DURATION_SUM_US] += duration
        counts[BODY_BYTES_SENT] += sent

    def refused(self, status: int, sent: int) -> None:
        index = _REFUSED_INDEX.get(status)
        if index is not None:
            self.counts[REFUSALS + index] += 1
        self.counts[BODY_BYTES_SENT] += sent

    def totals(self) -> list[int]:
        """The counters in the row's layout (requests folded, first bucket derived)."""
        counts = self.counts
        row = [int(value) for value in counts[:FIELDS]]
        row[DURATION_SUM_US] = int(counts[DURATION_SUM_US] * 1_000_000)
        requests = 0
        for m in range(len(METHODS)):
            wide = WIDE_REQUESTS + m * 10
            for status_class in range(1, 10):  # 6xx..9xx are counted as 5xx
                n = counts[wide + status_class]
                row[REQUESTS + m * 5 + min(status_class, 5) - 1] += n
                requests += n
        row[DURATION] = requests - sum(counts[DURATION + 1 : DURATION + len(BUCKETS) + 1])
        return row

    def publish(self, connections: Iterable[Any] = ()) -> None:
        """Set the gauges from the worker's open connections and copy the counters into
        the shared row (one memcpy; on the tick, not per request)."""
        if self._row is None:
            return
        counts = self.counts
        http = websockets = in_flight = 0
        for connection in connections:
            if hasattr(connection, "exchange"):
                http += 1
                in_flight += connection.exchange is not None
            else:
                websockets += 1
        counts[OPEN_HTTP] = http
        counts[OPEN_WEBSOCKETS] = websockets
        counts[IN_FLIGHT] = in_flight
        self._row[:] = array.array("Q", self.totals())


# The header the arbiter writes (under a sequence lock, Rule 3), before the rows.
SEQ = 0  # odd while the arbiter writes
ARBITER_BEAT_MS = 1  # the arbiter loop's last turn (CLOCK_MONOTONIC ms)
DRAINING = 2  # 1 once a stop began
SLOT_COUNT = 3
WORKER_STARTS = 4
EXIT_CAUSES = ("stopped", "replaced", "crashed", "killed", "boot_failed")
EXITS = 5  # by EXIT_CAUSES
RECYCLE_CAUSES = ("max_requests", "max_worker_lifetime", "max_worker_memory")
RECYCLES = EXITS + len(EXIT_CAUSES)
MAX_SLOTS = 128
SLOT_STATES = ("empty", "booting", "ready", "draining")
SLOT_STATE = RECYCLES + len(RECYCLE_CAUSES)  # per slot: index into SLOT_STATES
SLOT_MEMORY = SLOT_STATE + MAX_SLOTS  # per slot: its worker's USS in bytes
SLOT_QUEUE = SLOT_MEMORY + MAX_SLOTS  # per slot: connections waiting in its listen queue
HEADER_FIELDS = SLOT_QUEUE + MAX_SLOTS


class StatsTable:
    """The shared table: the arbiter's header, then row 0 with the folded counts of the
    workers that are gone, then one row per live worker process.

    Rule 3: the arbiter changes the header and folds rows inside writing(); a reader
    (the admin process) retries a snapshot that overlapped it, so it never sees a
    reaped worker's counts twice or not at all.
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        size = (HEADER_FIELDS + (rows + 1) * FIELDS) * 8
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        self._view = memoryview(self._map).cast("Q")
        self.header = self._view[:HEADER_FIELDS]
        self._free = list(range(rows, 0, -1))

    def _row(self, index: int) -> memoryview:
        start = HEADER_FIELDS + index * FIELDS
        return self._view[start : start + FIELDS]

    def take(self) -> tuple[int, memoryview] | None:
        """A zeroed row for a worker about to be forked, or None if all are taken."""
        if not self._free:
            return None
        index = self._free.pop()
        row = self._row(index)
        row[:] = array.array("Q", bytes(ROW_BYTES))
        return index, row

    def writing(self) -> _Writing:
        return _Writing(self.header)

    def release(self, index: int) -> None:
        """The worker of this row was reaped: fold its counters into row 0, free the row."""
        folded = self._row(0)
        row = self._row(index)
        with self.writing():
            for i in range(FIELDS):
                if i not in GAUGES:
                    folded[i] += row[i]
            row[:] = array.array("Q", bytes(ROW_BYTES))
        self._free.append(index)

    def write_state(
        self, *, draining: bool, states: list[int], memory: list[int], queues: list[int]
    ) -> None:
        """The arbiter's view, each loop turn: its beat, the drain, each slot's state
        (index into SLOT_STATES), its worker's memory and its listen queue."""
        header = self.header
        count = min(len(states), MAX_SLOTS)
        with self.writing():
            header[ARBITER_BEAT_MS] = int(time.monotonic() * 1000)
            header[DRAINING] = int(draining)
            header[SLOT_COUNT] = count
            for i in range(count):
                header[SLOT_STATE + i] = states[i]
                header[SLOT_MEMORY + i] = memory[i]
                header[SLOT_QUEUE + i] = queues[i]

    def count(self, field: int) -> None:
        """Add one to a header counter (worker starts, exits, recycles)."""
        with self.writing():
            self.header[field] += 1

    def snapshot(self) -> tuple[list[int], list[int]]:
        """(header, counters summed over every row), consistent with the arbiter's writes."""
        header = self.header
        while True:
            before = header[SEQ]
            if before % 2:
                continue
            values = self._view.tolist()
            if header[SEQ] == before:
                break
        head = values[:HEADER_FIELDS]
        totals = [0] * FIELDS
        for start in range(HEADER_FIELDS, len(values), FIELDS):
            for i, value in enumerate(values[start : start + FIELDS]):
                totals[i] += value
        return head, totals


class _Writing:
    """Rule 3's sequence lock: SEQ is odd while the arbiter writes."""

    def __init__(self, header: memoryview) -> None:
        self.header = header

    def __enter__(self) -> None:
        self.header[SEQ] += 1

    def __exit__(self, *exc: object) -> None:
        self.header[SEQ] += 1

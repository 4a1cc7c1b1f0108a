"""Worker recycling: when a worker has served long enough to be replaced, and why.

The limits (options): max_requests (+ jitter), max_worker_lifetime (+ jitter),
max_worker_memory, and min_worker_lifetime below which no limit replaces a worker.

Rules:
1. This module decides; the arbiter replaces. A worker due for recycling gets a
   successor on its slot, and only once the successor is ready is the old worker told to
   drain (slots.py, Rule 2): nothing queued or in flight is lost, and a successor that
   fails to boot leaves the old worker serving (retried after RETRY_AFTER).
2. Each worker gets its own limits at fork, jitter drawn then, so workers started
   together do not all recycle together.
3. The request count is the worker's own (it reports reaching its limit through the
   status pipe: no per-request traffic to the arbiter); lifetime and memory are checked
   by the arbiter, memory every MEMORY_INTERVAL seconds from /proc (off the request path).
4. A limit reached before min_worker_lifetime waits until then: a leaky app is recycled at
   that pace at most, never in a restart storm.
Knows pids, times and /proc; nothing of HTTP.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from gunrunner.slots import SlotState, SlotTable, WorkerSlot

MEMORY_INTERVAL = 5.0  # seconds between two reads of the workers' memory
RETRY_AFTER = 10.0  # seconds before a recycle whose successor failed to boot is retried

MAX_REQUESTS = "max_requests"
MAX_LIFETIME = "max_worker_lifetime"
MAX_MEMORY = "max_worker_memory"


@dataclass(frozen=True, slots=True)
class RecyclePolicy:
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_lifetime: float = 0.0
    max_lifetime_jitter: float = 0.0
    max_memory: int = 0  # bytes
    min_lifetime: float = 0.0

    @classmethod
    def from_options(cls, options: Any) -> RecyclePolicy:
        return cls(
            max_requests=options.max_requests,
            max_requests_jitter=options.max_requests_jitter,
            max_lifetime=options.max_worker_lifetime,
            max_lifetime_jitter=options.max_worker_lifetime_jitter,
            max_memory=options.max_worker_memory * 1024 * 1024,
            min_lifetime=options.min_worker_lifetime,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.max_requests or self.max_lifetime or self.max_memory)

    def request_limit(self, rng: random.Random) -> int:
        """A new worker's max_requests, jitter included (0: no limit)."""
        if not self.max_requests:
            return 0
        return self.max_requests + rng.randint(0, self.max_requests_jitter)

    def lifetime(self, rng: random.Random) -> float:
        """A new worker's lifetime in seconds, jitter included (0: no limit)."""
        if not self.max_lifetime:
            return 0.0
        return self.max_lifetime + rng.uniform(0.0, self.max_lifetime_jitter)


def unique_memory(pid: int) -> int | None:
    """The pages only this process holds (USS), in bytes; None if it is gone or /proc
    cannot tell. smaps_rollup sums them in the kernel: one read per worker."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            text = f.read()
    except OSError:
        return None
    total = 0
    found = False
    for line in text.splitlines():
        if line.startswith((b"Private_Clean:", b"Private_Dirty:", b"Private_Hugetlb:")):
            total += int(line.split()[1]) * 1024
            found = True
    return total if found else None


@dataclass(slots=True)
class Due:
    worker: WorkerSlot
    cause: str
    detail: str  # for the log line: "10234 requests", "312 MiB", "86400s"


class Recycler:
    """The arbiter's recycling state: each worker's limits, and which are due."""

    def __init__(self, policy: RecyclePolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.rng = rng if rng is not None else random.Random()
        self._next_memory_check = 0.0
        self.memory: dict[int, int] = {}  # pid -> USS bytes at the last check

    def request_limit(self) -> int:
        """A worker about to be forked: its max_requests, jitter drawn (0: no limit)."""
        return self.policy.request_limit(self.rng)

    def started(self, worker: WorkerSlot) -> None:
        """A worker was forked: draw its lifetime."""
        worker.recycle_cause = ""
        worker.recycle_at = 0.0
        lifetime = self.policy.lifetime(self.rng)
        worker.lifetime_end = worker.started + lifetime if lifetime else 0.0

    def request(self, worker: WorkerSlot, cause: str, detail: str) -> None:
        """A limit was reached: mark the worker due, no earlier than min_worker_lifetime."""
        if worker.recycle_cause:
            return
        worker.recycle_cause = cause
        worker.recycle_detail = detail
        worker.recycle_at = worker.started + self.policy.min_lifetime

    def failed(self, worker: WorkerSlot) -> None:
        """Its successor did not boot: try again later (Rule 1)."""
        if worker.recycle_cause:
            worker.recycle_at = time.monotonic() + RETRY_AFTER

    def due(self, slots: SlotTable, now: float) -> list[Due]:
        """Current, ready workers whose replacement should start now."""
        if not self.policy.enabled:
            return []
        if self.policy.max_memory and now >= self._next_memory_check:
            self._next_memory_check = now + MEMORY_INTERVAL
            self._check_memory(slots)
        found = []
        for worker in slots.slots.values():
            if worker.state is not SlotState.READY or worker.index in slots.successors:
                continue
            if not worker.recycle_cause and worker.lifetime_end and now >= worker.lifetime_end:
                self.request(worker, MAX_LIFETIME, f"after {now - worker.started:.0f}s")
            if worker.recycle_cause and now >= worker.recycle_at:
                found.append(Due(worker, worker.recycle_cause, worker.recycle_detail))
        return found

    def next_check(self, slots: SlotTable, now: float) -> float:
        """Seconds until due() may find something new (for the arbiter's wait)."""
        if not self.policy.enabled:
            return 3600.0
        times = [self._next_memory_check] if self.policy.max_memory else []
        for worker in slots.slots.values():
            if worker.state is not SlotState.READY:
                continue
            if worker.recycle_cause:
                times.append(worker.recycle_at)
            elif worker.lifetime_end:
                times.append(worker.lifetime_end)
        return max(min(times, default=now + 3600.0) - now, 0.0)

    def _check_memory(self, slots: SlotTable) -> None:
        limit = self.policy.max_memory
        self.memory = {}
        for worker in slots.live():
            uss = unique_memory(worker.pid)
            if uss is None:
                continue
            self.memory[worker.pid] = uss
            if uss > limit and slots.slots.get(worker.index) is worker:
                self.request(worker, MAX_MEMORY, f"{uss / 1048576:.0f} MiB > {limit >> 20} MiB")

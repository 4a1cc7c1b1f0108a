"""The recycling decisions without processes: limits with jitter, lifetimes, memory,
min_worker_lifetime, retries."""

from __future__ import annotations

import os
import random

from gunrunner import recycling
from gunrunner.recycling import RecyclePolicy, Recycler, unique_memory
from gunrunner.slots import SlotState, SlotTable, WorkerSlot


def ready_worker(table: SlotTable, index: int, started: float, pid: int = 0) -> WorkerSlot:
    worker = table.add(index)
    worker.state = SlotState.READY
    worker.started = started
    worker.pid = pid or 1000 + index
    table.by_pid[worker.pid] = worker
    return worker


def test_request_limits_are_jittered_within_range() -> None:
    recycler = Recycler(RecyclePolicy(max_requests=100, max_requests_jitter=20), random.Random(1))
    limits = {recycler.request_limit() for _ in range(500)}
    assert min(limits) >= 100 and max(limits) <= 120
    assert len(limits) > 10  # workers started together get different limits


def test_no_limit_means_nothing_is_due() -> None:
    recycler = Recycler(RecyclePolicy())
    table = SlotTable()
    worker = ready_worker(table, 0, started=0.0)
    recycler.started(worker)
    assert recycler.request_limit() == 0
    assert recycler.due(table, 1e9) == []
    assert not RecyclePolicy().enabled


def test_lifetime_with_jitter() -> None:
    recycler = Recycler(RecyclePolicy(max_lifetime=60, max_lifetime_jitter=10), random.Random(2))
    table = SlotTable()
    worker = ready_worker(table, 0, started=100.0)
    recycler.started(worker)
    assert 160.0 <= worker.lifetime_end <= 170.0
    assert recycler.due(table, worker.lifetime_end - 0.01) == []
    assert recycler.next_check(table, 150.0) == worker.lifetime_end - 150.0
    (due,) = recycler.due(table, worker.lifetime_end)
    assert (due.worker, due.cause) == (worker, recycling.MAX_LIFETIME)


def test_a_limit_reached_early_waits_for_min_lifetime() -> None:
    recycler = Recycler(RecyclePolicy(max_requests=5, min_lifetime=30))
    table = SlotTable()
    worker = ready_worker(table, 0, started=100.0)
    recycler.started(worker)
    recycler.request(worker, recycling.MAX_REQUESTS, "served its max_requests")
    assert recycler.due(table, 110.0) == []
    assert recycler.next_check(table, 110.0) == 20.0
    assert [d.cause for d in recycler.due(table, 130.0)] == [recycling.MAX_REQUESTS]


def test_only_current_ready_workers_without_a_successor_are_due() -> None:
    recycler = Recycler(RecyclePolicy(max_requests=5))
    table = SlotTable()
    booting = ready_worker(table, 0, started=0.0)
    booting.state = SlotState.BOOTING
    replacing = ready_worker(table, 1, started=0.0)
    table.add_successor(1)
    for worker in (booting, replacing):
        recycler.request(worker, recycling.MAX_REQUESTS, "")
    assert recycler.due(table, 100.0) == []


def test_a_failed_replacement_is_retried_later() -> None:
    recycler = Recycler(RecyclePolicy(max_requests=5))
    table = SlotTable()
    worker = ready_worker(table, 0, started=0.0)
    recycler.request(worker, recycling.MAX_REQUESTS, "")
    recycler.failed(worker)
    assert worker.recycle_at > 1.0
    assert worker.recycle_cause == recycling.MAX_REQUESTS  # still due, later


def test_memory_over_the_limit_is_due() -> None:
    own = unique_memory(os.getpid())
    assert own is not None and own > 1024 * 1024  # this interpreter holds MiBs of its own
    recycler = Recycler(RecyclePolicy(max_memory=1024 * 1024))
    table = SlotTable()
    worker = ready_worker(table, 0, started=0.0, pid=os.getpid())
    (due,) = recycler.due(table, 10.0)
    assert due.cause == recycling.MAX_MEMORY and "MiB > 1 MiB" in due.detail
    assert recycler.memory[os.getpid()] == recycler.memory[worker.pid] > 0


def test_unique_memory_of_a_gone_process_is_none() -> None:
    assert unique_memory(2**22 + 12345) is None

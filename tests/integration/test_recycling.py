"""Worker recycling against the real server: max_requests (with jitter), lifetimes,
memory, min_worker_lifetime; each replacement is new-before-old and loses nothing."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime

import pytest

from tests.helpers import Server, running, wait_until
from tests.helpers.load import KeepAliveClient, total
from tests.helpers.wire import http_get

RECYCLES = 40  # the load test runs until this many recycles...
LOAD_REQUESTS = 5000  # ...and this many requests
DEADLINE = 45.0  # seconds for the whole load test (pytest's timeout is 60)


def recycles(server: Server, cause: str = "") -> int:
    return len(re.findall(rf"recycling worker \d+ \(slot \d+\): {cause}", server.log()))


def pid_of(server: Server) -> int:
    pid = int(http_get(server.url, "/", headers={"Connection": "close"}).content)
    server.seen_pids.add(pid)
    return pid


def log_time(server: Server, pattern: str) -> float:
    """The time stamp of the first log line matching `pattern`, in seconds."""
    match = re.search(rf"^(\S+) .*{pattern}", server.log(), re.MULTILINE)
    assert match, f"{pattern!r} not in the log:\n{server.log()}"
    return datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_recycling_every_hundred_requests_under_load_fails_no_request() -> None:
    """Workers recycled every 100-120 requests while keep-alive and new-connection
    clients send requests back to back: 0 failed requests."""
    started = time.monotonic()
    stop = threading.Event()
    with running(
        "tests.apps.basic:wsgi_pid",
        "--workers", "2",
        "--max-requests", "100",
        "--max-requests-jitter", "20",
        "--min-worker-lifetime", "0",
        ready=2,
    ) as server:  # fmt: skip
        clients = [KeepAliveClient(server, stop) for _ in range(3)]
        clients += [KeepAliveClient(server, stop, fresh=True) for _ in range(2)]
        for client in clients:
            client.start()
        try:
            assert wait_until(
                lambda: recycles(server) >= RECYCLES and total(clients) >= LOAD_REQUESTS,
                DEADLINE - (time.monotonic() - started),
            ), f"{recycles(server)} recycles, {total(clients)} requests in time"
        finally:
            stop.set()
            for client in clients:
                client.join(10)
        pids = set().union(*(client.pids for client in clients))
        server.seen_pids.update(pids)  # the final check covers every worker that served
        failures = [failure for client in clients for failure in client.failures]
        assert failures == [], f"{len(failures)} of {total(clients)} failed: {failures[:5]}"
        assert all(not client.is_alive() for client in clients)
        # Many generations served, every one of them replaced for its request count.
        assert len(pids) >= RECYCLES
        assert recycles(server, "max_requests") == recycles(server)
        assert "ERROR" not in server.log(), server.log()


def test_a_worker_is_replaced_after_its_lifetime_new_before_old() -> None:
    with running(
        "tests.apps.basic:wsgi_pid",
        "--workers", "2",
        "--max-worker-lifetime", "1",
        "--max-worker-lifetime-jitter", "0.5",
        "--min-worker-lifetime", "0",
        ready=2,
    ) as server:  # fmt: skip
        first = set(server.workers())
        server.wait_for(r"recycling worker \d+ \(slot 0\): max_worker_lifetime \(after \d+s\)")
        server.wait_for(r"recycling worker \d+ \(slot 1\): max_worker_lifetime")
        # The old worker is told to stop only once its successor is ready.
        line = server.wait_for(r"ready; replacing worker (\d+) \(max_worker_lifetime\)")
        assert int(line.group(1)) in first
        assert wait_until(lambda: not first & set(server.workers()), 10)
        assert pid_of(server) not in first


def test_min_worker_lifetime_holds_a_recycle_back() -> None:
    """A worker past max_requests at once is replaced no sooner than min_worker_lifetime."""
    with running(
        "tests.apps.basic:wsgi_pid",
        "--workers", "2",
        "--max-requests", "2",
        "--min-worker-lifetime", "2",
        ready=2,
    ) as server:  # fmt: skip
        for _ in range(12):  # both workers pass their limit (the kernel spreads them)
            pid_of(server)
        server.wait_for(r"served max_requests \(2 requests\)")
        line = server.wait_for(r"recycling worker (\d+) \(slot \d+\): max_requests")
        old = line.group(1)
        lived = log_time(server, rf"recycling worker {old} ") - log_time(
            server, rf"started worker {old} "
        )
        assert lived >= 2.0, server.log()


def test_a_worker_over_max_worker_memory_is_recycled() -> None:
    with running(
        "tests.apps.process_apps:wsgi_grows",
        "--workers", "2",
        "--max-worker-memory", "100",
        "--min-worker-lifetime", "0",
        ready=2,
    ) as server:  # fmt: skip
        grown = int(http_get(server.url, "/grow?150").content)
        server.seen_pids.add(grown)
        line = server.wait_for(
            rf"recycling worker {grown} \(slot \d+\): max_worker_memory \((\d+) MiB > 100 MiB\)"
        )
        assert int(line.group(1)) >= 150
        assert wait_until(lambda: grown not in server.workers(), 15)
        # Only the worker that grew was replaced.
        assert recycles(server) == 1


def test_one_worker_with_a_limit_runs_under_the_arbiter() -> None:
    """workers = 1 serves in one process, unless a recycling limit needs an arbiter."""
    with running(
        "tests.apps.basic:wsgi_pid", "--max-requests", "3", "--min-worker-lifetime", "0"
    ) as server:
        server.wait_for(r"\(1 workers,")
        first = pid_of(server)
        assert first != server.pid
        for _ in range(3):
            pid_of(server)
        server.wait_for(rf"replacing worker {first} \(max_requests\)")
        assert wait_until(lambda: pid_of(server) != first, 10)

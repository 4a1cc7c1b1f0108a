"""metrics_bind: /metrics summed over every worker (read by prometheus_client's own
parsers), /livez and /readyz, against the real server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import REPO, Server, running, wait_until
from tests.helpers.wire import Client

ADMIN = r"admin endpoints on http://127\.0\.0\.1:(\d+)"
Found = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, labels) -> value


def admin_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.wait_for(ADMIN).group(1)}"


def samples(server: Server) -> Found:
    text = httpx.get(admin_url(server) + "/metrics", timeout=5).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def answered(server: Server) -> float:
    return value(samples(server), "gunrunner_requests_total", method="GET", status="2xx")


def served_fresh(server: Server, count: int) -> set[int]:
    """`count` GETs, each on its own connection (so the kernel spreads them); the pids."""
    pids = set()
    for _ in range(count):
        with Client.connect(server) as client:
            reply = client.request("GET", "/")
            assert reply.status == 200
            pids.add(int(reply.body))
    server.seen_pids.update(pids)
    return pids


def test_counts_match_the_requests_made_across_workers() -> None:
    with running(
        "tests.apps.basic:wsgi_pid", "--workers", "2", "--metrics-bind", "127.0.0.1:0", ready=2
    ) as server:
        pids = served_fresh(server, 30)
        assert len(pids) == 2  # both workers served some: the sum is across workers
        for _ in range(2):
            with Client.connect(server) as client:
                client.send(b"NOT HTTP\r\n\r\n")
                assert client.expect_response().status == 400
        # Workers publish on their tick (about once a second).
        assert wait_until(lambda: answered(server) == 30, 10), samples(server)
        assert wait_until(
            lambda: value(samples(server), "gunrunner_refused_requests_total", status="400") == 2,
            10,
        )
        found = samples(server)
        assert value(found, "gunrunner_request_duration_seconds_count") == 30
        assert value(found, "gunrunner_request_duration_seconds_bucket", le="+Inf") == 30
        assert value(found, "gunrunner_worker_starts_total") == 2
        assert value(found, "gunrunner_slot_ready", slot="0") == 1
        assert value(found, "gunrunner_slot_ready", slot="1") == 1
        assert value(found, "gunrunner_received_bytes_total") > 30 * 16
        assert value(found, "gunrunner_worker_memory_bytes", slot="0") > 1024 * 1024
        assert any(name == "gunrunner_build_info" for name, _ in found)


def test_counts_survive_a_worker_killed_and_respawned() -> None:
    with running(
        "tests.apps.basic:wsgi_pid", "--workers", "2", "--metrics-bind", "127.0.0.1:0", ready=2
    ) as server:
        victim = min(served_fresh(server, 20))  # a worker (the admin process is a child too)
        assert wait_until(lambda: answered(server) == 20, 10)
        os.kill(victim, signal.SIGKILL)
        server.wait_for(rf"worker {victim} \(slot \d+\) killed by SIGKILL")
        server.wait_for(r"started worker \d+", count=3)
        found = samples(server)
        assert value(found, "gunrunner_requests_total", method="GET", status="2xx") == 20
        assert value(found, "gunrunner_worker_exits_total", cause="killed") == 1
        assert value(found, "gunrunner_worker_starts_total") == 3
        served_fresh(server, 5)
        assert wait_until(lambda: answered(server) == 25, 10)


def test_openmetrics_when_the_scraper_asks() -> None:
    with running(
        "tests.apps.basic:asgi_pid", "--workers", "2", "--metrics-bind", "127.0.0.1:0", ready=2
    ) as server:
        served_fresh(server, 3)
        url = admin_url(server) + "/metrics"
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        assert wait_until(lambda: answered(server) == 3, 10)
        response = httpx.get(url, headers=accept, timeout=5)
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        families = {f.name: f for f in openmetrics_families(response.text)}
        requests = families["gunrunner_requests"]
        assert requests.type == "counter"
        assert sum(s.value for s in requests.samples if s.name == "gunrunner_requests_total") == 3


def test_readyz_says_503_while_draining_and_livez_follows_the_workers() -> None:
    with running(
        "tests.apps.basic:wsgi_pid", "--workers", "2", "--metrics-bind", "127.0.0.1:0", ready=2
    ) as server:
        admin = admin_url(server)
        assert httpx.get(admin + "/livez", timeout=5).status_code == 200
        ready = httpx.get(admin + "/readyz", timeout=5)
        assert ready.status_code == 200
        assert [s["state"] for s in ready.json()["slots"]] == ["ready", "ready"]
        with Client.connect(server) as busy:
            busy.send_head("GET", "/sleep-noted?3")
            server.wait_for("app entered /sleep-noted")
            server.send_signal(signal.SIGTERM)
            server.wait_for("graceful stop")
            # The stop began: a load balancer is told at once, while a request still runs.
            assert wait_until(lambda: httpx.get(admin + "/readyz", timeout=5).status_code == 503, 5)
            assert httpx.get(admin + "/readyz", timeout=5).json()["reason"] == "draining"
            assert busy.expect_response(within=10).status == 200
        assert server.wait_exit() == 0


def test_a_bad_metrics_bind_is_refused_naming_it() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        for address, expected in (("nonsense", "HOST:PORT"), (f"127.0.0.1:{port}", "in use")):
            result = subprocess.run(
                [sys.executable, "-m", "gunrunner", "tests.apps.basic:wsgi_pid", "-w", "2",
                 "--bind", "127.0.0.1:0", "--metrics-bind", address],
                cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert result.returncode != 0
            assert "metrics_bind" in result.stderr and expected in result.stderr, result.stderr
    finally:
        taken.close()


def test_counts_survive_a_hup_and_recycling() -> None:
    """Replaced workers (HUP, max_requests) fold their counts into the totals."""
    with running(
        "tests.apps.basic:wsgi_pid",
        "--workers", "2",
        "--metrics-bind", "127.0.0.1:0",
        "--max-requests", "7",
        "--min-worker-lifetime", "0",
        ready=2,
    ) as server:  # fmt: skip
        served_fresh(server, 20)  # one of the two workers served at least 10 > 7
        server.wait_for(r"recycling worker \d+ \(slot \d+\): max_requests")
        server.send_signal(signal.SIGHUP)
        server.wait_for("restart complete")
        served_fresh(server, 10)
        assert wait_until(lambda: answered(server) == 30, 10), samples(server)
        # The recycled worker (or its successor, superseded by the HUP) and the two
        # workers the HUP replaced: each exit counted as "replaced" once it is reaped.
        assert wait_until(
            lambda: value(samples(server), "gunrunner_worker_exits_total", cause="replaced") >= 3,
            15,
        ), samples(server)
        found = samples(server)
        assert value(found, "gunrunner_worker_recycles_total", cause="max_requests") >= 1
        assert value(found, "gunrunner_requests_total", method="GET", status="2xx") == 30

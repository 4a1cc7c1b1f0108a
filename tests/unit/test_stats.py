"""The shared stats table and its rendering, without processes."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gunrunner import admin
from gunrunner import stats as s


def test_counts_are_summed_over_rows_and_survive_a_release() -> None:
    table = s.StatsTable(rows=4)
    taken = [table.take(), table.take()]
    assert all(t is not None for t in taken)
    workers = []
    for t in taken:
        assert t is not None
        worker = s.WorkerStats(t[1])
        worker.response("GET", 200, 5, 0.002)
        worker.response("POST", 503, 0, 0.3)
        worker.refused(431, 90)
        worker.publish([object()])  # one open connection: a gauge (WebSocket-like here)
        workers.append(worker)
    _, totals = table.snapshot()
    get_2xx = s.REQUESTS + s.METHODS.index("GET") * 5 + 1
    assert totals[get_2xx] == 2
    assert totals[s.REFUSALS + s.REFUSED.index(431)] == 2
    assert totals[s.OPEN_WEBSOCKETS] == 2
    assert totals[s.DURATION_SUM_US] == 2 * (2_000 + 300_000)
    first = taken[0]
    assert first is not None
    table.release(first[0])  # its worker was reaped
    _, after = table.snapshot()
    assert after[get_2xx] == 2  # counters kept
    assert after[s.OPEN_WEBSOCKETS] == 1  # its gauges gone with it
    again = table.take()
    assert again is not None and again[0] == first[0]
    assert table.snapshot()[1][get_2xx] == 2  # a reused row starts at zero


def test_a_full_table_gives_no_row() -> None:
    table = s.StatsTable(rows=1)
    assert table.take() is not None
    assert table.take() is None


def test_the_rendering_parses_and_says_what_was_counted() -> None:
    table = s.StatsTable(rows=2)
    row = table.take()
    assert row is not None
    worker = s.WorkerStats(row[1])
    for _ in range(3):
        worker.response("GET", 200, 2, 0.02)
    worker.response("BREW", 418, 0, 20.0)  # an unknown method, past the last bucket
    worker.publish()
    table.write_state(draining=False, states=[2, 1], memory=[10, 0], queues=[3, 0])
    header, totals = table.snapshot()
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(admin.render(header, totals))
        for sample in family.samples
    }
    assert found[("gunrunner_requests_total", (("method", "GET"), ("status", "2xx")))] == 3
    assert found[("gunrunner_requests_total", (("method", "other"), ("status", "4xx")))] == 1
    assert found[("gunrunner_request_duration_seconds_bucket", (("le", "0.025"),))] == 3
    assert found[("gunrunner_request_duration_seconds_bucket", (("le", "10.0"),))] == 3
    assert found[("gunrunner_request_duration_seconds_count", ())] == 4
    assert found[("gunrunner_listen_queue", (("slot", "0"),))] == 3
    assert found[("gunrunner_slot_ready", (("slot", "1"),))] == 0
    status, document = admin.health(header, live=False)
    assert status == 503 and document["reason"] == "not every slot has a ready worker"
    assert admin.health(header, live=True)[0] == 200


def test_published_row_folds_status_classes_and_derives_the_first_bucket() -> None:
    worker = s.WorkerStats()
    worker.response("GET", 200, 1, 0.001)  # first bucket (not counted per request)
    worker.response("GET", 204, 1, 0.004)  # first bucket
    worker.response("GET", 200, 1, 0.007)  # second bucket
    worker.response("PUT", 999, 0, 60.0)  # past every bound: +Inf; 9xx is counted as 5xx
    worker.response("PUT", 102, 0, 0.0)
    row = worker.totals()
    get = s.REQUESTS + s.METHODS.index("GET") * 5
    put = s.REQUESTS + s.METHODS.index("PUT") * 5
    assert row[get + 1] == 3
    assert row[put + 4] == 1 and row[put] == 1
    assert sum(row[s.REQUESTS : s.DURATION]) == 5
    histogram = row[s.DURATION : s.DURATION + len(s.BUCKETS) + 1]
    assert histogram[0] == 3 and histogram[1] == 1 and histogram[-1] == 1
    assert sum(histogram) == 5
    assert row[s.DURATION_SUM_US] == int((0.001 + 0.004 + 0.007 + 60.0) * 1_000_000)

"""Helpers shared by the test suite, one module per job.

- `process`: start the real `gunrunner` command, wait for log lines, stop it and check
  that nothing it started is left (re-exported here: `from tests.helpers import running`).
- `wire`: the one raw-socket HTTP/1.1 client, framed by h11.
- `fakes`: fake transport, bridge, exchange, session and clock for unit tests.
- `memory`: a process's resident memory, for "memory stays flat" checks.
"""

from tests.helpers.process import (
    ALARMS,
    CREATED_LOGS,
    LISTENING,
    REPO,
    Server,
    age,
    assert_gone,
    children_of,
    listen_inodes,
    process_state,
    running,
    start,
    start_with_log_file,
    wait_ready,
    wait_until,
    wait_workers,
)
from tests.helpers.wire import http_get, raw_request

__all__ = [
    "ALARMS",
    "CREATED_LOGS",
    "LISTENING",
    "REPO",
    "Server",
    "age",
    "assert_gone",
    "children_of",
    "http_get",
    "listen_inodes",
    "process_state",
    "raw_request",
    "running",
    "start",
    "start_with_log_file",
    "wait_ready",
    "wait_until",
    "wait_workers",
]

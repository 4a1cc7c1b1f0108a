"""Forking the arbiter's children (workers and the reload watcher), and the retry curve.

Rules:
1. The signals the arbiter handles are blocked around fork(). The child runs with them
   blocked until it has installed its own handlers and calls the `unblock` it is given:
   no signal is lost, or handled by the arbiter's handlers, in between.
2. A child never returns into the arbiter's code: it leaves through os._exit() with the
   code its function returned (1 if it raised), after flushing its logs.
3. A failed fork() restores the signal mask and raises OSError; retrying is the caller's
   decision, on the `backoff()` curve.

Test seam: GUNRUNNER_TEST_FAIL_FORKS="all" or "2,3" (1-based fork attempts) makes those
fork() calls fail with EAGAIN, as a process limit would (`fork_for_tests`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

Fork = Callable[[], int]

FORK_RETRIES = 5  # consecutive failed forks with no worker running before giving up


def fork_for_tests(spec: str) -> Fork:
    """os.fork, except for the attempts `spec` names ("all" or "2,5"), which fail."""
    attempts = 0
    failing = {int(n) for n in spec.split(",") if n.strip().isdigit()}

    def fork() -> int:
        nonlocal attempts
        attempts += 1
        if spec.strip() == "all" or attempts in failing:
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        return os.fork()

    return fork


def default_fork() -> Fork:
    """os.fork, or the failing one GUNRUNNER_TEST_FAIL_FORKS asks for."""
    spec = os.environ.get("GUNRUNNER_TEST_FAIL_FORKS", "")
    return fork_for_tests(spec) if spec else os.fork


def fork_child(
    fork: Fork,
    signals: Iterable[int],
    name: str,
    child: Callable[[Callable[[], None]], int],
) -> int:
    """Fork; run `child(unblock)` in the child and exit with its code. Returns the pid."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        pid = fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        raise
    if pid == 0:  # pragma: no cover - runs in the child, measured by integration tests
        code = 1

        def unblock() -> None:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

        try:
            code = child(unblock)
        except BaseException:
            log.exception("%s crashed", name)
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return pid


def backoff(failures: int) -> float:
    """Seconds to wait before retry number `failures` (1, 2, ...): 0.2 s doubling to 10 s."""
    return float(min(0.1 * 2**failures, 10.0))


class ForkFailures:
    """Consecutive failed forks: when the next may be tried, and when to give up
    (FORK_RETRIES of them in a row while no worker runs)."""

    def __init__(self) -> None:
        self.count = 0
        self.retry_at = 0.0  # time.monotonic() before which no fork is tried
        self.last_error = ""

    def succeeded(self) -> None:
        self.count = 0

    def failed(self, exc: OSError, running: int) -> float | None:
        """Count a failure: the seconds until the next try, or None to give up."""
        self.count += 1
        self.last_error = f"[Errno {exc.errno}] {exc.strerror}"
        if running == 0 and self.count >= FORK_RETRIES:
            return None
        delay = backoff(self.count)
        self.retry_at = time.monotonic() + delay
        return delay

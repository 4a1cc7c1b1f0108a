"""The arbiter's signals: handlers that only enqueue, and a wakeup fd that ends the wait.

Rules:
1. A handler only appends the signal to a queue: no logging, no work (it may interrupt
   anything, the logging module included). The arbiter's loop takes them in order and
   calls its `handle_<name>()`.
2. signal.set_wakeup_fd() writes a byte to a pipe for every signal, and the loop polls
   that pipe with the fds it waits on: no signal waits for a timeout.
3. A forked child drops all of it (`forget_in_child`) before it installs its own.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

HANDLED_SIGNALS = (
    signal.SIGCHLD,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
)
SIGNAL_NAMES: dict[int, str] = {
    signal.SIGCHLD: "chld",
    signal.SIGTERM: "term",
    signal.SIGINT: "int",
    signal.SIGQUIT: "quit",
    signal.SIGHUP: "hup",
    signal.SIGTTIN: "ttin",
    signal.SIGTTOU: "ttou",
    signal.SIGUSR1: "usr1",
}


class SignalQueue:
    """The handled signals, queued by their handlers, and the wakeup pipe."""

    def __init__(self) -> None:
        self._queue: deque[int] = deque()
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)

    def install(self) -> None:
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._enqueue)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)

    def restore(self) -> None:
        """Back to the default handlers; the pipe is closed."""
        signal.set_wakeup_fd(-1)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        self._close()

    forget_in_child = restore

    def _close(self) -> None:
        for fd in (self._wakeup_r, self._wakeup_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _enqueue(self, signum: int, frame: Any) -> None:
        self._queue.append(signum)  # Rule 1: nothing else here

    def wait(self, timeout: float, fds: Iterable[int]) -> None:
        """Sleep until a signal, a readable fd among `fds`, or `timeout` seconds."""
        poller = select.poll()
        poller.register(self._wakeup_r, select.POLLIN)
        for fd in fds:
            if fd >= 0:
                poller.register(fd, select.POLLIN)
        try:
            poller.poll(timeout * 1000)
        except InterruptedError:
            pass
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wakeup_r, 4096):
                pass

    def pending(self) -> Iterator[str]:
        """The names of the queued signals, oldest first, each taken once."""
        while self._queue:
            yield SIGNAL_NAMES[self._queue.popleft()]

"""The error log: one format for every process, each line tagged with role and pid.

`[arbiter 4120]`, `[worker 4123 slot=2]`: an operator reading a merged log knows which
process spoke. The file named by `log_file` is reopened on SIGUSR1 (log rotation).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

FORMAT = "%(asctime)s [%(role)s %(process)d] %(levelname)s %(name)s: %(message)s"
_role = "main"


class _RoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.role = _role
        return True


class ReopenableHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to stderr or to a file that `reopen()` opens anew (after logrotate moved it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(self._open())

    def _open(self) -> TextIO:
        if self.path == "-":
            return sys.stderr
        return open(self.path, "a", buffering=1, encoding="utf-8")

    def reopen(self) -> None:
        self.acquire()
        try:
            old = self.stream
            self.stream = self._open()
            if old is not sys.stderr:
                old.close()
        finally:
            self.release()


_handler: ReopenableHandler | None = None


def setup(level: str, path: str = "-") -> None:
    """Configure the `gunrunner` logger tree once per process."""
    global _handler
    root = logging.getLogger("gunrunner")
    if _handler is not None:
        root.removeHandler(_handler)
        if _handler.stream is not sys.stderr:
            _handler.stream.close()
    _handler = ReopenableHandler(path)
    _handler.setFormatter(_utc_formatter())
    _handler.addFilter(_RoleFilter())
    root.addHandler(_handler)
    root.setLevel(level.upper())
    root.propagate = False


def set_role(role: str) -> None:
    """Name this process in every later line: "arbiter", "worker slot=2"."""
    global _role
    _role = role


def reopen() -> None:
    if _handler is not None:
        _handler.reopen()


def stream_fileno() -> int:
    """The fd log lines go to, for faulthandler's traceback dumps."""
    if _handler is not None:
        try:
            return int(_handler.stream.fileno())
        except (AttributeError, OSError, ValueError):
            pass
    return 2


def _utc_formatter() -> logging.Formatter:
    """Times in UTC, marked Z: every process agrees, even when an app (Django's
    TIME_ZONE) changes the process time zone."""
    formatter = logging.Formatter(FORMAT)
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    return formatter

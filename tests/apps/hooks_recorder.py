"""Server hooks that record each call (hook, pid, slot) in the file HOOKS_LOG names;
HOOKS_FAIL names a hook that raises instead (#12 tests)."""

from __future__ import annotations

import os
from typing import Any


def _record(name: str, worker: Any = None) -> None:
    if os.environ.get("HOOKS_FAIL") == name:
        raise RuntimeError(f"{name} could not reach the database")
    slot = "-" if worker is None else str(worker.slot)
    with open(os.environ["HOOKS_LOG"], "a") as f:
        f.write(f"{name} {os.getpid()} {slot}\n")


def on_starting(server: Any) -> None:
    _record("on_starting")


def when_ready(server: Any) -> None:
    _record("when_ready")


def post_fork(server: Any, worker: Any) -> None:
    assert worker.pid == os.getpid() and server.pid == os.getppid()
    _record("post_fork", worker)


def post_worker_init(worker: Any) -> None:
    _record("post_worker_init", worker)


def worker_exit(server: Any, worker: Any) -> None:
    _record("worker_exit", worker)


def on_reload(server: Any) -> None:
    _record("on_reload")


def on_exit(server: Any) -> None:
    _record("on_exit")

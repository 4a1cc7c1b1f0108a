"""How the arbiter reaps its children and acts on a worker's exit (Rules 3, 5 and 6 of
arbiter.py): reaping, fork failures, boot failures, respawn backoff, the last-resort kill.

What an exit means is decided by exits.classify(), a pure table; this mixin gathers the
facts, logs the decision and acts on the slot table. It is a part of Arbiter, split out
for size: it uses the arbiter's state, declared below.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

from gunrunner import exits
from gunrunner._fork import ForkFailures, backoff
from gunrunner.admin import AdminProcess
from gunrunner.config import Options
from gunrunner.errors import EXIT_ERROR, GunrunnerError, NoWorkersError
from gunrunner.exits import Action
from gunrunner.metrics_feed import MetricsFeed
from gunrunner.net import Listeners
from gunrunner.recycling import Recycler
from gunrunner.reload import Watcher
from gunrunner.slots import SlotState, SlotTable, WorkerSlot
from gunrunner.status import error_text

log = logging.getLogger("gunrunner.arbiter")


class WorkerExits:
    # The arbiter's state this part reads and changes (set in Arbiter.__init__).
    options: Options
    slots: SlotTable
    listeners: Listeners
    recycler: Recycler
    metrics: MetricsFeed | None
    admin: AdminProcess | None
    watcher: Watcher | None
    stopping: str | None
    exit_code: int
    _error: GunrunnerError | None
    _fork_failures: ForkFailures
    _boot_error_logged: bool
    _ever_served: bool
    _suspended: bool

    if TYPE_CHECKING:  # defined by Arbiter

        def stop(self, mode: str) -> None: ...
        def _abandon(self, successor: WorkerSlot) -> None: ...
        def _read_status_of(self, slot: WorkerSlot) -> None: ...
        def _watcher_running(self) -> bool: ...
        def _admin_running(self) -> bool: ...

    def _fork_failed(self, slot: WorkerSlot, exc: OSError) -> None:
        failures = self._fork_failures
        running = len(self.slots.live())
        delay = failures.failed(exc, running)
        if delay is None:
            self._error = NoWorkersError(
                f"no workers could be started: fork failed {failures.count} times "
                f"({failures.last_error}); check the process limit (ulimit -u) and memory"
            )
            self.stopping = "fast"
            return
        log.error(
            "cannot fork worker for slot %d: %s; serving with %d worker(s), retrying in %.1fs",
            slot.index,
            failures.last_error,
            running,
            delay,
        )

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.watcher is not None and pid == self.watcher.pid:
                self.watcher.exited(exits.describe(status)[0], restart=not self.stopping)
            elif self.admin is not None and pid == self.admin.pid:
                self.admin.exited(exits.describe(status)[0])
            else:
                self._worker_exited(pid, status)

    def _worker_exited(self, pid: int, status: int) -> None:
        slot = self.slots.by_pid.get(pid)
        if slot is None:
            log.info("reaped process %d (not a worker): %s", pid, exits.describe(status)[0])
            return
        self._read_status_of(slot)
        facts = exits.ExitFacts(
            pid=pid,
            slot=slot.index,
            status=status,
            booted=slot.booted,
            draining=slot.state is SlotState.DRAINING,
            replaced=slot.replaced,
            successor=self.slots.is_successor(slot),
            stopping=self.stopping is not None,
            reload=self.options.reload,
            others_ready=sum(
                1 for s in self.slots.serving() if s is not slot and s.state is SlotState.READY
            ),
            ever_served=self._ever_served,
            lived=time.monotonic() - slot.started,
            reason=error_text(slot.status_buffer),
            reason_logged=self._error is not None or self._boot_error_logged,
        )
        self.slots.exited(pid)
        if slot.status_fd >= 0:
            os.close(slot.status_fd)
            slot.status_fd = -1
        decision = exits.classify(facts)
        action = decision.action
        if self.metrics is not None:
            self.metrics.exited(slot, decision, status)
        if action is Action.BOOT_FAILED:
            log.log(decision.level, "%s", decision.message)
            self._boot_failed(slot, facts)
            return
        if decision.close_slot and not facts.successor:
            # Until a worker boots here, the kernel must not queue clients on this slot's
            # sockets: close them (reopened by the next spawn).
            self.listeners.close_slot(slot.index)
        if action is Action.RESPAWN_FAILED:
            if facts.reason != slot.boot_error:  # N retries of one failure: logged once
                slot.boot_error = facts.reason
                log.log(decision.level, "%s", decision.message)
            self._back_off(slot)
            return
        if action is Action.SUCCESSOR_FAILED:
            self.slots.successors.pop(slot.index, None)
        if decision.fatal and self._error is None:
            self._error = exits.boot_error(facts)
        elif self.stopping and facts.reason and not facts.booted:
            self._boot_error_logged = True  # said in this line: the next says it no more
        if decision.stop_failed:
            self.exit_code = EXIT_ERROR
        if action in (Action.REPLACED, Action.SUCCESSOR_FAILED):
            log.log(decision.level, "%s", decision.message)
            return
        if slot.retired:
            log.log(decision.level, "%s", decision.message)
            self._drop_slot(slot)
        elif decision.backoff:
            delay = self._back_off(slot)
            if not self.stopping:
                log.log(decision.level, "%s; respawning in %.1fs", decision.message, delay)
            else:
                log.log(decision.level, "%s", decision.message)
        else:
            log.log(decision.level, "%s", decision.message)
            slot.failures = 0

    def _back_off(self, slot: WorkerSlot) -> float:
        """Respawn this slot later, the longer the more often it failed (0.2 s .. 10 s)."""
        slot.failures += 1
        delay = backoff(slot.failures)
        slot.next_spawn = time.monotonic() + delay
        return delay

    def _boot_failed(self, worker: WorkerSlot, facts: exits.ExitFacts) -> None:
        """A worker could not import or start the app, or refused its configuration."""
        message = facts.reason or f"worker {exits.describe(facts.status)[0]} during boot"
        if facts.successor:
            # The new code is broken: drop every successor, keep the running workers.
            for other in list(self.slots.successors.values()):
                self._abandon(other)
            for current in self.slots.slots.values():
                self.recycler.failed(current)
            if not self._boot_error_logged:
                self._boot_error_logged = True
                log.error(
                    "the new workers failed to boot; the running workers keep serving the "
                    "previous code%s:\n%s",
                    "; fix the code and save to reload" if self.options.reload else "",
                    message,
                )
            return
        if self.options.reload:
            self._suspended = True
            if not self._boot_error_logged:
                self._boot_error_logged = True
                log.error("workers failed to boot; waiting for a change to retry:\n%s", message)
            return
        if self._error is None:
            self._error = exits.boot_error(facts)
        self.stop("fast")

    def _drop_slot(self, slot: WorkerSlot) -> None:
        self.listeners.close_slot(slot.index)
        self.slots.remove(slot.index)

    def _kill_all(self) -> None:
        """Last resort on the way out (also after an exception): no child survives us."""
        pids = [slot.pid for slot in self.slots.live()]
        if self.watcher is not None and self.watcher.pid:
            pids.append(self.watcher.pid)
        if self.admin is not None and self.admin.pid:
            self.admin.stopping = True
            pids.append(self.admin.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while (
            self.slots.live() or self._watcher_running() or self._admin_running()
        ) and time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if self.watcher is not None and pid == self.watcher.pid:
                self.watcher.exited(exits.describe(status)[0], restart=False)
            elif self.admin is not None and pid == self.admin.pid:
                self.admin.exited(exits.describe(status)[0])
            else:
                self._worker_exited(pid, status)

"""The process model: fork workers into slots, reap them, respawn them, obey signals.

Knows pids, slots, fds and signals; nothing of HTTP.

Rules:
1. Signal handlers only enqueue; the loop calls `handle_<name>()`. The wakeup fd wakes
   the loop's poll, so no signal waits for a timeout.
2. Handled signals are blocked around fork(): the child installs its own handlers
   before it unblocks them, so no signal is lost or runs the wrong handler in between.
3. Every SIGCHLD leads to waitpid(-1, WNOHANG) until nothing is left: no zombie, ever.
4. The arbiter never accepts. It keeps every slot's listening sockets open, so the
   connections queued on a slot whose worker died wait for the next worker.
5. A fork that fails is logged and retried with backoff; the arbiter gives up ("no
   workers could be started") only when no worker runs.
6. A worker that exits with a boot code (app import or startup failed) stops the
   arbiter instead of being respawned in a loop; its message is logged once. Except:
   a successor that fails (HUP, reload) is dropped and the current workers serve on;
   in reload mode a failed first boot waits for the next change.
7. Restarts (HUP, --reload) are new-before-old: each slot gets a successor on the same
   sockets; when it is ready it takes over and the old worker drains (slots.py).
8. --reload runs watchfiles in a watcher process of its own (reload.py): the arbiter
   stays free of threads when it forks.
9. What a worker's exit means is decided by exits.classify(), a pure table; reaping and
   acting on exits (Rules 3, 5, 6) live in worker_exits.py, a part of this class.
   A HUP's new configuration passes preflight.check() before any worker is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from gunrunner import config, liveness, logs, preflight, proctitle, recycling
from gunrunner._fork import Fork, ForkFailures, default_fork, fork_child
from gunrunner._signals import HANDLED_SIGNALS, SignalQueue
from gunrunner.admin import AdminProcess
from gunrunner.errors import (
    EXIT_OK,
    GunrunnerError,
)
from gunrunner.hooks import Hooks, ServerInfo
from gunrunner.metrics_feed import MetricsFeed
from gunrunner.net import Listeners
from gunrunner.recycling import RecyclePolicy, Recycler
from gunrunner.reload import Watcher
from gunrunner.service_manager import ServiceManager
from gunrunner.slots import SlotState, SlotTable, WorkerSlot
from gunrunner.status import (
    STATUS_READY,
    Heartbeat,
    read_available,
    reports_max_requests,
)
from gunrunner.systemd import Notifier
from gunrunner.worker import Worker, WorkerContext
from gunrunner.worker_exits import WorkerExits

log = logging.getLogger(__name__)


class Arbiter(WorkerExits):
    def __init__(
        self,
        loaded: config.Loaded,
        cli_values: dict[str, Any],
        listeners: Listeners,
        workers: int,
        fork: Fork | None = None,
        *,
        preloaded: tuple[Any, str] | None = None,
        notifier: Notifier | None = None,
        hooks: Hooks | None = None,
        admin_socket: socket.socket | None = None,
    ) -> None:
        self.loaded = loaded
        self.options = loaded.options
        self.cli_values = cli_values
        self.listeners = listeners
        self.target = workers
        self.slots = SlotTable()
        self.pid = os.getpid()
        self._fork = fork if fork is not None else default_fork()
        self.preloaded = preloaded  # the app, imported before fork (preload_app)
        self.service = ServiceManager(notifier)  # systemd's sd_notify, when it started us
        self.hooks = hooks if hooks is not None else Hooks()  # the user's server hooks
        self.signals = SignalQueue()
        self.stopping: str | None = None
        self.exit_code = EXIT_OK
        self._fork_failures = ForkFailures()
        self.recycler = Recycler(RecyclePolicy.from_options(self.options))
        # Metrics and health (metrics_bind): the shared stats table and the admin process.
        self.metrics: MetricsFeed | None = None
        self.admin: AdminProcess | None = None
        if self.options.metrics_bind:
            self.metrics = MetricsFeed(self.options.metrics_bind, admin_socket)
            self.admin = self.metrics.admin
        self._announced_ready = False
        self._ever_served = False  # some worker has been ready: the start succeeded
        self._error: GunrunnerError | None = None
        self._boot_error_logged = False  # once per restart: N workers fail alike
        self._suspended = False  # reload mode: boot failed, wait for the next change
        self.watcher: Watcher | None = None
        if self.options.reload:
            self.watcher = Watcher(
                [self.options.app_dir, *self.options.reload_dirs],
                self.options.reload_includes,
                self.options.reload_excludes,
            )

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped; return the exit code or raise a GunrunnerError."""
        self.signals.install()
        try:
            self.hooks.call("on_starting", self._server_info())
            for index in range(self.target):
                self.slots.add(index)
            while True:
                self._start_watcher()
                self._start_admin()
                self._spawn_missing()
                self._wait(self._next_timeout())
                self._handle_signals()
                self._reap()
                self._read_status()
                self._read_watcher()
                liveness.kill_silent_workers(self.slots, self.options.timeout)
                liveness.enforce_kill_deadlines(self.slots)
                self._recycle_due()
                self._publish_state()
                self._tell_service()
                if self.stopping and not self.slots.live() and self.admin is not None:
                    self.admin.stop()  # (/readyz said 503 until the last worker was gone)
                if (
                    self.stopping
                    and not self.slots.live()
                    and not self._watcher_running()
                    and not self._admin_running()
                ):
                    break
            if self._error is not None:
                raise self._error
            return self.exit_code
        finally:
            self._kill_all()
            self.listeners.close_all()
            if self.admin is not None:
                self.admin.close()
            self.hooks.call("on_exit", self._server_info())
            self.signals.restore()

    def _next_timeout(self) -> float:
        now = time.monotonic()
        timeout = 1.0
        for slot in self.slots.slots.values():
            if slot.kill_deadline is not None:
                timeout = min(timeout, slot.kill_deadline - now)
            if slot.state is SlotState.EMPTY and not slot.retired and not self.stopping:
                timeout = min(timeout, max(slot.next_spawn, self._fork_failures.retry_at) - now)
        timeout = min(timeout, self.recycler.next_check(self.slots, now))
        timeout = min(timeout, self.service.next_due(now))
        return max(timeout, 0.0)

    def _wait(self, timeout: float) -> None:
        fds = [slot.status_fd for slot in self.slots.live()]
        if self.watcher is not None:
            fds.append(self.watcher.fd)
        self.signals.wait(timeout, fds)

    # -- signals --------------------------------------------------------------------------
    def _handle_signals(self) -> None:
        for name in self.signals.pending():
            getattr(self, "handle_" + name)()

    def handle_chld(self) -> None:
        pass  # the loop reaps after every wakeup

    def handle_term(self) -> None:
        self.stop("graceful")

    def handle_int(self) -> None:
        self.stop("fast")

    handle_quit = handle_int

    def handle_ttin(self) -> None:
        if self.stopping:
            return
        index = 0
        while index in self.slots.slots and not self.slots.slots[index].retired:
            index += 1
        self.slots.add(index)
        self.target += 1
        log.info("SIGTTIN: workers %d -> %d", self.target - 1, self.target)

    def handle_ttou(self) -> None:
        wanted = self.slots.wanted()
        if self.stopping or len(wanted) <= 1:
            log.info("SIGTTOU ignored: keeping at least one worker")
            return
        slot = max(wanted, key=lambda s: s.index)
        slot.retired = True
        self.target -= 1
        log.info(
            "SIGTTOU: workers %d -> %d (retiring slot %d)", self.target + 1, self.target, slot.index
        )
        if slot.state is SlotState.EMPTY:
            self._drop_slot(slot)
        else:
            self._signal_worker(slot, signal.SIGTERM, self.options.graceful_timeout)
            # Our copy of its sockets goes now: the worker accepts what is queued and
            # closes its own at the start of its drain, so the kernel stops sending it
            # clients then, not when it exits (a drain may last keepalive_timeout).
            self.listeners.close_slot(slot.index)

    def handle_hup(self) -> None:
        if self.stopping:
            return
        log.info("SIGHUP: reloading the configuration and replacing the workers")
        self.service.reloading()
        try:
            loaded = config.load(
                self.cli_values, self.loaded.config_file, activated=self.loaded.activated
            )
            # Everything the new workers would refuse is refused here, before any worker
            # is replaced (renewed certificates included).
            checked = preflight.check(loaded, reloading=True)
        except GunrunnerError as exc:
            log.error("SIGHUP refused: %s; keeping the running configuration and workers", exc)
            return
        if loaded.options.bind != self.options.bind:
            log.warning("bind changed in the config; restart gunrunner to listen on new addresses")
        for key in ("user", "group", "hooks", "preload_app"):
            if getattr(loaded.options, key) != getattr(self.options, key):
                log.warning("%s changed in the config; restart gunrunner to apply it", key)
        self.loaded = loaded
        self.options = loaded.options
        self.recycler.policy = RecyclePolicy.from_options(self.options)
        logs.setup_from(self.options, checked.log_config, reloading=True)
        logs.set_role("arbiter")
        config.log_deprecations(loaded)
        if self.preloaded is not None:
            log.info(
                "SIGHUP: preload_app is on: the new workers run the code loaded at start; "
                "restart gunrunner (or start a second instance with shared_bind) for new code"
            )
        self.hooks.call("on_reload", self._server_info())
        new_target = checked.workers
        while self.target < new_target:
            self.handle_ttin()
        while self.target > new_target:
            self.handle_ttou()
        self.restart_workers("SIGHUP")

    def handle_usr1(self) -> None:
        logs.reopen()
        log.info("SIGUSR1: log files reopened")
        for slot in self.slots.live():
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGUSR1)

    def stop(self, mode: str) -> None:
        if self.stopping in (mode, "fast"):
            return
        self.stopping = mode
        self.service.stopping()
        # New clients are refused from now on; what is queued is accepted by the workers,
        # which keep their copies of the sockets until they have drained them.
        self.listeners.close_all()
        if mode == "graceful":
            for slot in self.slots.live():
                self._signal_worker(slot, signal.SIGTERM, self.options.graceful_timeout)
        else:
            for slot in self.slots.live():
                self._signal_worker(slot, signal.SIGQUIT, 0.0)
        if self.watcher is not None:
            self.watcher.signal(signal.SIGTERM)
        # Logged once every worker has been told: whoever waits for this line (an
        # operator's script, a test) may assume the workers are already stopping.
        log.info("%s stop: %d worker(s) to stop", mode, len(self.slots.live()))

    # -- restarts (HUP, reload) -----------------------------------------------------------
    def restart_workers(self, reason: str) -> None:
        """Give every running slot a successor; each takes over once it is ready."""
        if self.stopping:
            return
        self._boot_error_logged = False
        for successor in list(self.slots.successors.values()):
            self._abandon(successor)  # a newer restart supersedes it
        if self._suspended:
            self._suspended = False
            log.info("%s: starting the workers that failed to boot", reason)
            for slot in self.slots.wanted():
                slot.failures = 0
                slot.next_spawn = 0.0
        for slot in sorted(self.slots.wanted(), key=lambda s: s.index):
            if slot.state in (SlotState.BOOTING, SlotState.READY):
                successor = self.slots.add_successor(slot.index)
                if not self._spawn(successor):
                    self.slots.successors.pop(slot.index, None)

    def _recycle_due(self) -> None:
        """Start a successor for each worker past a recycling limit (recycling.py)."""
        if self.stopping or self._suspended:
            return
        for due in self.recycler.due(self.slots, time.monotonic()):
            worker = due.worker
            log.info(
                "recycling worker %d (slot %d): %s (%s); starting its replacement",
                worker.pid, worker.index, due.cause, due.detail,
            )  # fmt: skip
            if self.metrics is not None:
                self.metrics.recycled(due.cause)
            successor = self.slots.add_successor(worker.index)
            if not self._spawn(successor):
                self.slots.successors.pop(worker.index, None)
                self.recycler.failed(worker)

    def _abandon(self, successor: WorkerSlot) -> None:
        """Stop a successor that will not take over (superseded, or its restart failed)."""
        self.slots.successors.pop(successor.index, None)
        successor.replaced = True
        if successor.state is not SlotState.EMPTY:
            self._signal_worker(successor, signal.SIGTERM, 0.0)

    def _signal_worker(self, slot: WorkerSlot, sig: int, grace: float) -> None:
        if slot.state is not SlotState.DRAINING:
            slot.move(SlotState.DRAINING)
        deadline = time.monotonic() + grace + liveness.KILL_GRACE
        if slot.kill_deadline is None or deadline < slot.kill_deadline:
            slot.kill_deadline = deadline
        with contextlib.suppress(ProcessLookupError):
            os.kill(slot.pid, sig)

    # -- forking --------------------------------------------------------------------------
    def _spawn_missing(self) -> None:
        if self.stopping or self._suspended:
            return
        now = time.monotonic()
        for slot in sorted(self.slots.wanted(), key=lambda s: s.index):
            if slot.state is not SlotState.EMPTY or now < slot.next_spawn:
                continue
            if now < self._fork_failures.retry_at:
                return
            if not self._spawn(slot):
                return

    def _spawn(self, slot: WorkerSlot) -> bool:
        sockets = self.listeners.for_slot(slot.index)
        heartbeat = Heartbeat()
        request_limit = self.recycler.request_limit()
        row = self.metrics.row_for(slot) if self.metrics is not None else None
        status_r, status_w = os.pipe()

        def child(unblock: Callable[[], None]) -> int:  # pragma: no cover - in the worker
            os.close(status_r)
            self._in_child(f"worker slot={slot.index}", sockets)
            context = WorkerContext(
                options=self.options,
                sockets=sockets,
                slot=slot.index,
                heartbeat=heartbeat,
                status_fd=status_w,
                parent_pid=self.pid,
                signals_ready=unblock,
                request_limit=request_limit,
                stats_row=row[1] if row is not None else None,
                preloaded=self.preloaded,
                hooks=self.hooks,
                server=self._server_info(),
            )
            return Worker(context).run_in_child()

        try:
            pid = fork_child(self._fork, HANDLED_SIGNALS, "worker", child)
        except OSError as exc:
            os.close(status_r)
            os.close(status_w)
            heartbeat.close()
            if self.metrics is not None:
                self.metrics.fork_failed(row)
            current = self.slots.slots.get(slot.index)
            if current is slot:
                # Nobody would accept from this slot's sockets: close them, so that the
                # kernel sends new clients to the workers that run. Reopened on retry.
                self.listeners.close_slot(slot.index)
            self._fork_failed(slot, exc)
            return False
        os.close(status_w)
        os.set_blocking(status_r, False)
        self.slots.started(slot, pid, status_r, heartbeat)
        self.recycler.started(slot)
        if self.metrics is not None:
            self.metrics.started(slot, row)
        self._fork_failures.succeeded()
        log.info("started worker %d (slot %d)", pid, slot.index)
        return True

    def _server_info(self) -> ServerInfo:
        return ServerInfo(self.pid, self.options, self.target)

    def _in_child(self, role: str, keep: list[socket.socket]) -> None:
        """Undo the arbiter's process state in a fresh child (worker or watcher)."""
        self.signals.forget_in_child()
        for worker in self.slots.live():
            with contextlib.suppress(OSError):
                os.close(worker.status_fd)
        if self.watcher is not None:
            self.watcher.close_fd()
        if self.admin is not None and role != "admin":
            self.admin.close()  # (a worker must not hold the admin socket)
        # A socket left open here would keep a retired slot listening in a process that
        # never accepts from it.
        self.listeners.close_in_child(keep)
        self.service.close_in_child()
        logs.set_role(role)
        proctitle.set_title(role, self.options.proc_name)

    # -- reload watcher -------------------------------------------------------------------
    def _start_watcher(self) -> None:
        if self.watcher is not None and not self.stopping:
            self.watcher.start(lambda: self._in_child("reloader", []), self.pid, HANDLED_SIGNALS)

    def _read_watcher(self) -> None:
        if self.watcher is None:
            return
        changed = self.watcher.read()
        if not changed or self.stopping:
            return
        shown = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        log.info("reload: %s changed; restarting the workers", shown)
        self.restart_workers("reload")

    # -- status -----------------------------------------------------------------------------
    def _read_status(self) -> None:
        for slot in self.slots.live():
            self._read_status_of(slot)

    def _read_status_of(self, slot: WorkerSlot) -> None:
        if slot.status_fd < 0:
            return
        data = read_available(slot.status_fd)
        if slot.state is SlotState.BOOTING and data.startswith(STATUS_READY):
            slot.move(SlotState.READY)
            slot.booted = True
            self._ever_served = True
            slot.boot_error = ""
            data = data[len(STATUS_READY) :]
            self._worker_ready(slot)
        current = self.slots.slots.get(slot.index) is slot  # (not a replaced worker)
        if current and reports_max_requests(slot.status_buffer, data):
            self.recycler.request(slot, recycling.MAX_REQUESTS, "served its max_requests")
        slot.status_buffer += data

    def _worker_ready(self, worker: WorkerSlot) -> None:
        if not self.slots.is_successor(worker):
            log.info("worker %d (slot %d) ready", worker.pid, worker.index)
            self._announce_ready()
            return
        old = self.slots.promote(worker)
        if old is not None:
            log.info(
                "worker %d (slot %d) ready; replacing worker %d%s",
                worker.pid, worker.index, old.pid,
                f" ({old.recycle_cause})" if old.recycle_cause else "",
            )  # fmt: skip
            self._signal_worker(old, signal.SIGTERM, self.options.graceful_timeout)
        if not self.slots.successors:
            log.info("restart complete: %d workers serving", len(self.slots.serving()))

    def _announce_ready(self) -> None:
        wanted = self.slots.wanted()
        if all(s.state is SlotState.READY for s in wanted) and not self._announced_ready:
            self._announced_ready = True
            log.info("all %d workers ready", len(wanted))
            self._tell_service(first_ready=True)
            self.hooks.call("when_ready", self._server_info())

    def _watcher_running(self) -> bool:
        return self.watcher is not None and self.watcher.pid != 0

    def _admin_running(self) -> bool:
        return self.admin is not None and self.admin.pid != 0

    # -- the service manager (service_manager.py) -----------------------------------------
    def _tell_service(self, first_ready: bool = False) -> None:
        wanted = self.slots.wanted()
        ready = sum(1 for slot in wanted if slot.state is SlotState.READY)
        if first_ready:
            self.service.ready(ready, len(wanted))
            return
        stopping, replacing = self.stopping is not None, bool(self.slots.successors)
        self.service.turn(time.monotonic(), ready, len(wanted), stopping, replacing)

    # -- metrics and health (admin.py, stats.py) ------------------------------------------
    def _start_admin(self) -> None:
        if self.admin is not None and not self.stopping:
            self.admin.start(
                lambda: self._in_child("admin", []), self.pid, HANDLED_SIGNALS, self.options
            )

    def _publish_state(self) -> None:
        """The arbiter's view for /readyz and /metrics, once a loop turn (at least 1/s)."""
        if self.metrics is not None:
            self.metrics.publish(
                self.slots,
                self.listeners,
                time.monotonic(),
                self.stopping is not None,
                self.recycler.memory,
            )

"""What the arbiter tells the service manager (systemd's sd_notify, see systemd.py).

Knows the arbiter's milestones as counts of workers; nothing of HTTP or of slots.

Rules:
1. READY=1 when every worker is ready for the first time, and again when a reload
   (HUP) is over, done, refused or failed: Type=notify-reload waits for it after
   RELOADING=1.
2. STOPPING=1 as a stop begins, so systemd does not count the drain as a crash.
3. STATUS= says "N of M workers ready" (what `systemctl status` shows), sent when it
   changes, never more than once per loop turn.
4. WATCHDOG=1 every half of WatchdogSec, from the loop itself and only while a worker is
   ready (or a stop is draining): a stuck loop, or a server with no worker left to
   serve, stops the pings, and systemd restarts the service.
"""

from __future__ import annotations

from gunrunner.systemd import Notifier


class ServiceManager:
    def __init__(self, notifier: Notifier | None) -> None:
        self.notifier = notifier
        self._status = ""
        self._next_ping = 0.0
        self._reloading = False  # RELOADING=1 was said, READY=1 not yet

    def ready(self, ready: int, total: int) -> None:
        if self.notifier is not None:
            self._status = _status(ready, total)
            self.notifier.ready(self._status)

    def reloading(self) -> None:
        if self.notifier is not None:
            self._reloading = True
            self.notifier.reloading()

    def stopping(self) -> None:
        if self.notifier is not None:
            self.notifier.stopping()

    def turn(self, now: float, ready: int, total: int, stopping: bool, replacing: bool) -> None:
        """Once per arbiter loop turn: READY=1 once a reload is over (`replacing`: new
        workers still booting; whatever came of it: done, refused, or failed), the status
        if it changed, the watchdog if due."""
        notifier = self.notifier
        if notifier is None:
            return
        if self._reloading and not replacing:
            self._reloading = False
            self.ready(ready, total)
        status = "stopping: " + _status(ready, total) if stopping else _status(ready, total)
        if status != self._status:
            self._status = status
            notifier.status(status)
        interval = notifier.watchdog_interval
        if interval is not None:
            interval = max(interval, 0.05)  # (a tiny WatchdogSec must not spin the loop)
        if interval is not None and now >= self._next_ping:
            if ready or stopping:
                notifier.watchdog()
                self._next_ping = now + interval
            else:  # (look again soon, without spinning the loop)
                self._next_ping = now + min(interval, 1.0)

    def close_in_child(self) -> None:
        """A forked worker or helper must not hold the notify socket (NotifyAccess=main
        would drop what it sent anyway)."""
        if self.notifier is not None:
            self.notifier.close()
            self.notifier = None

    def next_due(self, now: float) -> float:
        """Seconds until the next watchdog ping (for the loop's poll timeout)."""
        if self.notifier is None or self.notifier.watchdog_interval is None:
            return float("inf")
        return max(self._next_ping - now, 0.0)


def _status(ready: int, total: int) -> str:
    return f"{ready} of {total} workers ready"

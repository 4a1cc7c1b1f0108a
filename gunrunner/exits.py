"""What a worker's exit means, and what the arbiter does about it: a pure decision table.

The arbiter gathers the facts of one reaped worker (`ExitFacts`), `classify()` decides,
and the arbiter acts on the decision and logs its line. No process is needed to test it
(tests/unit/test_exits.py).

Rules:
1. A worker that exits with a boot code (BOOT_FAILURE_CODES) before it was ever ready
   could not start; respawning it at once would fail the same way.
   - Outside a stop: a successor (HUP, reload) is dropped and the current workers serve
     on; in reload mode the arbiter waits for the next change; with no other worker
     ready the server stops with that error (exit 4 app load, 3 boot, 2 config); a
     respawn that fails while others serve is retried with backoff.
   - During a stop: the stop goes on. The server exits with the boot error only when no
     worker ever served and it is not in reload mode (a start that never succeeded);
     otherwise the exit code is unaffected.
2. A stop exits non-zero (1) when a worker that was serving died abnormally during it
   (a crash, a signal other than the TERM/QUIT we sent).
3. Every line names the worker, its slot and how it ended, and carries the reason the
   worker reported (its fatal error) when there is one.
4. An unexpected exit is respawned; one younger than YOUNG_DEATH seconds, or one that
   was never ready, is respawned with backoff (a crash loop), and the line says so.
   A worker told to stop (retired) that then fails its boot is just stopped.
5. While a slot has no worker that ever got ready (its respawns fail), its sockets are
   closed, so the kernel sends new clients to the slots that serve.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
from dataclasses import dataclass

from gunrunner.errors import (
    BOOT_FAILURE_CODES,
    EXIT_APP_LOAD_ERROR,
    EXIT_CONFIG,
    AppLoadError,
    BootError,
    ConfigError,
    GunrunnerError,
)

YOUNG_DEATH = 1.0  # a worker that dies sooner than this after its start is respawned later


class Action(enum.Enum):
    #: An old worker drained after its successor took over: nothing to do.
    REPLACED = "replaced"
    #: A successor (HUP, reload) died before it was ready: drop it, the current one serves.
    SUCCESSOR_FAILED = "successor-failed"
    #: Could not boot and nothing else can serve the new code: stop, or wait (reload).
    BOOT_FAILED = "boot-failed"
    #: A respawn could not boot while other workers serve: close the slot, retry later.
    RESPAWN_FAILED = "respawn-failed"
    #: Ended as asked (a stop, a retirement): respawn only if the slot is still wanted.
    STOPPED = "stopped"
    #: Died unexpectedly: respawn (with backoff when it died young).
    CRASHED = "crashed"


@dataclass(frozen=True, slots=True)
class ExitFacts:
    pid: int
    slot: int
    status: int  # as waitpid returns it
    booted: bool  # the worker reported ready at some point
    draining: bool  # it had been told to stop (TERM/QUIT sent, or retired)
    replaced: bool  # its successor took over
    successor: bool  # it was a successor still booting
    stopping: bool  # the whole server is stopping
    reload: bool  # dev reload mode
    others_ready: int  # other current workers that are ready
    ever_served: bool  # some worker of this server has been ready
    lived: float  # seconds since its fork
    reason: str = ""  # the fatal error it reported, if any
    reason_logged: bool = False  # a boot failure was already reported: say it once


@dataclass(frozen=True, slots=True)
class ExitDecision:
    action: Action
    level: int
    message: str
    backoff: bool = False  # respawn later, on the backoff curve
    stop_failed: bool = False  # the stop under way ends with exit code 1
    fatal: bool = False  # the server stops and fails with the worker's boot error
    close_slot: bool = False  # no worker serves the slot's sockets: close them till one does


def describe(status: int) -> tuple[str, int | None, int | None]:
    """("exited with code 3" / "killed by SIGKILL", code, signal number)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"killed by {signal.Signals(sig).name}", None, sig
    code = os.waitstatus_to_exitcode(status)
    return f"exited with code {code}", code, None


def classify(facts: ExitFacts) -> ExitDecision:
    what, code, sig = describe(facts.status)
    who = f"worker {facts.pid} (slot {facts.slot})"
    because = f": {facts.reason}" if facts.reason else ""
    retired = facts.draining and not facts.stopping  # told to stop (TTOU) while booting
    if code in BOOT_FAILURE_CODES and not facts.booted and not facts.replaced and not retired:
        return _boot_failure(facts, who, what, because)
    if facts.replaced:
        return ExitDecision(
            Action.REPLACED, logging.INFO, f"replaced {who} {what} after {facts.lived:.1f}s"
        )
    told_to_stop = facts.draining and (code == 0 or sig in (signal.SIGTERM, signal.SIGQUIT))
    if facts.successor and told_to_stop:
        # A stop came while it booted (to replace a worker on HUP or recycling).
        return ExitDecision(
            Action.SUCCESSOR_FAILED,
            logging.INFO,
            f"new {who} {what} before it took over (stopped while booting)",
        )
    if facts.successor:
        return ExitDecision(
            Action.SUCCESSOR_FAILED,
            logging.ERROR,
            f"new {who} {what} while booting{because}; the current worker serves on",
        )
    if facts.draining and code == 0:
        return ExitDecision(Action.STOPPED, logging.INFO, f"{who} stopped after {facts.lived:.1f}s")
    if facts.draining and sig in (signal.SIGTERM, signal.SIGQUIT):
        return ExitDecision(Action.STOPPED, logging.INFO, f"{who} {what} after {facts.lived:.1f}s")
    if facts.draining:
        return ExitDecision(
            Action.STOPPED,
            logging.ERROR,
            f"{who} {what} after {facts.lived:.1f}s while stopping{because}",
            stop_failed=facts.stopping,
        )
    hint = ""
    if sig == signal.SIGKILL:
        hint = "; possibly out of memory, check the memory limit"
    # A crash before it was ever ready would crash again the same way: a crash loop.
    crash_loop = facts.lived < YOUNG_DEATH or not facts.booted
    return ExitDecision(
        Action.CRASHED,
        logging.ERROR,
        f"{who} {what} after {facts.lived:.1f}s{because}{hint}",
        backoff=crash_loop,
        stop_failed=facts.stopping,
        close_slot=not facts.booted,
    )


def _boot_failure(facts: ExitFacts, who: str, what: str, because: str) -> ExitDecision:
    if facts.stopping:
        # A start that never served fails with the boot error (printed once, at exit).
        fatal = not facts.ever_served and not facts.reload
        if fatal or facts.reason_logged:
            because = ""
        return ExitDecision(
            Action.STOPPED,
            logging.INFO,
            f"{who} {what}: it could not boot before the stop{because}",
            fatal=fatal,
        )
    if facts.successor or facts.reload or not facts.others_ready:
        return ExitDecision(
            Action.BOOT_FAILED,
            logging.INFO,
            f"{who} {what}: it could not boot",
            fatal=not facts.successor and not facts.reload,
        )
    return ExitDecision(
        Action.RESPAWN_FAILED,
        logging.ERROR,
        f"{who} could not boot; {facts.others_ready} other worker(s) serve on, retrying "
        f"with backoff:\n{facts.reason or what}",
        backoff=True,
        close_slot=True,
    )


def boot_error(facts: ExitFacts) -> GunrunnerError:
    """The error the server exits with when this worker's boot failure ends it."""
    what, code, _ = describe(facts.status)
    message = facts.reason or f"worker {what} during boot"
    if code == EXIT_APP_LOAD_ERROR:
        return AppLoadError(message)
    if code == EXIT_CONFIG:
        return ConfigError(message.removeprefix("config error: "))
    return BootError(message)

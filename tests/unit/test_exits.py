"""exits.classify(): what a reaped worker's exit means, as a table (no processes)."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal

import pytest

from gunrunner.errors import EXIT_APP_LOAD_ERROR, EXIT_BOOT_ERROR, EXIT_CONFIG
from gunrunner.exits import Action, ExitFacts, classify, describe


def exited(code: int) -> int:
    """A waitpid status for exit(code)."""
    return (code & 0xFF) << 8


def killed(sig: int) -> int:
    return int(sig)


BASE = ExitFacts(
    pid=100,
    slot=2,
    status=exited(0),
    booted=True,
    draining=False,
    replaced=False,
    successor=False,
    stopping=False,
    reload=False,
    others_ready=1,
    ever_served=True,
    lived=10.0,
)


def facts(**changes: object) -> ExitFacts:
    return dataclasses.replace(BASE, **changes)  # type: ignore[arg-type]


def test_describe_codes_and_signals() -> None:
    assert describe(exited(3)) == ("exited with code 3", 3, None)
    assert describe(killed(signal.SIGKILL)) == ("killed by SIGKILL", None, signal.SIGKILL)
    assert os.WIFSIGNALED(killed(signal.SIGTERM))


# (name, facts, action, level, backoff, stop_failed, fatal)
TABLE = [
    # Boot failures outside a stop.
    (
        "first boot, no one else",
        facts(status=exited(4), booted=False, others_ready=0, ever_served=False),
        Action.BOOT_FAILED,
        logging.INFO,
        False,
        False,
        True,
    ),
    (
        "config refused at boot",
        facts(status=exited(EXIT_CONFIG), booted=False, others_ready=0),
        Action.BOOT_FAILED,
        logging.INFO,
        False,
        False,
        True,
    ),
    (
        "successor of a HUP",
        facts(status=exited(4), booted=False, successor=True),
        Action.BOOT_FAILED,
        logging.INFO,
        False,
        False,
        False,
    ),
    (
        "reload mode waits",
        facts(status=exited(3), booted=False, reload=True, others_ready=0),
        Action.BOOT_FAILED,
        logging.INFO,
        False,
        False,
        False,
    ),
    (
        "respawn while others serve",
        facts(status=exited(EXIT_BOOT_ERROR), booted=False),
        Action.RESPAWN_FAILED,
        logging.ERROR,
        True,
        False,
        False,
    ),
    # Boot failures during a stop: the stop goes on.
    (
        "stop during a first boot",
        facts(
            status=exited(4),
            booted=False,
            draining=True,
            stopping=True,
            ever_served=False,
            others_ready=0,
        ),
        Action.STOPPED,
        logging.INFO,
        False,
        False,
        True,
    ),
    (
        "stop during a reload-mode boot",
        facts(
            status=exited(4),
            booted=False,
            draining=True,
            stopping=True,
            reload=True,
            ever_served=False,
            others_ready=0,
        ),
        Action.STOPPED,
        logging.INFO,
        False,
        False,
        False,
    ),
    (
        "stop during a respawn",
        facts(status=exited(4), booted=False, draining=True, stopping=True),
        Action.STOPPED,
        logging.INFO,
        False,
        False,
        False,
    ),
    # Ordinary ends.
    (
        "replaced after a restart",
        facts(replaced=True, draining=True),
        Action.REPLACED,
        logging.INFO,
        False,
        False,
        False,
    ),
    (
        "replaced, its boot code ignored",
        facts(status=exited(4), booted=False, replaced=True, draining=True),
        Action.REPLACED,
        logging.INFO,
        False,
        False,
        False,
    ),
    (
        "successor crashed",
        facts(status=exited(1), booted=False, successor=True),
        Action.SUCCESSOR_FAILED,
        logging.ERROR,
        False,
        False,
        False,
    ),
    (
        "successor stopped while booting (a stop during a recycle or HUP)",
        facts(status=exited(0), booted=False, successor=True, draining=True, stopping=True),
        Action.SUCCESSOR_FAILED,
        logging.INFO,
        False,
        False,
        False,
    ),
    (
        "successor crashed while told to stop",
        facts(status=exited(1), booted=False, successor=True, draining=True, stopping=True),
        Action.SUCCESSOR_FAILED,
        logging.ERROR,
        False,
        False,
        False,
    ),
    (
        "drained, exit 0",
        facts(draining=True, stopping=True),
        Action.STOPPED,
        logging.INFO,
        False,
        False,
        False,
    ),
    (
        "drained, killed by our QUIT",
        facts(status=killed(signal.SIGQUIT), draining=True, stopping=True),
        Action.STOPPED,
        logging.INFO,
        False,
        False,
        False,
    ),
    (
        "crashed while stopping",
        facts(status=exited(1), draining=True, stopping=True),
        Action.STOPPED,
        logging.ERROR,
        False,
        True,
        False,
    ),
    (
        "killed at the deadline",
        facts(status=killed(signal.SIGKILL), draining=True, stopping=True),
        Action.STOPPED,
        logging.ERROR,
        False,
        True,
        False,
    ),
    ("retired by TTOU", facts(draining=True), Action.STOPPED, logging.INFO, False, False, False),
    (
        "retired while booting, then its boot failed",
        facts(status=exited(4), booted=False, draining=True),
        Action.STOPPED,
        logging.ERROR,
        False,
        False,
        False,
    ),
    # Crashes.
    (
        "old crash respawns now",
        facts(status=exited(1)),
        Action.CRASHED,
        logging.ERROR,
        False,
        False,
        False,
    ),
    (
        "young crash backs off",
        facts(status=exited(1), lived=0.2),
        Action.CRASHED,
        logging.ERROR,
        True,
        False,
        False,
    ),
    (
        "crash before ready backs off, however old",
        facts(status=exited(1), booted=False, lived=5.0),
        Action.CRASHED,
        logging.ERROR,
        True,
        False,
        False,
    ),
    (
        "OOM kill",
        facts(status=killed(signal.SIGKILL)),
        Action.CRASHED,
        logging.ERROR,
        False,
        False,
        False,
    ),
    (
        "boot code after serving is a crash",
        facts(status=exited(EXIT_APP_LOAD_ERROR)),
        Action.CRASHED,
        logging.ERROR,
        False,
        False,
        False,
    ),
    (
        "crash during a stop fails it",
        facts(status=exited(1), stopping=True),
        Action.CRASHED,
        logging.ERROR,
        False,
        True,
        False,
    ),
]


@pytest.mark.parametrize("row", TABLE, ids=[row[0] for row in TABLE])
def test_classify(row: tuple[object, ...]) -> None:
    _, exit_facts, action, level, backoff, stop_failed, fatal = row
    assert isinstance(exit_facts, ExitFacts)
    decision = classify(exit_facts)
    assert (decision.action, decision.level) == (action, level), decision
    assert (decision.backoff, decision.stop_failed, decision.fatal) == (
        backoff,
        stop_failed,
        fatal,
    ), decision
    closes = action is Action.RESPAWN_FAILED or (action is Action.CRASHED and not exit_facts.booted)
    assert decision.close_slot == closes, decision
    assert decision.message.startswith(
        ("worker 100 (slot 2)", "replaced worker 100 (slot 2)", "new worker 100 (slot 2)")
    ), decision.message


def test_the_reported_reason_is_in_the_line() -> None:
    """Rule 3: a crash line carries what the worker reported before it died."""
    decision = classify(facts(status=exited(1), reason="crashed: OSError: disk full"))
    assert decision.message.endswith("exited with code 1 after 10.0s: crashed: OSError: disk full")


def test_oom_hint() -> None:
    decision = classify(facts(status=killed(signal.SIGKILL)))
    assert "possibly out of memory" in decision.message


def test_a_boot_reason_during_a_stop_is_said_once() -> None:
    """The reason is left out when already reported, or when the server fails with it."""
    said = classify(
        facts(
            status=exited(4),
            booted=False,
            draining=True,
            stopping=True,
            reload=True,
            reason="SyntaxError",
            reason_logged=False,
        )
    )
    assert said.message.endswith(": SyntaxError")
    again = classify(
        facts(
            status=exited(4),
            booted=False,
            draining=True,
            stopping=True,
            reload=True,
            reason="SyntaxError",
            reason_logged=True,
        )
    )
    assert "SyntaxError" not in again.message
    fatal = classify(
        facts(
            status=exited(4),
            booted=False,
            draining=True,
            stopping=True,
            ever_served=False,
            reason="SyntaxError",
        )
    )
    assert fatal.fatal and "SyntaxError" not in fatal.message
